//! What the terminal shows of long work: the variant counter of large batches, the one-time
//! notice of a slow first GPU chunk, the study's progress bar, and refused chunks.

use std::time::Instant;

use glassbox::Classifier;

/// What the user sees of a classifier's batches:
/// - with `counter`, on a terminal, a line that counts the variants of each batch of at least
///   64 as they are classified, and erases itself when the batch is done;
/// - on a GPU, once per process, a notice when the first chunk of a batch has run for
///   [`first_chunk_notice_after`]: a model's first run there tunes and compiles its kernels,
///   which took from 20 s to nearly two minutes on an H100 and an H200, with nothing to show.
pub fn watch_batches(classifier: &mut Classifier, counter: bool) {
    use std::io::IsTerminal;
    let line = counter && std::io::stderr().is_terminal();
    let gpu = classifier
        .compute()
        .is_gpu()
        .then(|| (classifier.compute().to_string(), first_chunk_notice_after()));
    if !line && gpu.is_none() {
        return;
    }
    classifier.set_progress(move |done, total| {
        if let Some((device, after)) = &gpu {
            first_chunk_watch(done, device, *after);
        }
        if !line || total < 64 {
            return;
        }
        if done < total {
            eprint!("\r\x1b[K  classified {done}/{total} variants");
        } else {
            eprint!("\r\x1b[K");
        }
    });
}

/// When the batch in flight started, while its first chunk runs; shared by every classifier
/// of the process and the thread that watches it.
pub static FIRST_CHUNK_SINCE: std::sync::Mutex<Option<Instant>> = std::sync::Mutex::new(None);

/// How long a first chunk may run on a GPU before the notice: 10 s, or
/// `GLASSBOX_FIRST_CHUNK_NOTICE_S` seconds (0: as soon as the first batch starts, which the
/// tests use to see the notice without a slow device).
pub fn first_chunk_notice_after() -> std::time::Duration {
    std::env::var("GLASSBOX_FIRST_CHUNK_NOTICE_S")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map_or(std::time::Duration::from_secs(10), |s| {
            std::time::Duration::from_secs_f64(s)
        })
}

/// Progress callback part of [`watch_batches`] on a GPU: a batch start (`done == 0`) arms the
/// watch, any finished chunk disarms it. The first arming starts the watching thread, which
/// speaks once a first chunk has run for `after`.
pub fn first_chunk_watch(done: usize, device: &str, after: std::time::Duration) {
    static WATCHER: std::sync::Once = std::sync::Once::new();
    if done == 0 && after.is_zero() {
        WATCHER.call_once(|| first_chunk_notice(device, after));
        return;
    }
    *FIRST_CHUNK_SINCE.lock().unwrap_or_else(|e| e.into_inner()) = (done == 0).then(Instant::now);
    if done == 0 {
        let device = device.to_string();
        WATCHER.call_once(move || {
            // Polls a few times a second until it has spoken once; it never keeps the process
            // alive (Rust does not wait for spawned threads at exit).
            std::thread::spawn(move || {
                loop {
                    std::thread::sleep(std::time::Duration::from_millis(250));
                    let since = *FIRST_CHUNK_SINCE.lock().unwrap_or_else(|e| e.into_inner());
                    if since.is_some_and(|t| t.elapsed() >= after) {
                        first_chunk_notice(&device, after);
                        return;
                    }
                }
            });
        });
    }
}

pub fn first_chunk_notice(device: &str, after: std::time::Duration) {
    use std::io::IsTerminal;
    // Over the variant counter, if one is drawn.
    let erase = if std::io::stderr().is_terminal() {
        "\r\x1b[K"
    } else {
        ""
    };
    eprintln!(
        "{erase}glassbox: the first chunk on {device} has run for {:.0} s: a model's first run on a GPU tunes and compiles its kernels, which can take minutes; later runs reuse them from the on-disk cache",
        after.as_secs_f64()
    );
}

/// Says so when the device refused chunks (each retried in halves), so users can size batches.
pub fn report_refusals(classifier: &Classifier) {
    let refused = classifier.refused_chunks();
    if refused > 0 {
        eprintln!(
            "glassbox: note: {} refused {refused} chunk(s) of '{}' (retried in halves); it now runs {} variants per chunk",
            classifier.compute(),
            classifier.info().id(),
            classifier.chunk_size()
        );
    }
}

/// A progress bar with ETA on a terminal; one line per image otherwise (logs, CI).
pub struct Bar {
    pub tty: bool,
    pub started: Instant,
    pub processed: usize,
}

impl Bar {
    pub fn new() -> Self {
        use std::io::IsTerminal;
        Self {
            tty: std::io::stderr().is_terminal(),
            started: Instant::now(),
            processed: 0,
        }
    }

    pub fn update(&mut self, p: &glassbox::study::Progress<'_>) {
        self.processed += 1;
        let per = self.started.elapsed().as_secs_f64() / self.processed as f64;
        let left = p.total.saturating_sub(p.done);
        let eta = per * left as f64;
        let width = 24;
        let filled = (width * p.done).checked_div(p.total).unwrap_or(width);
        let line = format!(
            "[{}{}] {}/{} images, {per:.2} s/image, ETA {}",
            "=".repeat(filled),
            " ".repeat(width - filled.min(width)),
            p.done,
            p.total,
            if eta >= 60.0 {
                format!("{}m{:02}s", eta as u64 / 60, eta as u64 % 60)
            } else {
                format!("{eta:.0}s")
            }
        );
        if let Some(e) = &p.row.error {
            if self.tty {
                eprint!("\r\x1b[K");
            }
            eprintln!("glassbox: error: {e}");
        }
        let jaccards: Vec<String> = p
            .row
            .outcomes
            .iter()
            .map(|o| format!("J={:.2}", o.jaccard))
            .collect();
        if self.tty {
            eprint!("\r\x1b[K{line}  {}", p.row.image);
        } else {
            eprintln!("{line}  {} {}", p.row.image, jaccards.join(" "));
        }
    }

    pub fn finish(&self) {
        if self.tty && self.processed > 0 {
            eprintln!();
        }
    }
}
