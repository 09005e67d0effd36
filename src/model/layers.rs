//! Per-layer timing of the generated forward passes (cargo feature `layer-profile`).
//!
//! With the feature on, `build.rs` puts a [`mark`] after every statement of each model's
//! generated `forward`; each mark charges the time since the previous one to the statement that
//! just ran. On the CPU backend (flex) every operation runs to completion before the next
//! statement, so the charge is that operation's own time. GPU backends queue work
//! asynchronously, so there [`start_synced`] makes every mark wait for the device first: each
//! statement is then charged its kernels' time, at the price of the fusion burn would have done
//! across statements (the synced pass is slower than a free-running one; compare both).
//! `glassbox profile` prints the table.

use std::sync::Mutex;
use std::time::Instant;

use burn::nn::conv::Conv2d;

/// One statement's share of a forward pass.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerTime {
    /// The generated variable the statement assigns (e.g. `conv2d17_out1`).
    pub name: &'static str,
    /// What kind of work it is (`conv 3x3`, `depthwise 5x5`, `clip`, `add`, ...).
    pub kind: String,
    /// Seconds spent in it.
    pub seconds: f64,
}

/// A recording: the last mark's time, the statements timed so far, and what each mark waits
/// for before it reads the clock (a device sync), if anything.
type Recording = (Instant, Vec<LayerTime>, Option<Box<dyn Fn() + Send>>);

/// The recording, for the whole process: a forward pass may run on another thread than the one
/// that calls `classify` (on the CPU, one of rayon's workers), but passes run one at a time.
static CLOCK: Mutex<Option<Recording>> = Mutex::new(None);

/// Starts recording, dropping what was recorded before.
pub fn start() {
    *CLOCK.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), Vec::new(), None));
}

/// As [`start`], with `sync` (e.g. `move || { let _ = compute.sync(); }`) called at every mark
/// before the clock is read, and once here, so that queued work is charged to the statement
/// that queued it.
pub fn start_synced(sync: impl Fn() + Send + 'static) {
    sync();
    *CLOCK.lock().unwrap_or_else(|e| e.into_inner()) =
        Some((Instant::now(), Vec::new(), Some(Box::new(sync))));
}

/// Stops recording and returns every statement timed since [`start`], in order (several
/// forward passes, one after another, when the batch was split into chunks).
pub fn take() -> Vec<LayerTime> {
    CLOCK
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .map(|(_, v, _)| v)
        .unwrap_or_default()
}

/// Charges the time since the previous mark to statement `name`, unless recording is off.
pub(crate) fn mark(name: &'static str) {
    record(name, || kind_of(name));
}

/// As [`mark`], for a convolution: its kind says depthwise or not, and its kernel size.
pub(crate) fn mark_conv(name: &'static str, conv: &Conv2d) {
    record(name, || {
        let [kh, kw] = conv.kernel_size;
        let depthwise = conv.groups > 1 && conv.weight.val().dims()[1] == 1;
        format!("{} {kh}x{kw}", if depthwise { "depthwise" } else { "conv" })
    });
}

fn record(name: &'static str, kind: impl FnOnce() -> String) {
    let mut clock = CLOCK.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((last, times, sync)) = clock.as_mut() {
        if let Some(sync) = sync {
            sync();
        }
        let now = Instant::now();
        times.push(LayerTime {
            name,
            kind: kind(),
            seconds: now.duration_since(*last).as_secs_f64(),
        });
        // The kind is computed before `now`, so its cost is not charged to the next layer.
        *last = Instant::now();
    }
}

/// `clip12_out1` → `clip`: the generated name without its number and output suffix.
fn kind_of(name: &str) -> String {
    let stem = name.split("_out").next().unwrap_or(name);
    stem.trim_end_matches(|c: char| c.is_ascii_digit())
        .to_string()
}
