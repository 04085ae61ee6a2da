//! A live progress bar with the current rate, on a terminal only: piped output and CI logs get
//! the final table alone.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// One phase's live counter; cheap to clone into every simulated client.
#[derive(Debug, Clone)]
pub(crate) struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A bar for `total` steps labelled `label`, drawn on stderr when `visible` and stderr is a
    /// terminal.
    pub(crate) fn new(label: &'static str, total: u64, visible: bool) -> Self {
        let target = if visible { ProgressDrawTarget::stderr_with_hz(4) } else { ProgressDrawTarget::hidden() };
        let bar = ProgressBar::with_draw_target(Some(total), target);
        let style = ProgressStyle::with_template("{prefix:>12} [{bar:32}] {pos}/{len} {per_sec:>14} {elapsed_precise}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(label);
        bar.enable_steady_tick(Duration::from_millis(250));
        Self { bar }
    }

    /// A counter nobody sees, for steps inside another phase.
    pub(crate) fn hidden() -> Self {
        Self { bar: ProgressBar::hidden() }
    }

    pub(crate) fn inc(&self, steps: u64) {
        self.bar.inc(steps);
    }

    /// Removes the bar, leaving the screen to the report.
    pub(crate) fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
