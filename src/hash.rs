//! Keys: what makes a target stale.
//!
//! ```text
//! key(target) = blake3(canonical JSON of {
//!     key_version, step, slice: hash of the step's semantic slice,
//!     partition, inputs: [{table, from, to, present, digest}] sorted, engine? })
//! ```
//!
//! What goes in:
//! - the *semantic slice* of the config for the step: canonical JSON of the
//!   fields that change the data the step writes (`FIELD_RULES` says which);
//! - the values the step's job acts on as *resolved* from the config, under
//!   the slice's `resolved` (`graph::builder`): the table it writes
//!   (`MetaData::output_table` and the names derived from it), the effective
//!   accuracy (`GroupBy::effective_accuracy`) of the upload, streaming, each
//!   join part and the comparison table, and the left's data model
//!   (`Source::data_model`) of every join step. They come from the same
//!   functions the engine and the executors call, so a raw field classed
//!   below as serving-only or non-semantic that moves one of them (a topic
//!   makes an unset accuracy TEMPORAL; `executionInfo.outputTableInfo.table`
//!   renames the output) still changes the key, and `explain` names
//!   `resolved.<field>`;
//! - per input table, a digest of the fingerprints of the partitions the
//!   target reads. Internal inputs use the producer's recorded output
//!   fingerprint, so keys form a Merkle chain.
//!
//! What is left out on purpose, and why:
//! - metadata that does not change data (descriptions, team contacts,
//!   `executionInfo`, `modeToEnvMap`, `columnHashes`, schedules,
//!   `backfillStartDate`, dependency hints): editing them must not rerun years
//!   of backfill;
//! - query cutoffs (`startPartition`, `endPartition`): they act through input
//!   ranges, so moving one makes stale exactly the partitions whose inputs it
//!   changes;
//! - topics and other serving-only fields, for batch steps (streaming and
//!   metadata upload keep them);
//! - absolute paths and modification times: fingerprints are already hashes.
//!
//! Range digests are sums of per-partition hashes (wrapping, in four 64-bit
//! lanes) over prefix arrays, so "the 31 days before D" or "all history up to
//! D" costs one subtraction instead of rehashing the range per target.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Number, Value};

use crate::partition::Day;

/// Bump to invalidate every cache. History:
/// 1: first release;
/// 2: slices carry the values jobs act on as resolved (`resolved`: output
///    table, effective accuracy, the left's data model).
pub const KEY_VERSION: u32 = 2;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    pub fn of(bytes: &[u8]) -> Hash {
        Hash(*blake3::hash(bytes).as_bytes())
    }

    /// The hash of a value's JSON. Serializes into a reused per-thread
    /// buffer and hashes once: serde writes many tiny pieces, and feeding
    /// them to the hasher one by one costs more than the hashing.
    pub fn of_json<T: Serialize>(value: &T) -> Hash {
        thread_local! {
            static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        BUFFER.with(|buffer| {
            let mut buffer = buffer.borrow_mut();
            buffer.clear();
            serde_json::to_writer(&mut *buffer, value).expect("serializing to memory cannot fail");
            Hash::of(&buffer)
        })
    }

    pub fn hex(&self) -> String {
        self.hex_bytes().iter().map(|b| *b as char).collect()
    }

    /// Lowercase hex in a stack buffer: keys serialize several hashes each,
    /// a million times per plan.
    pub fn hex_bytes(&self) -> [u8; 64] {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 64];
        for (i, byte) in self.0.iter().enumerate() {
            out[2 * i] = DIGITS[(byte >> 4) as usize];
            out[2 * i + 1] = DIGITS[(byte & 0xf) as usize];
        }
        out
    }

    pub fn short(&self) -> String {
        self.hex()[..12].to_string()
    }

    pub fn from_hex(text: &str) -> Option<Hash> {
        if text.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Hash(out))
    }

    pub fn from_slice(bytes: &[u8]) -> Option<Hash> {
        <[u8; 32]>::try_from(bytes).ok().map(Hash)
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.short())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.short())
    }
}

impl Serialize for Hash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let hex = self.hex_bytes();
        s.serialize_str(std::str::from_utf8(&hex).expect("hex digits are ASCII"))
    }
}

impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Hash, D::Error> {
        let text = String::deserialize(d)?;
        Hash::from_hex(&text).ok_or_else(|| serde::de::Error::custom("expected 64 hex digits"))
    }
}

// ---------------------------------------------------------------------------
// Canonical JSON

/// Fields that Thrift writes as `1`/`0` and that mean booleans.
const BOOLEAN_FIELDS: &[&str] = &[
    "online",
    "production",
    "historicalBackfill",
    "isCumulative",
    "consistencyCheck",
];

/// Fields whose value is JSON inside a string.
const JSON_STRING_FIELDS: &[&str] = &["customJson"];

/// Canonical form of a compiled config: object keys sorted, booleans as
/// `true`/`false`, integral floats as integers, AND-ed `wheres` sorted,
/// JSON-in-strings (`customJson`, dependency specs) parsed, and unset values
/// (null, empty lists and maps) dropped, since Thrift treats them alike.
pub fn canonical(value: &Value) -> Value {
    canonical_field("", value).unwrap_or(Value::Null)
}

fn canonical_field(key: &str, value: &Value) -> Option<Value> {
    match value {
        Value::Null => None,
        Value::Bool(b) => Some(Value::Bool(*b)),
        Value::Number(n)
            if BOOLEAN_FIELDS.contains(&key)
                && (n.as_i64() == Some(0) || n.as_i64() == Some(1)) =>
        {
            Some(Value::Bool(n.as_i64() == Some(1)))
        }
        Value::Number(n) => Some(Value::Number(canonical_number(n))),
        Value::String(s)
            if JSON_STRING_FIELDS.contains(&key)
                || (key == "dependencies" && s.starts_with('{')) =>
        {
            match serde_json::from_str::<Value>(s) {
                Ok(parsed) => canonical_field("", &parsed),
                Err(_) => Some(Value::String(s.clone())),
            }
        }
        Value::String(s) => Some(Value::String(s.clone())),
        Value::Array(items) => {
            let mut out: Vec<Value> = items
                .iter()
                .filter_map(|item| canonical_field(key, item))
                .collect();
            if key == "wheres" {
                out.sort_by_key(|v| v.to_string());
            }
            (!out.is_empty()).then_some(Value::Array(out))
        }
        Value::Object(map) => {
            let out: Map<String, Value> = map
                .iter()
                .filter_map(|(k, v)| canonical_field(k, v).map(|v| (k.clone(), v)))
                .collect();
            (!out.is_empty()).then_some(Value::Object(out))
        }
    }
}

fn canonical_number(n: &Number) -> Number {
    if n.is_f64()
        && let Some(f) = n.as_f64()
        && f.fract() == 0.0
        && f.abs() < 9e15
    {
        return Number::from(f as i64);
    }
    n.clone()
}

// ---------------------------------------------------------------------------
// Field classification

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FieldClass {
    /// Changes the data every batch step writes.
    Semantic,
    /// A query cutoff: acts through input ranges, so it is not hashed.
    Cutoff,
    /// Changes what is served online, not batch data.
    ServingOnly,
    /// Metadata, schedules, execution settings.
    NonSemantic,
}

impl FieldClass {
    pub fn name(self) -> &'static str {
        match self {
            FieldClass::Semantic => "semantic",
            FieldClass::Cutoff => "cutoff",
            FieldClass::ServingOnly => "serving-only",
            FieldClass::NonSemantic => "non-semantic",
        }
    }
}

pub struct FieldRule {
    /// Dotted path with array indices removed. `**.` matches any prefix.
    pub pattern: &'static str,
    pub class: FieldClass,
}

