//! `chronon-build explain TARGET`: one target's key document and every
//! difference from the recorded build.

use clap::Args;
use serde::Serialize;

use super::{Format, Global, Workspace, default_until, parse_day, print_json};
use crate::error::{Error, Exit};
use crate::graph::{Graph, Node, Step};
use crate::hash::Hash;
use crate::partition::Day;
use crate::plan::{
    self, Column, Context, Evaluation, Explainer, FieldChange, InputDigest, KeyDoc, PlanOptions,
    StaleReason, Status, TargetPlan,
};
use crate::store::{Recorded, StateStore, day_column};

#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// STEP:CONFIG[#PART][@YYYY-MM-DD], e.g. group-by-backfill:team.features.v1@2025-09-12.
    /// Without a day, the latest wanted partition.
    pub target: String,
    /// Plan as of this day [default: yesterday, UTC].
    #[arg(long, value_parser = parse_day, value_name = "YYYY-MM-DD")]
    pub until: Option<Day>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

pub(super) struct TargetSpec {
    pub step: Step,
    pub config: String,
    pub part: Option<String>,
    pub day: Option<Day>,
}

pub(super) fn parse_target(text: &str) -> Result<TargetSpec, Error> {
    let usage = |why: &str| {
        Error::Usage(format!(
            "target {text:?}: {why}; expected STEP:CONFIG[#PART][@YYYY-MM-DD]"
        ))
    };
    let (step, rest) = text.split_once(':').ok_or_else(|| usage("no step"))?;
    let step = Step::parse(step).ok_or_else(|| usage(&format!("unknown step {step:?}")))?;
    let (rest, day) = match rest.rsplit_once('@') {
        Some((rest, day)) => (
            rest,
            Some(Day::parse(day).ok_or_else(|| usage(&format!("bad day {day:?}")))?),
        ),
        None => (rest, None),
    };
    let (config, part) = match rest.split_once('#') {
        Some((config, part)) => (config.to_string(), Some(part.to_string())),
        None => (rest.to_string(), None),
    };
    Ok(TargetSpec {
        step,
        config,
        part,
        day,
    })
}

#[derive(Serialize)]
struct Explanation<'a> {
    target: String,
    file: &'a str,
    #[serde(flatten)]
    status: &'a Status,
    /// For a waiting or blocked target: where its chain of upstream
    /// targets ends.
    #[serde(skip_serializing_if = "Option::is_none")]
    root_cause: Option<RootCause>,
    key: Option<Hash>,
    recorded_key: Option<Hash>,
    key_document: Option<serde_json::Value>,
    slice: &'a serde_json::Value,
    inputs: Vec<InputRead<'a>>,
    differences: Vec<Difference>,
}

/// Where a waiting target's chain of upstream targets ends: the first one
/// that is not waiting (blocked on a missing source partition, failed, or
/// stale and to run first); for a blocked target, the missing partition.
#[derive(Serialize)]
struct RootCause {
    /// The upstream targets followed, nearest first.
    chain: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<String>,
    #[serde(flatten)]
    status: Status,
}

impl RootCause {
    fn text(&self) -> String {
        let what = match &self.status {
            Status::Blocked { input } if input.invalid_config.is_none() => {
                format!("{input} (a source partition: load it into the warehouse, then plan again)")
            }
            Status::Stale(reason) if matches!(**reason, StaleReason::PreviousRunFailed { .. }) => {
                format!(
                    "{}: the upstream job failed (`chronon-build logs {}` shows why)",
                    self.status,
                    self.target.as_deref().unwrap_or_default()
                )
            }
            Status::Stale(_) => format!("{}: it runs first", self.status),
            status => status.to_string(),
        };
        match &self.target {
            Some(target) => format!("{target}: {what}"),
            None => what,
        }
    }
}

/// Follows a waiting target's upstream targets in the plan to the first
/// that is not waiting; a blocked target is its own root cause.
fn root_cause(graph: &Graph, plan: &plan::Plan, status: &Status) -> Option<RootCause> {
    let mut chain: Vec<String> = Vec::new();
    let mut status = status.clone();
    loop {
        match &status {
            // A chain longer than the graph has nodes would be a cycle.
            Status::Waiting { upstream } if chain.len() <= graph.nodes.len() => {
                let spec = parse_target(&upstream.to_string()).ok()?;
                let node = graph.find(spec.step, &spec.config, spec.part.as_deref())?;
                let next = plan.nodes[node.id]
                    .targets
                    .iter()
                    .find(|t| t.day == spec.day)?;
                chain.push(upstream.to_string());
                status = next.status.clone();
            }
            Status::Waiting { .. } => return None,
            Status::Blocked { .. } | Status::Stale(_) if !chain.is_empty() => {
                return Some(RootCause {
                    target: chain.last().cloned(),
                    chain,
                    status,
                });
            }
            Status::Blocked { .. } => {
                return Some(RootCause {
                    chain,
                    target: None,
                    status,
                });
            }
            _ => return None,
        }
    }
}

