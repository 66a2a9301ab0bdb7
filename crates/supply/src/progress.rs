//! Progress reporting, decoupled from any terminal library.
//!
//! The library reports through the [`Progress`] trait; the CLI passes
//! [`BarProgress`] (an indicatif bar on stderr), tests and servers pass
//! [`NoProgress`].

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::sync::Mutex;

/// Receives progress of long operations (downloads, extraction, hashing).
///
/// Calls come in `start`, any number of `inc`, `finish` sequences, one at a time.
pub trait Progress {
    /// A new step begins; `total` is its size in bytes when known.
    fn start(&self, total: Option<u64>, label: &str);
    /// `n` more bytes are done.
    fn inc(&self, n: u64);
    /// The current step is over.
    fn finish(&self);
}

/// Reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _total: Option<u64>, _label: &str) {}
    fn inc(&self, _n: u64) {}
    fn finish(&self) {}
}

/// An indicatif progress bar on stderr, one bar per step.
#[derive(Debug, Default)]
pub struct BarProgress {
    bar: Mutex<Option<ProgressBar>>,
}

impl BarProgress {
    /// A progress reporter drawing on stderr (hidden when stderr is not a terminal).
    pub fn new() -> BarProgress {
        BarProgress::default()
    }
}

impl Progress for BarProgress {
    fn start(&self, total: Option<u64>, label: &str) {
        let bar = match total {
            Some(t) => ProgressBar::new(t).with_style(
                ProgressStyle::with_template(
                    "{msg:40!} [{bar:30}] {bytes:>10}/{total_bytes:10} {bytes_per_sec:>12} eta {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            ),
            None => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{spinner} {msg:40!} {bytes:>10} {bytes_per_sec:>12}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            ),
        };
        bar.set_draw_target(ProgressDrawTarget::stderr());
        bar.set_message(label.to_string());
        if let Some(old) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).replace(bar) {
            old.finish_and_clear();
        }
    }

    fn inc(&self, n: u64) {
        if let Some(bar) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            bar.inc(n);
        }
    }

    fn finish(&self) {
        if let Some(bar) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).take() {
            bar.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar_progress_survives_any_call_order() {
        let p = BarProgress::new();
        p.inc(5);
        p.finish();
        p.start(Some(10), "x");
        p.inc(5);
        p.start(None, "y");
        p.inc(1);
        p.finish();
        p.finish();
    }
}