/// The one table that decides what each field does to keys (each row says
/// why in a comment above it). First match wins; a field under `metaData`
/// that no row names is non-semantic, any other unnamed field is semantic
/// (a field we do not know might change data).
pub const FIELD_RULES: &[FieldRule] = &[
    // Names the output table.
    FieldRule {
        pattern: "**.metaData.name",
        class: FieldClass::Semantic,
    },
    // Names the output table.
    FieldRule {
        pattern: "**.metaData.outputNamespace",
        class: FieldClass::Semantic,
    },
    // Shifts every input.
    FieldRule {
        pattern: "**.metaData.customJson.lag",
        class: FieldClass::Semantic,
    },
    // Decides serving, not batch data.
    FieldRule {
        pattern: "**.metaData.online",
        class: FieldClass::ServingOnly,
    },
    // Online logging rate.
    FieldRule {
        pattern: "**.metaData.samplePercent",
        class: FieldClass::ServingOnly,
    },
    // Online consistency sampling rate.
    FieldRule {
        pattern: "**.metaData.consistencySamplePercent",
        class: FieldClass::ServingOnly,
    },
    // Documentation.
    FieldRule {
        pattern: "**.metaData.description",
        class: FieldClass::NonSemantic,
    },
    // Ownership.
    FieldRule {
        pattern: "**.metaData.team",
        class: FieldClass::NonSemantic,
    },
    // Cluster and schedule settings.
    FieldRule {
        pattern: "**.metaData.executionInfo",
        class: FieldClass::NonSemantic,
    },
    // Job environment.
    FieldRule {
        pattern: "**.metaData.modeToEnvMap",
        class: FieldClass::NonSemantic,
    },
    // Derived by the compiler.
    FieldRule {
        pattern: "**.metaData.columnHashes",
        class: FieldClass::NonSemantic,
    },
    // Schedule.
    FieldRule {
        pattern: "**.metaData.offlineSchedule",
        class: FieldClass::NonSemantic,
    },
    // Sensor hints; inputs come from sources.
    FieldRule {
        pattern: "**.metaData.dependencies",
        class: FieldClass::NonSemantic,
    },
    // Table metadata.
    FieldRule {
        pattern: "**.metaData.tableProperties",
        class: FieldClass::NonSemantic,
    },
    // Tags and job arguments.
    FieldRule {
        pattern: "**.metaData.customJson",
        class: FieldClass::NonSemantic,
    },
    // Input cutoff.
    FieldRule {
        pattern: "**.query.startPartition",
        class: FieldClass::Cutoff,
    },
    // Input cutoff.
    FieldRule {
        pattern: "**.query.endPartition",
        class: FieldClass::Cutoff,
    },
    // First partition wanted.
    FieldRule {
        pattern: "startPartition",
        class: FieldClass::Cutoff,
    },
    // First partition wanted.
    FieldRule {
        pattern: "backfillStartDate",
        class: FieldClass::NonSemantic,
    },
    // Streaming input.
    FieldRule {
        pattern: "**.events.topic",
        class: FieldClass::ServingOnly,
    },
    // Streaming input.
    FieldRule {
        pattern: "**.entities.mutationTopic",
        class: FieldClass::ServingOnly,
    },
    // Fetched online only.
    FieldRule {
        pattern: "**.onlineExternalParts",
        class: FieldClass::ServingOnly,
    },
];

/// The class of a field at `path` (dotted, indices allowed: they are ignored).
pub fn classify(path: &str) -> FieldClass {
    let shape = shape_of(path);
    let segments: Vec<&str> = shape.split('.').collect();
    for rule in FIELD_RULES {
        if rule_matches(rule.pattern, &segments) {
            return rule.class;
        }
    }
    if segments.contains(&"metaData") {
        FieldClass::NonSemantic
    } else {
        FieldClass::Semantic
    }
}

fn shape_of(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => in_index = true,
            ']' => in_index = false,
            _ if !in_index => out.push(c),
            _ => {}
        }
    }
    out
}

/// A rule matches a path when its segments are a prefix of the path's
/// (`**.` rules may start at any depth): a rule for `metaData.executionInfo`
/// covers everything inside it.
fn rule_matches(pattern: &str, segments: &[&str]) -> bool {
    match pattern.strip_prefix("**.") {
        Some(rest) => {
            let wanted: Vec<&str> = rest.split('.').collect();
            (0..segments.len()).any(|start| prefix_matches(&wanted, &segments[start..]))
        }
        None => {
            let wanted: Vec<&str> = pattern.split('.').collect();
            prefix_matches(&wanted, segments)
        }
    }
}

fn prefix_matches(wanted: &[&str], segments: &[&str]) -> bool {
    wanted.len() <= segments.len()
        && wanted
            .iter()
            .zip(segments)
            .all(|(w, s)| w == s || *w == "*")
}

/// Which classes of fields a step's slice keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SliceScope {
    /// Batch steps: semantic fields only.
    Batch,
    /// Streaming: semantic and serving-only fields.
    Serving,
    /// Metadata upload: the whole config.
    Everything,
}

