//! `diff` as text for a terminal and as Markdown for a pull-request comment.
//! JSON is the `Report` serialized (schema: `schemas/diff.schema.json`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

use super::{ConfigChanges, Invalidated, Report, ServingChange, job_time, next_version, thousands};

/// Per config: what changed in it, and its invalidated targets. Configs
/// only reached downstream have no change of their own.
struct ConfigSection<'r> {
    change: Option<String>,
    fields: Vec<(String, &'static str, String, String)>,
    targets: Vec<&'r Invalidated>,
}

fn sections(report: &Report) -> BTreeMap<&str, ConfigSection<'_>> {
    let mut out: BTreeMap<&str, ConfigSection> = BTreeMap::new();
    fn section<'m, 'r>(
        out: &'m mut BTreeMap<&'r str, ConfigSection<'r>>,
        name: &'r str,
    ) -> &'m mut ConfigSection<'r> {
        out.entry(name).or_insert_with(|| ConfigSection {
            change: None,
            fields: Vec::new(),
            targets: Vec::new(),
        })
    }
    for added in &report.configs.added {
        section(&mut out, added.name.as_str()).change = Some(format!("added {}", added.kind));
    }
    for renamed in &report.configs.renamed {
        section(&mut out, renamed.to.as_str()).change =
            Some(format!("{} renamed from {}", renamed.kind, renamed.from));
    }
    for modified in &report.configs.modified {
        let classes: Vec<&str> = modified.classes.iter().map(|c| c.name()).collect();
        let entry = section(&mut out, modified.name.as_str());
        entry.change = Some(format!(
            "modified {} ({})",
            modified.kind,
            classes.join(", ")
        ));
        entry.fields = modified
            .fields
            .iter()
            .map(|f| (f.path.clone(), f.class.name(), value(&f.old), value(&f.new)))
            .collect();
    }
    for target in &report.targets {
        section(&mut out, target.config.as_str())
            .targets
            .push(target);
    }
    out
}

fn value(v: &Option<Value>) -> String {
    match v {
        None => "(unset)".into(),
        Some(v) => {
            let text = v.to_string();
            if text.chars().count() > 80 {
                let cut: String = text.chars().take(77).collect();
                format!("{cut}...")
            } else {
                text
            }
        }
    }
}

fn count(target: &Invalidated) -> String {
    match (target.partitioned, target.partitions) {
        (false, _) => "redeploy".into(),
        (true, None) => "all (no start)".into(),
        (true, Some(n)) => thousands(n),
    }
}

fn ranges(target: &Invalidated) -> String {
    let shown: Vec<String> = target
        .ranges
        .iter()
        .take(4)
        .map(|r| r.to_string())
        .collect();
    let more = target.ranges.len().saturating_sub(shown.len());
    let mut text = shown.join(", ");
    if more > 0 {
        let _ = write!(text, " (+{more} ranges)");
    }
    text
}

fn estimate(target: &Invalidated) -> String {
    target
        .estimate
        .map(|e| format!("≈ {}", job_time(e.seconds)))
        .unwrap_or_else(|| "–".into())
}

fn why(target: &Invalidated) -> String {
    let reasons: Vec<String> = target.reasons.iter().map(|r| r.text()).collect();
    reasons.join("; ")
}

fn target_name(target: &Invalidated) -> String {
    match &target.part {
        Some(part) => format!("{}#{part}", target.config),
        None => target.config.clone(),
    }
}

/// One line per online config whose served values change in place.
pub fn in_place_online_changes(report: &Report) -> Vec<String> {
    report
        .serving
        .iter()
        .filter(|s| s.in_place)
        .map(|s| {
            format!(
                "online {} {} changes what it serves under the same name: online and offline values would disagree; bump its version (e.g. {})",
                s.kind,
                s.name,
                next_version(&s.name)
            )
        })
        .collect()
}

pub fn to_text(report: &Report) -> String {
    let mut out = String::new();
    text_header(&mut out, report);
    if report.configs.count() > 0 {
        text_configs(&mut out, &report.configs);
    }
    if !report.targets.is_empty() {
        text_invalidated(&mut out, report);
    }
    if !report.metadata_uploads.is_empty() {
        let _ = writeln!(
            out,
            "\nmetadata re-uploads (no data changes): {}",
            report.metadata_uploads.join(", ")
        );
    }
    if !report.serving.is_empty() {
        text_serving(&mut out, &report.serving);
    }
    if !report.notes.is_empty() {
        let _ = writeln!(out);
    }
    for note in &report.notes {
        let _ = writeln!(out, "note: {note}");
    }
    out
}

fn text_header(out: &mut String, report: &Report) {
    let _ = writeln!(out, "{}", report.headline);
    let _ = writeln!(
        out,
        "base {}, head {}, partitions up to {}{}",
        report.base,
        report.head,
        report.until,
        if report.with_state {
            ", built partitions from the state"
        } else {
            ""
        }
    );
}

fn text_configs(out: &mut String, configs: &ConfigChanges) {
    let _ = writeln!(out, "\nconfigs");
    for c in &configs.added {
        let _ = writeln!(out, "  added     {} {} ({})", c.kind, c.name, c.path);
    }
    for c in &configs.removed {
        let _ = writeln!(out, "  removed   {} {} ({})", c.kind, c.name, c.path);
    }
    for r in &configs.renamed {
        let _ = writeln!(
            out,
            "  renamed   {} {} -> {} ({})",
            r.kind, r.from, r.to, r.to_path
        );
    }
    for m in &configs.modified {
        let _ = writeln!(out, "  modified  {} {} ({})", m.kind, m.name, m.path);
        let width = m
            .fields
            .iter()
            .map(|f| f.class.name().len())
            .max()
            .unwrap_or(0);
        for f in &m.fields {
            let _ = writeln!(
                out,
                "      {:width$}  {}: {} -> {}",
                f.class.name(),
                f.path,
                value(&f.old),
                value(&f.new)
            );
        }
    }
}

