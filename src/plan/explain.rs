//! Reasons: what changed for a target whose key differs from the recorded
//! one, read from the stored slices and input versions (cached), so a
//! `config-changed` reason names fields and an `input-changed` one names
//! partitions.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde_json::Value;

use super::{Column, Context, Entry, FieldChange, StaleReason, node_key};
use crate::error::Error;
use crate::graph::{Node, NodeId};
use crate::hash::{self, Hash};
use crate::partition::{Day, DayRange};
use crate::store::{Recorded, StateStore};

/// Names what changed for targets whose hashes differ from the recorded
/// ones, reading stored slices and input versions with caching.
pub struct Explainer<'c, 'a> {
    ctx: &'c Context<'a>,
    cache: HashMap<(String, i64), HashMap<Day, Hash>>,
    slices: HashMap<(NodeId, Hash), Arc<StaleReason>>,
}

impl<'c, 'a> Explainer<'c, 'a> {
    pub fn new(ctx: &'c Context<'a>) -> Self {
        Explainer {
            ctx,
            cache: HashMap::new(),
            slices: HashMap::new(),
        }
    }

    pub(super) fn reason(
        &mut self,
        node: &Node,
        at: Day,
        day: Option<Day>,
        recorded: &Recorded,
        columns: &[Option<&Column>],
    ) -> Result<Arc<StaleReason>, Error> {
        if recorded.slice != node.slice_hash {
            if let Some(reason) = self.slices.get(&(node.id, recorded.slice)) {
                return Ok(reason.clone());
            }
            let fields = self.config_changes(node, &recorded.slice)?;
            let reason = Arc::new(StaleReason::ConfigChanged { fields });
            self.slices
                .insert((node.id, recorded.slice), reason.clone());
            return Ok(reason);
        }
        let changes = self.input_changes(node, at, day, recorded, columns, true)?;
        Ok(Arc::new(
            changes
                .into_iter()
                .next()
                .unwrap_or(StaleReason::KeyChanged),
        ))
    }

    /// Field paths of the node's slice that differ from the recorded slice.
    pub fn config_changes(&self, node: &Node, old: &Hash) -> Result<Vec<FieldChange>, Error> {
        let Some(store) = self.ctx.store else {
            return Ok(Vec::new());
        };
        let Some(text) = store.slice_json(old)? else {
            return Ok(vec![FieldChange {
                path: "(recorded slice not in the state)".into(),
                old: None,
                new: None,
            }]);
        };
        let old: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let part_index = self.part_index(node);
        Ok(hash::diff(&old, &node.slice)
            .into_iter()
            .map(|(path, old, new)| {
                let path = match (path.strip_prefix("joinPart"), part_index) {
                    (Some(rest), Some(i)) => format!("joinParts[{i}]{rest}"),
                    _ => path,
                };
                FieldChange { path, old, new }
            })
            .collect())
    }

    fn part_index(&self, node: &Node) -> Option<usize> {
        let part = node.part.as_deref()?;
        match &self.ctx.repo.configs[node.config].body {
            crate::config::Body::Join(join) => {
                join.join_parts.iter().position(|p| p.label() == part)
            }
            _ => None,
        }
    }

    /// Every input partition that differs from what the recorded build
    /// read, in table and day order; with `first_only`, stops at the first.
    pub fn input_changes(
        &mut self,
        node: &Node,
        at: Day,
        day: Option<Day>,
        recorded: &Recorded,
        columns: &[Option<&Column>],
        first_only: bool,
    ) -> Result<Vec<StaleReason>, Error> {
        let Some(store) = self.ctx.store else {
            return Ok(Vec::new());
        };
        let old_ranges = store.ranges_read(&node_key(node), day)?;
        // Per table: its column, the ranges read then, the ranges read now.
        type Reads<'c> = (Option<&'c Column>, Vec<DayRange>, Vec<DayRange>);
        let mut tables: BTreeMap<&str, Reads> = BTreeMap::new();
        for (input, column) in node.inputs.iter().zip(columns) {
            let Some(column) = column else { continue };
            let range = input.range(at, column.first_present());
            let entry =
                tables
                    .entry(&*input.table)
                    .or_insert((Some(column), Vec::new(), Vec::new()));
            if !range.is_empty() {
                entry.2.push(range);
            }
        }
        for (table, from, to) in &old_ranges {
            if let Some(entry) = tables.get_mut(table.as_str()) {
                entry.1.push(DayRange::new(*from, *to));
            }
        }
        let mut out = Vec::new();
        for (table, (column, old, new)) in tables {
            let Some(column) = column else { continue };
            let seen = self.seen(store, table, recorded.seq)?;
            let mut days: BTreeSet<Day> = BTreeSet::new();
            for range in old.iter().chain(&new) {
                days.extend(range.days());
            }
            for d in days {
                let before = old
                    .iter()
                    .any(|r| r.contains(d))
                    .then(|| seen.get(&d).copied())
                    .flatten();
                let now = match (new.iter().any(|r| r.contains(d)), column.get(d)) {
                    (true, Entry::Present(fp)) => Some(*fp),
                    _ => None,
                };
                let change = match (before, now) {
                    (Some(old), Some(new)) if old != new => Some(StaleReason::InputChanged {
                        table: table.to_string(),
                        partition: d,
                        old,
                        new,
                    }),
                    (None, Some(_)) => Some(StaleReason::InputAdded {
                        table: table.to_string(),
                        partition: d,
                    }),
                    (Some(_), None) => Some(StaleReason::InputRemoved {
                        table: table.to_string(),
                        partition: d,
                    }),
                    _ => None,
                };
                if let Some(change) = change {
                    out.push(change);
                    if first_only {
                        return Ok(out);
                    }
                }
            }
        }
        Ok(out)
    }

    fn seen(
        &mut self,
        store: &StateStore,
        table: &str,
        seq: i64,
    ) -> Result<&HashMap<Day, Hash>, Error> {
        let key = (table.to_string(), seq);
        if !self.cache.contains_key(&key) {
            let seen = store.seen_at(table, Day(i32::MIN / 2), Day(i32::MAX / 2), seq)?;
            self.cache.insert(key.clone(), seen);
        }
        Ok(&self.cache[&key])
    }
}
