//! What `run` records when a target is built: its key, its key document's
//! inputs and their hash (made when its job starts), its slice
//! (`BuildRecord`), and the input partitions its job read (`reads`).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Column, InputDigest, KeyDoc, Plan, TargetPlan, read_range};
use crate::graph::{Graph, Node, Schedule};
use crate::hash::Hash;
use crate::partition::{Day, DayRange};
use crate::store::NodeKey;

/// What recording one target as built writes, apart from its output
/// fingerprint (probed after the job, by the caller).
pub struct BuildRecord {
    /// Shared by a job's records.
    pub node: Arc<NodeKey>,
    pub day: Option<Day>,
    pub key: Hash,
    pub slice: Hash,
    pub slice_json: Arc<str>,
    pub inputs_hash: Hash,
    /// The key document's inputs, as JSON (`KeyDoc`): stored beside the
    /// key, so the document of any recorded key can be read back.
    pub inputs_doc: String,
    /// The output holds one version only (a KV dataset, an unpartitioned
    /// upload table): building this day replaces what any other day built.
    pub sole: bool,
    /// The table the node writes, kept with the node in the state.
    pub output_table: Option<Arc<str>>,
}

impl BuildRecord {
    /// For a target whose key is known (its inputs all are); `None` while
    /// it is blocked or waiting. Its inputs' digests (O(1) each on the
    /// columns, in the order `evaluate` sorts them) make the key document
    /// stored beside the key. `key` and `slice_json` are the node's key and
    /// its slice as JSON, shared by all its targets.
    pub fn for_target(
        plan: &Plan,
        graph: &Graph,
        node: &Node,
        target: &TargetPlan,
        key: &Arc<NodeKey>,
        slice_json: &Arc<str>,
    ) -> Option<BuildRecord> {
        target.key?;
        let at = target.day.unwrap_or(plan.until);
        let mut inputs: Vec<InputDigest> = node
            .inputs
            .iter()
            .zip(plan.input_columns(graph, node))
            .filter_map(|(input, column)| {
                let column = column?;
                let range = read_range(input, column, at);
                if range.is_empty() {
                    return None;
                }
                let (present, digest) = column.digest(range);
                Some(InputDigest {
                    table: input.table.to_string(),
                    from: range.from,
                    to: range.to,
                    present,
                    digest,
                })
            })
            .collect();
        inputs.sort();
        // The key as the job runs: the document and its hashes are made
        // together, so the stored document is always the key's.
        let (inputs_hash, target_key, doc) = KeyDoc::new(node, target.day, &inputs).hashed();
        Some(BuildRecord {
            node: key.clone(),
            day: target.day,
            key: target_key,
            slice: node.slice_hash,
            slice_json: slice_json.clone(),
            inputs_hash,
            inputs_doc: String::from_utf8(doc).expect("JSON is UTF-8"),
            sole: node.schedule == Schedule::Latest && !node.probed_output,
            output_table: node.output.as_deref().map(Arc::from),
        })
    }

    /// The store's view, with the probed output fingerprint (or the key, for
    /// steps whose output cannot be probed).
    pub fn built(&self, output: Hash) -> crate::store::Built<'_> {
        crate::store::Built {
            node: &self.node,
            day: self.day,
            key: self.key,
            slice: self.slice,
            slice_json: &self.slice_json,
            inputs: self.inputs_hash,
            output,
            inputs_doc: &self.inputs_doc,
            sole: self.sole,
            output_table: self.output_table.as_deref(),
        }
    }
}

/// The node's slice as stored: canonical JSON.
pub fn slice_json(node: &Node) -> Arc<str> {
    serde_json::to_string(&node.slice)
        .expect("slice serializes")
        .into()
}

/// Every input partition that targets of `node` at `days` read, once each:
/// per input, the union of the targets' ranges.
pub fn reads(
    node: &Node,
    columns: &[Option<&Column>],
    days: &[Option<Day>],
    until: Day,
) -> Vec<(String, Day, Hash)> {
    let mut out: BTreeMap<(&str, Day), Hash> = BTreeMap::new();
    for (input, column) in node.inputs.iter().zip(columns) {
        let Some(column) = column else { continue };
        let first = column.first_present();
        let mut ranges: Vec<DayRange> = days
            .iter()
            .map(|d| input.range(d.unwrap_or(until), first))
            .filter(|r| !r.is_empty())
            .collect();
        ranges.sort_by_key(|r| (r.from, r.to));
        let mut merged: Vec<DayRange> = Vec::new();
        for range in ranges {
            match merged.last_mut() {
                Some(last) if range.from.0 <= last.to.0 + 1 => last.to = last.to.max(range.to),
                _ => merged.push(range),
            }
        }
        for range in merged {
            for (day, fp) in column.present_in(range) {
                out.insert((&*input.table, day), fp);
            }
        }
    }
    out.into_iter()
        .map(|((t, d), fp)| (t.to_string(), d, fp))
        .collect()
}
