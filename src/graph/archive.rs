//! When the real Drivers archive a join's tables, so the plan foresees it.
//!
//! Both Drivers keep a join's semantic hash in the output table's properties
//! and, when it changes, archive (rename away) whole tables before writing:
//! airbnb/chronon `spark/src/main/scala/ai/chronon/spark/JoinBase.scala`
//! `computeLeft` (line 423: the bootstrap table, when the left or the
//! bootstrap parts changed), `computeFinal` (line 465: the output table, on
//! any change) and `computeJoinOpt` (line 546: every changed table, and with
//! `--selected-join-parts` every one but the bootstrap table);
//! `SemanticHashUtils.tableHashesChanged`: a changed left drops every part
//! table. The hash (`JoinOps.baseSemanticHash`, `api/.../Extensions.scala`
//! line 912) covers the whole left source, each part's group-by without its
//! metaData (`GroupByOps.semanticHash`, line 464), the bootstrap parts and the
//! derivations, topics excluded. Unlike our slices, it includes the query
//! cutoffs (`startPartition`, `endPartition`).
//!
//! So, for jobs run by a real Driver, each join node's slice also carries
//! the parts of that hash whose change archives its table: every target of
//! the node is then stale, and no partition of an archived table is assumed
//! present. The local engine archives nothing and does not need this.

use serde_json::{Map, Value};

/// The Driver-hash components that archive the table of a join's step:
/// `"left"` for `join-left`, `"part"` with the part's index, `"final"`.
pub enum Table {
    Left,
    Part(usize),
    Final,
}

/// The value to add to the node's slice, from the join's canonical JSON.
pub fn components(join: &Value, table: Table) -> Value {
    let mut out = Map::new();
    let mut put = |key: &str, value: Option<&Value>| {
        if let Some(v) = value {
            out.insert(key.to_string(), without_topics(v));
        }
    };
    put("left", join.get("left"));
    put("bootstrapParts", join.get("bootstrapParts"));
    let parts = join.get("joinParts").and_then(Value::as_array);
    match table {
        Table::Left => {}
        Table::Part(i) => {
            let group_by = parts.and_then(|p| p.get(i)).and_then(|p| p.get("groupBy"));
            put("groupBy", group_by.map(without_meta).as_ref());
        }
        Table::Final => {
            let all: Vec<Value> = parts
                .into_iter()
                .flatten()
                .filter_map(|p| p.get("groupBy"))
                .map(without_meta)
                .collect();
            put("joinParts", Some(&Value::Array(all)));
            put("derivations", join.get("derivations"));
        }
    }
    Value::Object(out)
}

/// `GroupByOps.semanticHash`: the group-by with its metaData unset.
fn without_meta(group_by: &Value) -> Value {
    let mut copy = group_by.clone();
    if let Value::Object(map) = &mut copy {
        map.remove("metaData");
    }
    copy
}

/// `cleanTopic`: topics and mutation topics unset everywhere.
fn without_topics(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| *k != "topic" && *k != "mutationTopic")
                .map(|(k, v)| (k.clone(), without_topics(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_topics).collect()),
        other => other.clone(),
    }
}
