//! Progress: indicatif bars on a terminal (overall, plus one line per
//! running job with its elapsed time), plain timestamped lines otherwise.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// Bars on a terminal, plain lines otherwise.
    Auto,
    Bars,
    Plain,
    /// Nothing but the summary.
    Quiet,
}

pub enum Progress {
    Bars {
        multi: MultiProgress,
        overall: ProgressBar,
        jobs: HashMap<usize, ProgressBar>,
    },
    Plain,
    Quiet,
}

impl Progress {
    pub fn new(mode: ProgressMode) -> Progress {
        let bars = match mode {
            ProgressMode::Auto => std::io::stderr().is_terminal(),
            ProgressMode::Bars => true,
            ProgressMode::Plain => false,
            ProgressMode::Quiet => return Progress::Quiet,
        };
        if crate::say::quiet() {
            return Progress::Quiet;
        }
        if !bars {
            return Progress::Plain;
        }
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let overall = multi.add(ProgressBar::new(0));
        overall.set_style(
            ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} jobs {msg}")
                .expect("template")
                .progress_chars("=> "),
        );
        overall.enable_steady_tick(Duration::from_millis(200));
        Progress::Bars {
            multi,
            overall,
            jobs: HashMap::new(),
        }
    }

    pub fn queued(&mut self, n: usize) {
        if let Progress::Bars { overall, .. } = self {
            overall.inc_length(n as u64);
        }
    }

    pub fn started(&mut self, job: usize, what: &str) {
        match self {
            Progress::Bars { multi, jobs, .. } => {
                let bar = multi.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("  {spinner} {elapsed:>5} {msg}")
                        .expect("template"),
                );
                bar.set_message(what.to_string());
                bar.enable_steady_tick(Duration::from_millis(200));
                jobs.insert(job, bar);
            }
            // Outside a terminal a job is one line, the summary's; `-v`
            // adds its start and end as they happen.
            Progress::Plain if crate::say::verbose() => {
                say(&format!("{} start {what}", timestamp()))
            }
            Progress::Plain | Progress::Quiet => {}
        }
    }

    /// A job ended well: on a terminal its bar ends with `line`; outside
    /// one, the summary says it (and `-v` says it here too).
    pub fn succeeded(&mut self, job: usize, line: &str) {
        match self {
            Progress::Plain if !crate::say::verbose() => {}
            _ => self.ended(job, line, true),
        }
    }

    /// A job ended (for good or before a retry); `line` says how.
    pub fn ended(&mut self, job: usize, line: &str, done: bool) {
        match self {
            Progress::Bars {
                multi,
                overall,
                jobs,
            } => {
                if let Some(bar) = jobs.remove(&job) {
                    bar.finish_and_clear();
                    multi.remove(&bar);
                }
                let _ = multi.println(line);
                if done {
                    overall.inc(1);
                }
            }
            Progress::Plain => say(&format!("{} {line}", timestamp())),
            Progress::Quiet => {}
        }
    }

    pub fn note(&mut self, line: &str) {
        match self {
            Progress::Bars { multi, .. } => {
                let _ = multi.println(line);
            }
            Progress::Plain => say(&format!("{} {line}", timestamp())),
            Progress::Quiet => {}
        }
    }

    pub fn finish(&mut self) {
        if let Progress::Bars { overall, jobs, .. } = self {
            for bar in jobs.values() {
                bar.finish_and_clear();
            }
            overall.finish_and_clear();
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ`, UTC.
pub fn timestamp() -> String {
    let now = crate::clock::unix_now();
    let day = crate::partition::Day(now.div_euclid(86400) as i32);
    let secs = now.rem_euclid(86400);
    format!(
        "{day}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// A progress line on standard error; a reader that went away does not stop
/// (or crash) the run.
fn say(line: &str) {
    crate::say::err(line);
}
