//! `chronon-build report`: one self-contained HTML page of partition health
//! (no network, no external script, style or font).
//!
//! - The grid has one row per (config, step[, part]) and one column per day.
//!   Runs of days with the same health and reason are drawn as one cell
//!   spanning them, so 300 configs x 365 days stays a few thousand elements;
//!   each cell's `title` gives its days and reason on hover, and its
//!   `data-*` attributes give them to scripts and tests.
//! - Job durations over time, one small chart per step (inline SVG).
//! - The latest failed attempts, with links to their logs.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Component, Path};

use super::{Health, NodeStatus, timestamp};
use crate::graph::{Graph, Schedule};
use crate::partition::{Day, DayRange};
use crate::plan::{Plan, Status};
use crate::store::{Attempt, day_column};

/// Everything the page shows.
pub struct ReportInput<'a> {
    pub plan: &'a Plan,
    pub graph: &'a Graph,
    pub statuses: &'a [NodeStatus],
    /// The days shown, one column each.
    pub days: DayRange,
    /// Attempts of recent runs, in the order they ended.
    pub attempts: &'a [Attempt],
    /// How many of the latest failures to list.
    pub failures: usize,
    /// Where the page is written: log links are relative to it.
    pub out_dir: &'a Path,
    pub generated_at: i64,
    pub state: &'a str,
}

pub fn color(health: Health) -> &'static str {
    match health {
        Health::Fresh => "#2da44e",
        Health::Stale => "#d4a72c",
        Health::Waiting => "#f2d98d",
        Health::Blocked => "#8250df",
        Health::Failed => "#cf222e",
        Health::NotWanted => "#eaeef2",
    }
}

/// A run of days of one row with one health and reason.
struct Cell {
    from: Day,
    to: Day,
    health: Health,
    reason: String,
}

/// One row's cells across `days`: days that are not wanted fill the gaps.
fn row_cells(plan: &Plan, graph: &Graph, id: usize, days: DayRange) -> Vec<Cell> {
    let node = &graph.nodes[id];
    let state = &plan.state[id];
    let mut by_day: BTreeMap<Day, (&Status, Option<Day>)> = BTreeMap::new();
    for target in &plan.nodes[id].targets {
        // An unpartitioned target is drawn on the last day.
        let day = match (&node.schedule, target.day) {
            (Schedule::Unpartitioned, _) => days.to,
            (_, Some(day)) => day,
            (_, None) => continue,
        };
        if days.contains(day) {
            by_day.insert(day, (&target.status, target.day));
        }
    }
    let mut cells: Vec<Cell> = Vec::new();
    for day in days.days() {
        let (health, reason) = match by_day.get(&day) {
            Some((status, target_day)) => {
                let health = Health::of_target(status, state, *target_day);
                let mut reason = status.to_string();
                if health == Health::Failed && Health::of(status) != Health::Failed {
                    let run = state.failed[&day_column(*target_day)];
                    let _ = write!(reason, "; run {run} failed it");
                }
                (health, reason)
            }
            None => (Health::NotWanted, "not a wanted partition".to_string()),
        };
        match cells.last_mut() {
            Some(cell) if cell.health == health && cell.reason == reason => cell.to = day,
            _ => cells.push(Cell {
                from: day,
                to: day,
                health,
                reason,
            }),
        }
    }
    cells
}

/// Text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The link to a log from the page: relative when both are absolute paths,
/// each segment percent-encoded.
fn log_href(out_dir: &Path, log: &Path) -> String {
    let encode = |segment: &str| {
        let mut out = String::new();
        for b in segment.bytes() {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                out.push(b as char);
            } else {
                let _ = write!(out, "%{b:02X}");
            }
        }
        out
    };
    let parts = |p: &Path| -> Vec<String> {
        p.components()
            .filter_map(|c| match c {
                Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
                _ => None,
            })
            .collect()
    };
    if !(out_dir.is_absolute() && log.is_absolute()) {
        return parts(log)
            .iter()
            .map(|s| encode(s))
            .collect::<Vec<_>>()
            .join("/");
    }
    let (base, target) = (parts(out_dir), parts(log));
    let common = base.iter().zip(&target).take_while(|(a, b)| a == b).count();
    let mut segments: Vec<String> = vec!["..".to_string(); base.len() - common];
    segments.extend(target[common..].iter().map(|s| encode(s)));
    segments.join("/")
}