/// Keeps the fields of a canonical value that the scope counts. `path` is the
/// JSON path of `value` within the config. Only leaves are classified, since
/// a rule may name a field deep inside an object whose other fields differ
/// (`metaData.name` is semantic, the rest of `metaData` is not); containers
/// left empty are dropped.
pub fn slice(value: &Value, path: &str, scope: SliceScope) -> Option<Value> {
    match value {
        Value::Object(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                let child = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                if let Some(v) = slice(v, &child, scope) {
                    out.insert(k.clone(), v);
                }
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
        Value::Array(items) => {
            let out: Vec<Value> = items
                .iter()
                .enumerate()
                .filter_map(|(i, v)| slice(v, &format!("{path}[{i}]"), scope))
                .collect();
            (!out.is_empty()).then_some(Value::Array(out))
        }
        leaf => {
            let keep = matches!(
                (scope, classify(path)),
                (SliceScope::Everything, _)
                    | (_, FieldClass::Semantic)
                    | (SliceScope::Serving, FieldClass::ServingOnly)
            );
            keep.then(|| leaf.clone())
        }
    }
}

/// Field-level differences between two canonical values, as
/// `(path, old, new)`; absent sides are `None`.
pub fn diff(old: &Value, new: &Value) -> Vec<(String, Option<Value>, Option<Value>)> {
    let mut out = Vec::new();
    diff_into("", Some(old), Some(new), &mut out);
    out
}

fn diff_into(
    path: &str,
    old: Option<&Value>,
    new: Option<&Value>,
    out: &mut Vec<(String, Option<Value>, Option<Value>)>,
) {
    match (old, new) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let child = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                diff_into(&child, a.get(k), b.get(k), out);
            }
        }
        (Some(Value::Array(a)), Some(Value::Array(b))) => {
            for i in 0..a.len().max(b.len()) {
                diff_into(&format!("{path}[{i}]"), a.get(i), b.get(i), out);
            }
        }
        (a, b) if a == b => {}
        (a, b) => out.push((path.to_string(), a.cloned(), b.cloned())),
    }
}

// ---------------------------------------------------------------------------
// Range digests

/// A wrapping sum of partition hashes, in four independent 64-bit lanes.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct Lanes(pub [u64; 4]);