/// One row per target, its columns padded to their widest cell.
fn text_invalidated(out: &mut String, report: &Report) {
    let _ = writeln!(out, "\ninvalidated");
    let rows: Vec<Vec<String>> = report
        .targets
        .iter()
        .map(|t| {
            let mut row = vec![t.step.to_string(), target_name(t), count(t), ranges(t)];
            if report.with_state {
                row.push(estimate(t));
            }
            row.push(why(t));
            row
        })
        .collect();
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let mut line = String::from(" ");
        for (cell, width) in row.iter().zip(&widths) {
            let pad = width - cell.chars().count();
            let _ = write!(line, " {cell}{}", " ".repeat(pad));
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

fn text_serving(out: &mut String, serving: &[ServingChange]) {
    let _ = writeln!(out, "\nserving");
    for s in serving {
        let how = if s.in_place {
            "in place (same name)"
        } else {
            "under a new name"
        };
        let _ = writeln!(out, "  online {} {} changes serving {how}", s.kind, s.name);
    }
}

/// Escapes a table cell: pipes end cells, newlines end rows.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

pub fn to_markdown(report: &Report) -> String {
    let mut out = String::new();
    markdown_header(&mut out, report);
    for line in in_place_online_changes(report) {
        let _ = writeln!(out, "> [!WARNING]\n> {}\n", cell(&line));
    }
    let sections = sections(report);
    if !sections.is_empty() {
        markdown_summary(&mut out, &sections, report.with_state);
    }
    for (name, section) in &sections {
        markdown_details(&mut out, name, section);
    }
    if !report.metadata_uploads.is_empty() {
        let names: Vec<String> = report
            .metadata_uploads
            .iter()
            .map(|n| format!("`{n}`"))
            .collect();
        let _ = writeln!(
            out,
            "Metadata re-uploads (no data changes): {}\n",
            names.join(", ")
        );
    }
    for note in &report.notes {
        let _ = writeln!(out, "_Note: {}_\n", cell(note));
    }
    out
}

fn markdown_header(out: &mut String, report: &Report) {
    let _ = writeln!(out, "### chronon-build diff\n");
    let _ = writeln!(out, "**{}**\n", cell(&report.headline));
    let _ = writeln!(
        out,
        "Base `{}`, head `{}`, partitions up to {}{}.\n",
        report.base,
        report.head,
        report.until,
        if report.with_state {
            " (built partitions, from the state)"
        } else {
            ""
        }
    );
}

/// The table of configs: one row per config, its targets summed.
fn markdown_summary(
    out: &mut String,
    sections: &BTreeMap<&str, ConfigSection<'_>>,
    with_state: bool,
) {
    let _ = writeln!(
        out,
        "| config | change | steps invalidated | partitions |{}\n|---|---|---|---|{}",
        if with_state { " est. job time |" } else { "" },
        if with_state { "---|" } else { "" }
    );
    for (name, section) in sections {
        let mut steps: Vec<String> = section.targets.iter().map(|t| t.step.to_string()).collect();
        steps.dedup();
        let partitions: usize = section
            .targets
            .iter()
            .filter(|t| t.partitioned)
            .filter_map(|t| t.partitions)
            .sum();
        let seconds: f64 = section
            .targets
            .iter()
            .filter_map(|t| t.estimate.map(|e| e.seconds))
            .sum();
        let time = match (
            with_state,
            section.targets.iter().any(|t| t.estimate.is_some()),
        ) {
            (false, _) => String::new(),
            (true, true) => format!(" ≈ {} |", job_time(seconds)),
            (true, false) => " – |".into(),
        };
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} |{time}",
            cell(name),
            cell(section.change.as_deref().unwrap_or("downstream")),
            cell(&steps.join(", ")),
            thousands(partitions),
        );
    }
    let _ = writeln!(out);
}

/// A config's folded section: its changed fields, then its targets.
fn markdown_details(out: &mut String, name: &str, section: &ConfigSection<'_>) {
    let _ = writeln!(
        out,
        "<details><summary><code>{}</code>: {}</summary>\n",
        html(name),
        html(
            section
                .change
                .as_deref()
                .unwrap_or("downstream of a change")
        )
    );
    if !section.fields.is_empty() {
        let _ = writeln!(out, "| field | class | old | new |\n|---|---|---|---|");
        for (path, class, old, new) in &section.fields {
            let _ = writeln!(
                out,
                "| `{}` | {class} | `{}` | `{}` |",
                cell(path),
                cell(old),
                cell(new)
            );
        }
        let _ = writeln!(out);
    }
    if !section.targets.is_empty() {
        let _ = writeln!(
            out,
            "| step | target | partitions | ranges | est. | why |\n|---|---|---|---|---|---|"
        );
        for t in &section.targets {
            let _ = writeln!(
                out,
                "| {} | `{}` | {} | {} | {} | {} |",
                t.step,
                cell(&target_name(t)),
                count(t),
                cell(&ranges(t)),
                estimate(t),
                cell(&why(t))
            );
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(out, "</details>\n");
}

/// Escapes text inside HTML tags.
fn html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
