//! What the graph tells the user besides its nodes: configs that build
//! nothing, and joins whose inlined group-bys are out of date.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::config::{Body, Config, Repo};
use crate::hash;

/// Why a config has no target at all, and what to do; `None` when a note
/// already says (a join whose schedule is `@never`).
pub(super) fn no_targets_note(config: &Config) -> Option<String> {
    let why = match &config.body {
        Body::GroupBy(_) => {
            "no targets: the group-by has no backfillStartDate and is not online, so nothing \
             builds it on its own (joins that embed it compute it as their part); set \
             backfillStartDate to backfill its table, or online to serve it"
        }
        Body::Join(join) if !join.scheduled() => return None,
        Body::Join(_) => "no targets: the join has nothing to build",
        Body::StagingQuery(_) => "no targets: the staging query has nothing to build",
    };
    Some(format!("{}: {why}", config.path))
}

/// Joins inline the group-bys they embed. When a top-level group-by of the
/// same name has different semantic content, the compiled join is stale:
/// the join part runs the inlined copy, so say so.
pub(super) fn stale_inline_copies(repo: &Repo) -> Vec<String> {
    let mut notes = Vec::new();
    let top: BTreeMap<&str, &Config> = repo
        .configs
        .iter()
        .filter(|c| matches!(c.body, Body::GroupBy(_)))
        .map(|c| (c.name.as_str(), c))
        .collect();
    for config in &repo.configs {
        let Body::Join(join) = &config.body else {
            continue;
        };
        for (i, part) in join.join_parts.iter().enumerate() {
            let Some(standalone) = top.get(part.group_by.meta.name.as_str()) else {
                continue;
            };
            let inline = hash::canonical(&config.raw["joinParts"][i]["groupBy"]);
            let own = hash::canonical(&standalone.raw);
            // What the part computes: the batch slice, less where group-bys
            // write their own tables (chronon-ai's compiler sets
            // `outputNamespace` only on standalone group-bys, not on their
            // copies inside joins; a part's table is named from its join).
            let batch = |v: &Value| {
                let mut v = v.clone();
                without_part_namespaces(&mut v);
                hash::slice(&v, "", hash::SliceScope::Batch)
            };
            if batch(&inline) != batch(&own) {
                notes.push(format!(
                    "{}: joinParts[{i}].groupBy differs from {}: recompile the join so it runs the current group-by",
                    config.path, standalone.path
                ));
            }
        }
    }
    notes
}

/// Removes `metaData.outputNamespace` from a group-by and from every group-by
/// it embeds as a join part (in a `joinSource`'s join), keeping the joins'
/// own: a chained group-by reads its join's table.
fn without_part_namespaces(group_by: &mut Value) {
    if let Some(Value::Object(meta)) = group_by.get_mut("metaData") {
        meta.remove("outputNamespace");
    }
    let mut stack = vec![group_by];
    while let Some(value) = stack.pop() {
        match value {
            Value::Object(map) => {
                if let Some(Value::Array(parts)) = map.get_mut("joinParts") {
                    for part in parts {
                        if let Some(Value::Object(meta)) = part.pointer_mut("/groupBy/metaData") {
                            meta.remove("outputNamespace");
                        }
                    }
                }
                stack.extend(map.values_mut());
            }
            Value::Array(items) => stack.extend(items.iter_mut()),
            _ => {}
        }
    }
}