impl Lanes {
    pub fn of(hash: &Hash) -> Lanes {
        let mut lanes = [0u64; 4];
        for (i, lane) in lanes.iter_mut().enumerate() {
            *lane = u64::from_le_bytes(hash.0[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        }
        Lanes(lanes)
    }

    pub fn plus(self, other: Lanes) -> Lanes {
        let mut out = self.0;
        for (o, x) in out.iter_mut().zip(other.0) {
            *o = o.wrapping_add(x);
        }
        Lanes(out)
    }

    pub fn minus(self, other: Lanes) -> Lanes {
        let mut out = self.0;
        for (o, x) in out.iter_mut().zip(other.0) {
            *o = o.wrapping_sub(x);
        }
        Lanes(out)
    }

    pub fn digest(&self, present: u32) -> Hash {
        let mut hasher = blake3::Hasher::new();
        for lane in self.0 {
            hasher.update(&lane.to_le_bytes());
        }
        hasher.update(&present.to_le_bytes());
        Hash(*hasher.finalize().as_bytes())
    }
}

/// The hash one partition contributes to a range digest: it binds the table
/// and the day, so moving data between days or tables changes the digest.
pub fn partition_hash(table: &str, day: Day, fingerprint: &Hash) -> Hash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(table.as_bytes());
    hasher.update(&[0]);
    hasher.update(&day.0.to_le_bytes());
    hasher.update(&fingerprint.0);
    Hash(*hasher.finalize().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_normalises_booleans_numbers_wheres_and_unset_fields() {
        let a = json!({"b": 1, "metaData": {"online": 1, "samplePercent": 100.0, "customJson": "{\"lag\": 0, \"x\": [1]}"},
                       "query": {"wheres": ["b = 1", "a = 2"], "setups": []}});
        let b = json!({"metaData": {"customJson": "{\"x\": [1], \"lag\": 0}", "samplePercent": 100, "online": true},
                       "query": {"wheres": ["a = 2", "b = 1"]}, "b": 1, "argMap": {}});
        assert_eq!(canonical(&a), canonical(&b));
        assert_eq!(canonical(&a)["metaData"]["online"], json!(true));
    }

    #[test]
    fn key_hash_is_stable_for_equal_documents() {
        let a = json!({"x": 1, "y": [1, 2]});
        assert_eq!(
            Hash::of_json(&canonical(&a)),
            Hash::of_json(&canonical(&json!({"y": [1, 2], "x": 1.0})))
        );
        assert_ne!(
            Hash::of_json(&a),
            Hash::of_json(&json!({"x": 2, "y": [1, 2]}))
        );
    }

    #[test]
    fn range_sums_subtract_to_the_same_digest_as_direct_sums() {
        let hashes: Vec<Hash> = (0..10)
            .map(|i| partition_hash("t", Day(i), &Hash::of(&[i as u8])))
            .collect();
        let mut prefix = vec![Lanes::default()];
        for h in &hashes {
            let last = *prefix.last().unwrap();
            prefix.push(last.plus(Lanes::of(h)));
        }
        let direct = hashes[3..7]
            .iter()
            .fold(Lanes::default(), |acc, h| acc.plus(Lanes::of(h)));
        assert_eq!(prefix[7].minus(prefix[3]), direct);
    }

    /// Builds `{a: {b: [ {c: value} ]}}`-style JSON for a dotted path.
    fn nest(path: &str, value: Value) -> Value {
        path.rsplit('.')
            .fold(value, |inner, segment| match segment.strip_suffix("[0]") {
                Some(key) => json!({ key: [inner] }),
                None => json!({ segment: inner }),
            })
    }

    /// Every row of `FIELD_RULES`, at the top level and inside an inlined
    /// group-by of a join part: the class is as written, and slices keep or
    /// drop the field as the class says for batch, serving and metadata steps.
    #[test]
    fn every_classification_row_decides_what_each_step_hashes() {
        for rule in FIELD_RULES {
            let concrete = rule.pattern.trim_start_matches("**.");
            let mut paths = vec![concrete.to_string()];
            if rule.pattern.starts_with("**.") {
                paths.push(format!("joinParts[0].groupBy.{concrete}"));
            }
            for path in paths {
                assert_eq!(
                    classify(&path),
                    rule.class,
                    "row {} at {path}",
                    rule.pattern
                );
                let config = canonical(&nest(&path, json!("value")));
                let kept = |scope| slice(&config, "", scope) == Some(config.clone());
                let (batch, serving) = match rule.class {
                    FieldClass::Semantic => (true, true),
                    FieldClass::ServingOnly => (false, true),
                    FieldClass::Cutoff | FieldClass::NonSemantic => (false, false),
                };
                assert_eq!(
                    kept(SliceScope::Batch),
                    batch,
                    "row {} at {path}: batch steps",
                    rule.pattern
                );
                assert_eq!(
                    kept(SliceScope::Serving),
                    serving,
                    "row {} at {path}: streaming",
                    rule.pattern
                );
                assert!(
                    kept(SliceScope::Everything),
                    "row {} at {path}: metadata upload hashes everything",
                    rule.pattern
                );
            }
        }
    }

    #[test]
    fn unnamed_fields_are_semantic_outside_metadata_and_not_inside() {
        assert_eq!(
            classify("aggregations[1].windows[0].length"),
            FieldClass::Semantic
        );
        assert_eq!(
            classify("joinParts[2].groupBy.keyColumns[0]"),
            FieldClass::Semantic
        );
        assert_eq!(
            classify("metaData.someNewCompilerField"),
            FieldClass::NonSemantic
        );
        assert_eq!(
            classify("joinParts[0].groupBy.metaData.owner"),
            FieldClass::NonSemantic
        );
    }

    #[test]
    fn diff_names_field_paths_with_old_and_new_values() {
        let old = json!({"aggregations": [{"windows": [{"length": 7}]}], "keep": 1});
        let new = json!({"aggregations": [{"windows": [{"length": 14}]}], "keep": 1, "added": "x"});
        let changes = diff(&old, &new);
        assert_eq!(
            changes,
            vec![
                ("added".to_string(), None, Some(json!("x"))),
                (
                    "aggregations[0].windows[0].length".to_string(),
                    Some(json!(7)),
                    Some(json!(14))
                ),
            ]
        );
    }
}