#[derive(Serialize)]
struct InputRead<'a> {
    table: &'a str,
    origin: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    producer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    range: Option<InputDigest>,
    partitions: Vec<(Day, Hash)>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Difference {
    Field(FieldChange),
    Reason(StaleReason),
}

pub fn run(global: &Global, args: &ExplainArgs) -> Result<Exit, Error> {
    let spec = parse_target(&args.target)?;
    let until = args.until.unwrap_or_else(default_until);
    let ws = Workspace::load(global)?;
    let node = ws
        .graph
        .find(spec.step, &spec.config, spec.part.as_deref())
        .ok_or_else(|| {
            Error::Usage(format!(
                "no target {:?} in the graph; `chronon-build graph --format json` lists them",
                args.target
            ))
        })?;
    let mut selected = vec![false; ws.graph.nodes.len()];
    selected[node.id] = true;
    let store = ws.open_state_read()?;
    let probe = ws.probe_read_only()?;
    let ctx = Context {
        repo: &ws.repo,
        settings: &ws.settings,
        graph: &ws.graph,
        probe: probe.as_ref(),
        store: store.as_ref(),
    };
    let plan = plan::compute(&ctx, &PlanOptions::new(until, None, selected))?;
    let targets = &plan.nodes[node.id].targets;
    let target = wanted_target(targets, node, spec.day, until, &args.target)?;

    let columns = plan.input_columns(&ws.graph, node);
    let at = target.day.unwrap_or(until);
    let evaluation = plan::evaluate(node, target.day, at, &columns);
    let (key_document, digests): (_, &[InputDigest]) = match &evaluation {
        Evaluation::Ready { inputs, .. } => (
            Some(
                serde_json::to_value(KeyDoc::new(node, target.day, inputs))
                    .expect("key document serializes"),
            ),
            inputs,
        ),
        Evaluation::Pending(_) => (None, &[]),
    };
    let inputs = input_reads(&ws.graph, node, &columns, at, digests);

    let recorded = recorded_build(store.as_ref(), node, target.day)?;
    let differences = differences(&ctx, node, target, at, recorded.as_ref(), &columns)?;

    let explanation = Explanation {
        target: target_label(node, target.day),
        file: &ws.repo.configs[node.config].path,
        status: &target.status,
        root_cause: root_cause(&ws.graph, &plan, &target.status),
        key: target.key,
        recorded_key: recorded.map(|r| r.key),
        key_document,
        slice: &node.slice,
        inputs,
        differences,
    };
    match args.format {
        Format::Json => print_json(&explanation),
        Format::Text => print!("{}", to_text(&explanation)),
    }
    Ok(Exit::Ok)
}

/// The target of the day asked for, else the latest wanted; a usage error
/// saying which days are wanted when there is none.
fn wanted_target<'p>(
    targets: &'p [TargetPlan],
    node: &Node,
    day: Option<Day>,
    until: Day,
    asked: &str,
) -> Result<&'p TargetPlan, Error> {
    match day {
        Some(day) => targets.iter().find(|t| t.day == Some(day)),
        None => targets.last(),
    }
    .ok_or_else(|| {
        let wanted = match (
            targets.first().and_then(|t| t.day),
            targets.last().and_then(|t| t.day),
        ) {
            (Some(a), Some(b)) => format!("wanted up to {until}: {a}..{b}"),
            _ => format!("no partition is wanted up to {until}"),
        };
        Error::Usage(format!(
            "{asked} is not a wanted partition of {} ({wanted})",
            node.label()
        ))
    })
}