const STYLE: &str = r#"
:root { --c: 3px; --row: 13px; --label: 380px; }
body { font: 13px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 16px; color: #1f2328; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 24px 0 8px; }
.meta { color: #59636e; margin-bottom: 8px; }
.legend span { display: inline-block; margin-right: 14px; }
.legend i, .swatch { display: inline-block; width: 12px; height: 12px; vertical-align: -2px; margin-right: 4px; border-radius: 2px; }
.controls { margin: 10px 0; position: sticky; top: 0; background: #fff; z-index: 3; padding: 4px 0; }
.controls input[type=search] { width: 280px; }
.grid { display: inline-block; border: 1px solid #d1d9e0; }
.row { display: flex; height: var(--row); align-items: stretch; }
.row:hover { background: #f6f8fa; }
.label { width: var(--label); min-width: var(--label); white-space: nowrap; overflow: hidden; text-overflow: ellipsis; font-size: 11px; line-height: var(--row); padding: 0 6px; position: sticky; left: 0; background: inherit; background-color: #fff; z-index: 1; }
.config .label { font-weight: 600; }
.config { height: 18px; margin-top: 2px; } .config .label { line-height: 18px; }
.track { display: flex; }
.track i { display: block; height: calc(var(--row) - 2px); margin-top: 1px; width: calc(var(--c) * var(--n)); }
.months { position: sticky; top: 34px; background: #fff; z-index: 2; border-bottom: 1px solid #d1d9e0; }
.months .track span { display: block; width: calc(var(--c) * var(--n)); overflow: hidden; white-space: nowrap; font-size: 10px; color: #59636e; border-left: 1px solid #d1d9e0; box-sizing: border-box; padding-left: 2px; }
.hidden { display: none; }
.charts { display: flex; flex-wrap: wrap; gap: 16px; }
.chart { border: 1px solid #d1d9e0; padding: 8px; }
.chart svg { display: block; }
table.failures { border-collapse: collapse; }
table.failures td, table.failures th { border-bottom: 1px solid #d1d9e0; padding: 4px 8px; text-align: left; vertical-align: top; }
table.failures pre { margin: 0; font-size: 11px; white-space: pre-wrap; max-width: 700px; }
"#;

const SCRIPT: &str = r#"
(function () {
  var search = document.getElementById('filter');
  var problems = document.getElementById('problems');
  function apply() {
    var text = search.value.toLowerCase();
    var only = problems.checked;
    document.querySelectorAll('.grid .row[data-target]').forEach(function (row) {
      var show = row.dataset.target.toLowerCase().indexOf(text) >= 0 && (!only || row.dataset.ok !== '1');
      row.classList.toggle('hidden', !show);
    });
    document.querySelectorAll('.grid .config').forEach(function (head) {
      var any = document.querySelector('.grid .row[data-config="' + CSS.escape(head.dataset.config) + '"]:not(.hidden)');
      head.classList.toggle('hidden', !any);
    });
  }
  search.addEventListener('input', apply);
  problems.addEventListener('change', apply);
})();
"#;

/// The page.
pub fn render(input: &ReportInput) -> String {
    let days = input.days;
    let width = match days.len() {
        0..=62 => 14,
        63..=130 => 7,
        131..=200 => 5,
        _ => 3,
    };
    let mut out = String::with_capacity(64 * 1024);
    head(&mut out, input, width);
    let rows: Vec<(&NodeStatus, Vec<Cell>)> = input
        .statuses
        .iter()
        .map(|s| (s, row_cells(input.plan, input.graph, s.node, days)))
        .collect();
    legend(&mut out, &rows);
    out.push_str(
        "<div class=\"controls\"><input id=\"filter\" type=\"search\" placeholder=\"filter rows by config or step\"> \
         <label><input id=\"problems\" type=\"checkbox\"> only rows that are not all fresh</label></div>\n",
    );
    grid(&mut out, &rows, days, width);
    durations(&mut out, input.attempts);
    failures(&mut out, input);
    let _ = write!(out, "<script>{SCRIPT}</script>\n</body></html>\n");
    out
}

/// The document's head, the title and what the page covers; `width` is a
/// day's width in pixels.
fn head(out: &mut String, input: &ReportInput, width: usize) {
    let days = input.days;
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>chronon-build report to {until}</title><style>{STYLE}</style>\
         <style>:root {{ --c: {width}px; }}{classes}</style></head><body>\n",
        until = days.to,
        classes = Health::ALL
            .iter()
            .map(|h| format!(" .h-{} {{ background: {}; }}", h.name(), color(*h)))
            .collect::<String>(),
    );
    let _ = writeln!(
        out,
        "<h1>Partition health to {}</h1><div class=\"meta\">{} day(s) from {} to {}; {} target row(s); state {}; generated {}</div>",
        days.to,
        days.len(),
        days.from,
        days.to,
        input.statuses.len(),
        escape(input.state),
        timestamp(input.generated_at),
    );
}

/// The colours with their totals over the shown days.
fn legend(out: &mut String, rows: &[(&NodeStatus, Vec<Cell>)]) {
    let mut totals: BTreeMap<Health, usize> = BTreeMap::new();
    for (_, cells) in rows {
        for cell in cells {
            *totals.entry(cell.health).or_default() += DayRange::new(cell.from, cell.to).len();
        }
    }
    out.push_str("<div class=\"legend\">");
    for health in Health::ALL {
        let _ = write!(
            out,
            "<span><i class=\"h-{name}\"></i>{name} {n}</span>",
            name = health.name(),
            n = totals.get(&health).copied().unwrap_or(0)
        );
    }
    out.push_str("</div>\n");
}

/// The grid: the months, then per config a heading row and its targets'
/// rows.
fn grid(out: &mut String, rows: &[(&NodeStatus, Vec<Cell>)], days: DayRange, width: usize) {
    out.push_str("<div class=\"grid\" id=\"grid\">\n<div class=\"row months\"><div class=\"label\">config / step</div><div class=\"track\">");
    months(out, days, width);
    out.push_str("</div></div>\n");
    let mut config = "";
    for (status, cells) in rows {
        if status.config != config {
            config = &status.config;
            let _ = writeln!(
                out,
                "<div class=\"row config\" data-config=\"{c}\"><div class=\"label\" title=\"{c} (team {t})\">{c} <span style=\"color:#59636e;font-weight:400\">{t}</span></div></div>",
                c = escape(config),
                t = escape(&status.team),
            );
        }
        target_row(out, status, cells);
    }
    out.push_str("</div>\n");
}

/// One span per month of `days`, labelled when it is wide enough to read.
fn months(out: &mut String, days: DayRange, width: usize) {
    let mut month_start = days.from;
    for day in days.days().chain(std::iter::once(days.to.plus(1))) {
        let new_month = day.to_string()[..7] != month_start.to_string()[..7];
        if day > days.to || new_month {
            let n = day.0 - month_start.0;
            let label = if n as usize * width >= 30 {
                month_start.to_string()[..7].to_string()
            } else {
                String::new()
            };
            let _ = write!(out, "<span style=\"--n:{n}\">{label}</span>");
            month_start = day;
        }
    }
}

fn target_row(out: &mut String, status: &NodeStatus, cells: &[Cell]) {
    let name = match &status.part {
        Some(part) => format!("{} #{part}", status.step),
        None => status.step.to_string(),
    };
    let ok = status.counts.all_fresh();
    let _ = write!(
        out,
        "<div class=\"row\" data-target=\"{target}\" data-config=\"{config}\" data-ok=\"{ok}\"><div class=\"label\" title=\"{target}\">&nbsp;&nbsp;{name}</div><div class=\"track\">",
        target = escape(&status.target),
        config = escape(&status.config),
        ok = u8::from(ok),
        name = escape(&name),
    );
    for cell in cells {
        let n = cell.to.0 - cell.from.0 + 1;
        let range = if cell.from == cell.to {
            cell.from.to_string()
        } else {
            format!("{}..{} ({n} days)", cell.from, cell.to)
        };
        let _ = write!(
            out,
            "<i class=\"h-{h}\" style=\"--n:{n}\" data-from=\"{}\" data-to=\"{}\" data-health=\"{h}\" title=\"{}\"></i>",
            cell.from,
            cell.to,
            escape(&format!("{} {range}: {}", status.target, cell.reason)),
            h = cell.health.name(),
        );
    }
    out.push_str("</div></div>\n");
}

/// Per step, an SVG scatter of attempt durations over time.
fn durations(out: &mut String, attempts: &[Attempt]) {
    out.push_str("<h2>Job durations over time</h2>\n");
    let mut by_step: BTreeMap<&str, Vec<&Attempt>> = BTreeMap::new();
    for a in attempts {
        by_step.entry(a.node.step.name()).or_default().push(a);
    }
    if by_step.is_empty() {
        out.push_str("<p>No attempts in the history yet.</p>\n");
        return;
    }
    let (t0, t1) = attempts.iter().fold((i64::MAX, i64::MIN), |(lo, hi), a| {
        (lo.min(a.started_at), hi.max(a.started_at))
    });
    let span = (t1 - t0).max(1) as f64;
    let (w, h, pad) = (420.0, 120.0, 34.0);
    out.push_str("<div class=\"charts\">\n");
    for (step, list) in &by_step {
        let mut seconds: Vec<f64> = list.iter().map(|a| a.duration.as_secs_f64()).collect();
        seconds.sort_by(f64::total_cmp);
        let pick = |q: f64| seconds[((seconds.len() - 1) as f64 * q).round() as usize];
        // The y axis ends at a round value above the longest attempt, so
        // its label never rounds to the same text as the origin.
        let max = nice_ceiling(pick(1.0));
        let _ = write!(
            out,
            "<div class=\"chart\" data-step=\"{step}\"><b>{step}</b>: {} attempt(s), median {}, p90 {}, max {}\
             <svg width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"durations of {step}\">\
             <line x1=\"{pad}\" y1=\"{y0}\" x2=\"{w}\" y2=\"{y0}\" stroke=\"#d1d9e0\"/>\
             <line x1=\"{pad}\" y1=\"4\" x2=\"{pad}\" y2=\"{y0}\" stroke=\"#d1d9e0\"/>\
             <text class=\"y-max\" x=\"0\" y=\"12\" font-size=\"10\" fill=\"#59636e\">{}</text>\
             <text x=\"0\" y=\"{y0}\" font-size=\"10\" fill=\"#59636e\">0</text>",
            list.len(),
            short_duration(pick(0.5)),
            short_duration(pick(0.9)),
            short_duration(pick(1.0)),
            short_duration(max),
            y0 = h - 16.0,
        );
        for a in list {
            let x = pad + 4.0 + (a.started_at - t0) as f64 / span * (w - pad - 10.0);
            let y = (h - 16.0) - (a.duration.as_secs_f64() / max) * (h - 24.0);
            let fill = if a.succeeded() {
                color(Health::Fresh)
            } else {
                color(Health::Failed)
            };
            let _ = write!(
                out,
                "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"2.5\" fill=\"{fill}\"><title>{}</title></circle>",
                escape(&format!(
                    "{} run {} attempt {}: {:.1}s at {}",
                    a.label(),
                    a.run,
                    a.attempt,
                    a.duration.as_secs_f64(),
                    timestamp(a.started_at)
                ))
            );
        }
        let (from, to) = time_labels(t0, t1);
        let _ = write!(
            out,
            "<text class=\"x-from\" x=\"{pad}\" y=\"{h}\" font-size=\"10\" fill=\"#59636e\">{from}</text>"
        );
        if let Some(to) = to {
            let _ = write!(
                out,
                "<text class=\"x-to\" x=\"{w}\" y=\"{h}\" font-size=\"10\" fill=\"#59636e\" text-anchor=\"end\">{to}</text>"
            );
        }
        out.push_str("</svg></div>\n");
    }
    out.push_str("</div>\n");
}

/// The smallest of 1, 2 and 5 times a power of ten that is at least
/// `seconds` (and above zero).
fn nice_ceiling(seconds: f64) -> f64 {
    let seconds = seconds.max(0.001);
    let scale = 10f64.powf(seconds.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * scale)
        .find(|v| *v >= seconds * (1.0 - 1e-9))
        .unwrap_or(10.0 * scale)
}

/// A duration as an axis label: `50ms`, `2s`, `1.5m`, `2h`.
fn short_duration(seconds: f64) -> String {
    let trim = |v: f64| {
        let text = format!("{v:.1}");
        text.strip_suffix(".0").unwrap_or(&text).to_string()
    };
    if seconds < 1.0 {
        format!("{}ms", (seconds * 1000.0).round())
    } else if seconds < 120.0 {
        format!("{}s", trim(seconds))
    } else if seconds < 7200.0 {
        format!("{}m", trim(seconds / 60.0))
    } else {
        format!("{}h", trim(seconds / 3600.0))
    }
}

/// The x axis's end labels: dates when the attempts span days, else times
/// of day with the date; one label when they all started together.
fn time_labels(t0: i64, t1: i64) -> (String, Option<String>) {
    let (from, to) = (timestamp(t0), timestamp(t1));
    if t1 - t0 >= 2 * 86_400 {
        return (from[..10].to_string(), Some(to[..10].to_string()));
    }
    let minute = |t: &str| format!("{} {}", &t[..10], &t[11..16]);
    let (from, to) = if t1 - t0 >= 120 {
        (minute(&from), minute(&to))
    } else {
        (from[..19].replace('T', " "), to[..19].replace('T', " "))
    };
    if from == to {
        (from, None)
    } else {
        (from, Some(to))
    }
}

/// The latest failed attempts, newest first, with their log links and tails.
fn failures(out: &mut String, input: &ReportInput) {
    out.push_str("<h2>Latest failures</h2>\n");
    let failed: Vec<&Attempt> = input
        .attempts
        .iter()
        .rev()
        .filter(|a| !a.succeeded())
        .take(input.failures)
        .collect();
    if failed.is_empty() {
        out.push_str("<p>No failed attempts in the history shown.</p>\n");
        return;
    }
    out.push_str("<table class=\"failures\"><tr><th>started</th><th>target</th><th>run</th><th>attempt</th><th>exit</th><th>duration</th><th>log</th></tr>\n");
    for a in failed {
        let label = a.label();
        let log = a.log_path.as_str();
        let tail = crate::run::tail(Path::new(log), 5).join("\n");
        let _ = writeln!(
            out,
            "<tr class=\"failure\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}s</td><td><a href=\"{}\">log</a><pre>{}</pre></td></tr>",
            timestamp(a.started_at),
            escape(&label),
            a.run,
            a.attempt,
            a.exit_code
                .map_or_else(|| "signal".to_string(), |c| c.to_string()),
            a.duration.as_secs_f64(),
            escape(&log_href(input.out_dir, Path::new(log))),
            escape(&tail),
        );
    }
    out.push_str("</table>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_axes_end_at_round_values_and_read_as_durations() {
        assert_eq!(nice_ceiling(0.0), 0.001);
        assert_eq!(nice_ceiling(0.004), 0.005);
        assert_eq!(nice_ceiling(0.03), 0.05);
        assert_eq!(nice_ceiling(1.0), 1.0);
        assert_eq!(nice_ceiling(7.3), 10.0);
        assert_eq!(nice_ceiling(130.0), 200.0);
        assert_eq!(short_duration(0.005), "5ms");
        assert_eq!(short_duration(0.05), "50ms");
        assert_eq!(short_duration(10.0), "10s");
        assert_eq!(short_duration(200.0), "3.3m");
        assert_eq!(short_duration(20_000.0), "5.6h");
        // Same minute: seconds; same day: minutes; days apart: dates.
        let t = 1_735_689_600; // 2025-01-01 00:00:00
        assert_eq!(
            time_labels(t, t + 5),
            (
                "2025-01-01 00:00:00".into(),
                Some("2025-01-01 00:00:05".into())
            )
        );
        assert_eq!(time_labels(t, t), ("2025-01-01 00:00:00".into(), None));
        assert_eq!(
            time_labels(t, t + 3_600),
            ("2025-01-01 00:00".into(), Some("2025-01-01 01:00".into()))
        );
        assert_eq!(
            time_labels(t, t + 3 * 86_400),
            ("2025-01-01".into(), Some("2025-01-04".into()))
        );
    }

    #[test]
    fn log_links_are_relative_and_encoded() {
        assert_eq!(
            log_href(
                Path::new("/r/out"),
                Path::new("/r/.chronon-build/logs/run-1/a b#c.log")
            ),
            "../.chronon-build/logs/run-1/a%20b%23c.log"
        );
        assert_eq!(
            escape("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
    }
}
