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
        let terminal = std::io::stderr().is_terminal();
        ColdReads::drawn(
            kind,
            tables,
            cold,
            terminal.then(ProgressDrawTarget::stderr),
        )
    }

    /// The same, drawn on `target` (`None`: not a terminal).
    fn drawn(
        kind: &str,
        tables: usize,
        cold: usize,
        target: Option<ProgressDrawTarget>,
    ) -> ColdReads {
        let Some(target) = target.filter(|_| cold >= MANY) else {
            return ColdReads(None);
        };
        let bar = ProgressBar::with_draw_target(Some(tables as u64), target);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bar_only_for_many_cold_reads_on_a_terminal() {
        let shown = |cold: usize, terminal: bool| {
            let target = terminal.then(ProgressDrawTarget::hidden);
            ColdReads::drawn("delta", 100, cold, target).0.is_some()
        };
        assert!(shown(50, true));
        assert!(!shown(49, true));
        assert!(!shown(100, false));
        let reads = ColdReads::drawn("delta", 100, 60, Some(ProgressDrawTarget::hidden()));
        reads.read();
        reads.read();
        let bar = reads.0.as_ref().unwrap();
        assert_eq!((bar.position(), bar.length()), (2, Some(100)));
        assert!(bar.message().contains("60 from their metadata"));
    }
}