/// What the target reads, per input that is more than ordering: the range
/// its key digests and the partitions present in it.
fn input_reads<'a>(
    graph: &Graph,
    node: &'a Node,
    columns: &[Option<&Column>],
    at: Day,
    digests: &[InputDigest],
) -> Vec<InputRead<'a>> {
    node.inputs
        .iter()
        .zip(columns)
        .filter(|(input, _)| !input.ordering_only)
        .map(|(input, column)| {
            let range = column.map(|c| input.range(at, c.first_present()));
            InputRead {
                table: &input.table,
                origin: &input.origin,
                producer: input.producer.map(|p| graph.nodes[p].label()),
                range: digests
                    .iter()
                    .find(|d| {
                        *d.table == *input.table
                            && range.is_some_and(|r| r.from == d.from && r.to == d.to)
                    })
                    .cloned(),
                partitions: match (column, range) {
                    (Some(c), Some(r)) if !r.is_empty() => c.present_in(r),
                    _ => Vec::new(),
                },
            }
        })
        .collect()
}

/// The target's build as the state recorded it; none without a state.
fn recorded_build(
    store: Option<&StateStore>,
    node: &Node,
    day: Option<Day>,
) -> Result<Option<Recorded>, Error> {
    Ok(match store {
        Some(store) => store
            .load()?
            .remove(&plan::node_key(node))
            .and_then(|s| s.built.get(&day_column(day)).copied()),
        None => None,
    })
}

/// Every difference from the recorded build: config fields (when the slice
/// changed), then inputs; and a missing or modified output, which no input
/// explains.
fn differences(
    ctx: &Context,
    node: &Node,
    target: &TargetPlan,
    at: Day,
    recorded: Option<&Recorded>,
    columns: &[Option<&Column>],
) -> Result<Vec<Difference>, Error> {
    let mut differences = Vec::new();
    if let Some(recorded) = recorded {
        let mut explainer = Explainer::new(ctx);
        if recorded.slice != node.slice_hash {
            differences.extend(
                explainer
                    .config_changes(node, &recorded.slice)?
                    .into_iter()
                    .map(Difference::Field),
            );
        }
        differences.extend(
            explainer
                .input_changes(node, at, target.day, recorded, columns, false)?
                .into_iter()
                .map(Difference::Reason),
        );
    }
    if let Status::Stale(reason) = &target.status
        && matches!(
            **reason,
            StaleReason::OutputMissing { .. } | StaleReason::OutputModified { .. }
        )
    {
        differences.push(Difference::Reason((**reason).clone()));
    }
    Ok(differences)
}

fn target_label(node: &Node, day: Option<Day>) -> String {
    match day {
        Some(day) => format!("{}@{day}", node.label()),
        None => node.label(),
    }
}

fn to_text(e: &Explanation) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let hex = |h: &Option<Hash>| h.map_or("(none)".to_string(), |h| h.hex());
    let _ = writeln!(out, "target        {}", e.target);
    let _ = writeln!(out, "file          {}", e.file);
    let _ = writeln!(out, "status        {}", e.status);
    if let Some(root) = &e.root_cause {
        if root.chain.len() > 1 {
            let _ = writeln!(out, "waits on      {}", root.chain.join(" <- "));
        }
        let _ = writeln!(out, "root cause    {}", root.text());
    }
    let _ = writeln!(out, "key           {}", hex(&e.key));
    let _ = writeln!(out, "recorded key  {}", hex(&e.recorded_key));
    let _ = writeln!(out, "\ninputs:");
    for input in &e.inputs {
        let producer = input
            .producer
            .as_deref()
            .map(|p| format!(" (written by {p})"))
            .unwrap_or_default();
        let _ = writeln!(out, "  {}{producer}  from {}", input.table, input.origin);
        if let Some(range) = &input.range {
            let _ = writeln!(
                out,
                "    {}..{}: {} present, digest {}",
                range.from,
                range.to,
                range.present,
                range.digest.short()
            );
        }
        for (day, fp) in &input.partitions {
            let _ = writeln!(out, "    {day}  {}", fp.short());
        }
    }
    let _ = writeln!(out, "\ndifferences from the recorded build:");
    if e.recorded_key.is_none() {
        let _ = writeln!(out, "  (never built)");
    } else if e.differences.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    for difference in &e.differences {
        match difference {
            Difference::Field(change) => {
                let _ = writeln!(out, "  config-changed {change}");
            }
            Difference::Reason(reason) => {
                let _ = writeln!(out, "  {reason}");
            }
        }
    }
    let _ = writeln!(out, "\nkey document:");
    match &e.key_document {
        Some(doc) => {
            let _ = writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(doc).expect("serializes")
            );
        }
        None => {
            let _ = writeln!(out, "  (not computable yet: {})", e.status);
        }
    }
    let _ = writeln!(
        out,
        "\nslice:\n{}",
        serde_json::to_string_pretty(e.slice).expect("serializes")
    );
    out
}
