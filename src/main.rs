//! `glassbox`: the command line over the glassbox library. Parses, dispatches to one module per
//! command (`cli/`), and ends errors as one line on stderr and exit code 2.

#![deny(clippy::unwrap_used, clippy::expect_used)]

mod cli;

use std::process::ExitCode;

use clap::Parser;
use cli::args::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    glassbox::device::tune_allocator();
    // Opt-in GPU convolutions (see glassbox::model::gpu), and a baseline for timing comparisons
    // that runs every layer through burn's own kernels.
    if let Err(e) = glassbox::model::kernels_from_env() {
        eprintln!("glassbox: error: {e}");
        return ExitCode::from(2);
    }
    let result = match cli.command {
        Command::Classify {
            images,
            model,
            top,
            device,
            json,
        } => cli::classify::classify(&images, model.as_deref(), top, &device, json),
        Command::Explain(args) => cli::explain::explain(&args),
        Command::Compare(args) => cli::compare::compare_images(&args),
        Command::Study(args) => cli::study::study(&args),
        Command::Sanity(args) => cli::sanity::sanity(&args),
        Command::Models { json, all, macs } => cli::models::models(json, all, macs),
        #[cfg(feature = "layer-profile")]
        Command::Profile {
            model,
            runs,
            top,
            check,
            device,
        } => cli::profile::profile(&cli::profile::ProfileArgs {
            model: model.as_deref(),
            runs,
            top,
            check,
            device: &device,
        }),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("glassbox: error: {e}");
            ExitCode::from(2)
        }
    }
}
