//! `glassbox models`: the built-in models, real or synthetic, with their preprocessing and
//! provenance.

use std::io::Write;
use std::process::ExitCode;

use glassbox::ModelInfo;

pub fn models(json: bool, all: bool) -> glassbox::Result<ExitCode> {
    let listed = || ModelInfo::all().filter(move |m| all || !m.fixture());
    let mut stdout = std::io::stdout().lock();
    if json {
        let list: Vec<_> = listed().map(|info| info.to_json()).collect();
        let _ = writeln!(
            stdout,
            "{}",
            serde_json::to_string_pretty(&list).unwrap_or_default()
        );
        return Ok(ExitCode::SUCCESS);
    }
    for info in listed() {
        let (resize, channels, output) = info.describe_io();
        let pre = info.preprocess();
        let status = if info.synthetic() {
            "SYNTHETIC weights (real file absent at build time)"
        } else {
            "real weights"
        };
        let _ = writeln!(
            stdout,
            "{}{}  {}",
            info.id(),
            if info.is_default() { " (default)" } else { "" },
            info.name()
        );
        let _ = writeln!(
            stdout,
            "  weights:    {status}; {}",
            if info.embedded() {
                "compiled in"
            } else {
                "burnpack file beside the build"
            }
        );
        let _ = writeln!(
            stdout,
            "  input:      {resize}, {channels}, (x*{} - {:?}) / {:?}",
            pre.scale, pre.mean, pre.std
        );
        let _ = writeln!(stdout, "  output:     {} classes, {output}", info.classes());
        let _ = writeln!(stdout, "  source:     {}", info.source());
        let _ = writeln!(stdout, "  licence:    {}", info.licence());
    }
    Ok(ExitCode::SUCCESS)
}
