//! Local streaming, modelled on Zipline's `local-streaming` mode: the
//! events table of a source with a `topic` stands in for the topic, an
//! event being on it from its time on.
//!
//! `group-by-streaming` deploys the job: it records the deployment in the
//! KV store and folds the topic's events at or after the batch end (the
//! streaming head) into the group-by's `{NAME}_STREAMING` dataset, one
//! entry per key, as Chronon's streaming job writes each event under its
//! key. A deployed job keeps consuming: `fetch` folds what reached the
//! topic since, for the keys it serves, before reading the head back. The
//! target is keyed on the config alone, so a config change redeploys, as a
//! keep-alive deploy does in production. What the engine cannot stream
//! (mutation topics of TEMPORAL entities) is reported by `emulation_gap`,
//! and the runner reports the step as skipped with that note.

use rusqlite::Connection;
use rusqlite::types::Value;
use serde_json::{Map, Value as Json, json};

use super::groupby::{Events, Spec, dataset, load, source_table};
use super::ir::{timed_from_json, timed_json};
use super::{Engine, EngineError, Result, key_string, kv, table_name};
use crate::config::{Body, GroupBy, Source, sanitize};
use crate::graph::Node;
use crate::partition::{Day, DayRange};

/// The KV dataset of deployed local streaming jobs, keyed by group-by.
pub const DEPLOYED: &str = "CHRONON_LOCAL_STREAMING_JOBS";

/// The KV dataset a group-by's streaming head goes to, as Chronon names it.
pub fn streaming_dataset(gb: &GroupBy) -> String {
    streaming_dataset_of(&gb.meta.name)
}

/// `streaming_dataset`, by the group-by's name alone.
pub fn streaming_dataset_of(config: &str) -> String {
    format!("{}_STREAMING", sanitize(config).to_uppercase())
}

/// Why the local engine cannot run this group-by's streaming job, if it
/// cannot.
pub fn emulation_gap(gb: &GroupBy) -> Option<&'static str> {
    gb.sources
        .iter()
        .any(|s| {
            matches!(
                s,
                Source::Entities {
                    mutation_topic: Some(_),
                    ..
                }
            )
        })
        .then_some(
            "mutation topics (TEMPORAL entities) are not emulated; the local engine serves \
             their batch uploads only (run it with the zipline executor)",
        )
}

/// One key's streaming head: every event time, and each input column's
/// non-null values, in time order.
#[derive(Default)]
pub struct Head {
    pub times: Vec<i64>,
    pub inputs: Map<String, Json>,
}

impl Head {
    /// One key's events at or after `end`.
    fn of(spec: &Spec, events: &Events, key: usize, end: i64) -> Head {
        let mut inputs = Map::new();
        for (i, name) in spec.inputs.iter().enumerate() {
            let after = events.values[key][i].iter().filter(|(t, _)| *t >= end);
            inputs.insert(name.clone(), timed_json(after));
        }
        Head {
            times: events.times[key]
                .iter()
                .copied()
                .filter(|t| *t >= end)
                .collect(),
            inputs,
        }
    }

    fn to_json(&self) -> Json {
        json!({ "times": self.times, "inputs": self.inputs })
    }

    /// The values of one input column, in time order.
    pub fn values(&self, input: &str) -> Vec<(i64, Value)> {
        self.inputs
            .get(input)
            .and_then(timed_from_json)
            .unwrap_or_default()
    }
}

fn group_by<'e>(engine: &'e Engine, node: &Node) -> Result<&'e GroupBy> {
    match &engine.repo.configs[node.config].body {
        Body::GroupBy(gb) => Ok(gb),
        _ => Err(EngineError::failed("not a group-by")),
    }
}

