//! A progress bar for a listing that reads many tables from their
//! metadata for the first time (a cold plan on an Iceberg or Delta
//! warehouse reads thousands of manifests or checkpoints): on standard
//! error when it is a terminal, in the style of a run's overall bar
//! (`run::progress`); nothing otherwise, as a plan's output is its own.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Fewer cold reads than this read fast enough to need no bar.
const MANY: usize = 50;

pub struct ColdReads(Option<ProgressBar>);

impl ColdReads {
    /// A bar over `tables` when `cold` of them (no memory to start from)
    /// are many and standard error is a terminal.
    pub fn new(kind: &str, tables: usize, cold: usize) -> ColdReads {
        if cold < MANY || !std::io::stderr().is_terminal() {
            return ColdReads(None);
        }
        let bar = ProgressBar::with_draw_target(Some(tables as u64), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
                .expect("template")
                .progress_chars("=> "),
        );
        bar.set_message(format!(
            "{kind} tables read ({cold} from their metadata for the first time)"
        ));
        bar.enable_steady_tick(Duration::from_millis(200));
        ColdReads(Some(bar))
    }

    /// One more table read.
    pub fn read(&self) {
        if let Some(bar) = &self.0 {
            bar.inc(1);
        }
    }
}

/// The listing ended (or failed): the bar goes, leaving the plan's output.
impl Drop for ColdReads {
    fn drop(&mut self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}