/// Deploys the group-by's streaming job: records it and folds the head.
pub fn deploy(engine: &Engine, node: &Node) -> Result<String> {
    let gb = group_by(engine, node)?;
    if let Some(gap) = emulation_gap(gb) {
        return Err(EngineError::unsupported(gap));
    }
    let spec = Spec::new(gb, &engine.warehouse.partition_column)?;
    let end = batch_end(&kv::open(&engine.kv_path)?, gb)?;
    let folded = end.map(|end| fold(engine, &spec, end, None)).transpose()?;
    let topics: Vec<&str> = gb
        .sources
        .iter()
        .filter_map(|s| match s {
            Source::Events { topic, .. } => topic.as_deref(),
            _ => None,
        })
        .collect();
    let record = json!({ "topics": topics, "batchEndTsMillis": end });
    kv::put(
        &engine.kv_path,
        DEPLOYED,
        &gb.meta.name,
        &record.to_string(),
        "",
    )?;
    Ok(match (end, folded) {
        (Some(end), Some((keys, events))) => format!(
            "{}: deployed; {events} events at or after the batch end {} folded for {keys} keys \
             into {}",
            gb.meta.name,
            Day(end.div_euclid(super::aggregate::DAY_MS) as i32),
            streaming_dataset(gb)
        ),
        _ => format!(
            "{}: deployed; no batch upload in {} yet, so no head to fold",
            gb.meta.name,
            engine.kv_path.display()
        ),
    })
}

/// The batch end of the group-by's upload in the KV store, if uploaded.
pub fn batch_end(store: &Connection, gb: &GroupBy) -> Result<Option<i64>> {
    Ok(kv::get(store, &dataset(gb), kv::SERVING_INFO)?
        .and_then(|(info, _)| info.get("batchEndTsMillis").and_then(Json::as_i64)))
}

/// Whether the group-by's streaming job is deployed locally.
pub fn deployed(store: &Connection, gb: &GroupBy) -> Result<bool> {
    Ok(kv::get(store, DEPLOYED, &gb.meta.name)?.is_some())
}

/// Folds the topic's events at or after `end` into the streaming dataset:
/// every key's, or only `only`'s (its values as the request gives them).
/// Returns how many keys and events were folded.
pub fn fold(
    engine: &Engine,
    spec: &Spec,
    end: i64,
    only: Option<&[Vec<Value>]>,
) -> Result<(usize, usize)> {
    let conn = engine.connect()?;
    let mut events = Events::default();
    for (i, source) in spec.gb.sources.iter().enumerate() {
        if !matches!(source, Source::Events { topic: Some(_), .. }) {
            continue;
        }
        let table = source_table(source);
        let partitions = engine
            .warehouse
            .partitions(&table_name(&table)?)
            .map_err(|e| EngineError::failed(e.to_string()))?;
        let days: Vec<Day> = partitions
            .iter()
            .filter_map(|p| Day::parse(&p.partition))
            .collect();
        let (Some(first), Some(last)) = (days.iter().min(), days.iter().max()) else {
            continue;
        };
        let what = format!("sources[{i}]");
        load(
            &conn,
            spec,
            source,
            // The topic: every event, from its `ts` on.
            (DayRange::new(*first, *last), None),
            &mut events,
            &what,
        )?;
    }
    events.sort();
    let dataset = streaming_dataset(spec.gb);
    let wanted: Option<Vec<String>> = only.map(|keys| keys.iter().map(|k| key_string(k)).collect());
    let mut entries = Vec::new();
    let mut folded = 0;
    for key in 0..events.keys.len() {
        if let Some(wanted) = &wanted
            && !wanted.contains(&key_string(&events.keys[key]))
        {
            continue;
        }
        let head = Head::of(spec, &events, key, end);
        folded += head.times.len();
        if !head.times.is_empty() {
            entries.push((
                kv::key_json(&spec.gb.key_columns, &events.keys[key]),
                head.to_json().to_string(),
            ));
        }
    }
    let keys = entries.len();
    match only {
        None => kv::replace_dataset(&engine.kv_path, &dataset, &entries, &end.to_string())?,
        Some(_) => {
            for (key, value) in &entries {
                kv::put(&engine.kv_path, &dataset, key, value, &end.to_string())?;
            }
        }
    }
    Ok((keys, folded))
}

/// One key's streaming head as stored, if any.
pub fn head(store: &Connection, gb: &GroupBy, key: &str) -> Result<Option<Head>> {
    let Some((value, _)) = kv::get(store, &streaming_dataset(gb), key)? else {
        return Ok(None);
    };
    let times = value
        .get("times")
        .and_then(Json::as_array)
        .map(|l| l.iter().filter_map(Json::as_i64).collect())
        .unwrap_or_default();
    let inputs = value
        .get("inputs")
        .and_then(Json::as_object)
        .cloned()
        .unwrap_or_default();
    Ok(Some(Head { times, inputs }))
}
