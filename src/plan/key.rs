//! Keys: the one place a target's key is made. A key hashes the key
//! document (`KeyDoc`): the key version, the step, the node's slice hash,
//! the partition, and per input the range read with the count and digest
//! of the partitions present in it (`InputDigest`). `evaluate` looks at a
//! target's input columns and either keys it or says why it cannot yet
//! (blocked or waiting); `explain` shows the same document.

use std::sync::Arc;

use serde::Serialize;

use super::{Column, Entry, Missing, Status};
use crate::graph::{Input, Node, Step};
use crate::hash::{Hash, KEY_VERSION};
use crate::partition::{Day, DayRange};

/// The document a key hashes. A recorded key's is in the state: its slice
/// in `slices`, its inputs in `targets.inputs_doc` (the same JSON, byte for
/// byte), so the key is its blake3 over
/// `{"key_version":V,"step":S,"slice":H[,"partition":D],"inputs":DOC}`.
#[derive(Serialize)]
pub struct KeyDoc<'a> {
    pub key_version: u32,
    pub step: Step,
    pub slice: Hash,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<Day>,
    pub inputs: &'a [InputDigest],
}

impl<'a> KeyDoc<'a> {
    /// The one way a target's key document is made: `evaluate` hashes it,
    /// `explain` shows it.
    pub fn new(node: &Node, day: Option<Day>, inputs: &'a [InputDigest]) -> KeyDoc<'a> {
        KeyDoc {
            key_version: KEY_VERSION,
            step: node.step,
            slice: node.slice_hash,
            partition: day,
            inputs,
        }
    }

    /// The key: blake3 of the key document's JSON as serde writes it, made
    /// without serde's per-field work: the document's fields before
    /// `inputs`, then the inputs' JSON, then `}`
    /// (`key_document_json_is_built_as_serde_writes_it` checks it is
    /// `Hash::of_json` of the document).
    pub fn hash(&self) -> Hash {
        self.hash_with(&inputs_json(self.inputs))
    }

    /// The hash of the inputs' JSON, the key, and the inputs' JSON they
    /// hashed (what the state stores beside the key).
    pub fn hashed(&self) -> (Hash, Hash, Vec<u8>) {
        let inputs = inputs_json(self.inputs);
        (Hash::of(&inputs), self.hash_with(&inputs), inputs)
    }

    fn hash_with(&self, inputs: &[u8]) -> Hash {
        // Step names and hex digits need no escapes.
        let mut head = Vec::with_capacity(192);
        head.extend_from_slice(b"{\"key_version\":");
        head.extend_from_slice(self.key_version.to_string().as_bytes());
        head.extend_from_slice(b",\"step\":\"");
        head.extend_from_slice(self.step.name().as_bytes());
        head.extend_from_slice(b"\",\"slice\":\"");
        head.extend_from_slice(&self.slice.hex_bytes());
        head.push(b'"');
        if let Some(day) = self.partition {
            head.extend_from_slice(b",\"partition\":\"");
            head.extend_from_slice(&day.text_bytes());
            head.push(b'"');
        }
        head.extend_from_slice(b",\"inputs\":");
        let mut key = blake3::Hasher::new();
        key.update(&head);
        key.update(inputs);
        key.update(b"}");
        Hash(*key.finalize().as_bytes())
    }
}

/// The hash of inputs' JSON, as recorded beside a key: a key that changed
/// while its slice and inputs did not was made by another key version.
pub fn inputs_hash(inputs: &[InputDigest]) -> Hash {
    Hash::of(&inputs_json(inputs))
}

/// The inputs' JSON, byte for byte as serde writes it (field order, string
/// escapes), without serde's per-field work: a plan writes one per target.
fn inputs_json(inputs: &[InputDigest]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + inputs.len() * (160 + 2 * 32));
    out.push(b'[');
    for (i, input) in inputs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"table\":");
        serde_json::to_writer(&mut out, &input.table).expect("serializing to memory cannot fail");
        out.extend_from_slice(b",\"from\":\"");
        out.extend_from_slice(&input.from.text_bytes());
        out.extend_from_slice(b"\",\"to\":\"");
        out.extend_from_slice(&input.to.text_bytes());
        out.extend_from_slice(b"\",\"present\":");
        out.extend_from_slice(input.present.to_string().as_bytes());
        out.extend_from_slice(b",\"digest\":\"");
        out.extend_from_slice(&input.digest.hex_bytes());
        out.extend_from_slice(b"\"}");
    }
    out.push(b']');
    out
}

/// What a target reads of one table: the range, how many partitions are
/// present in it, and the digest of their fingerprints.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct InputDigest {
    pub table: String,
    pub from: Day,
    pub to: Day,
    pub present: u32,
    pub digest: Hash,
}

/// The outcome of looking at a target's inputs.
pub enum Evaluation {
    /// Cannot be keyed yet: blocked on a missing input or waiting on an
    /// upstream target.
    Pending(Status),
    Ready {
        inputs: Vec<InputDigest>,
        key: Hash,
    },
}

/// The days of an input a target at `at` reads (its lookback from the
/// column's first partition).
pub(crate) fn read_range(input: &Input, column: &Column, at: Day) -> DayRange {
    input.range(at, column.first_present())
}

/// Looks at one target's inputs. `columns[i]` is the column of
/// `node.inputs[i]`; ordering-only inputs have none.
pub fn evaluate(node: &Node, day: Option<Day>, at: Day, columns: &[Option<&Column>]) -> Evaluation {
    let mut waiting: Option<&Status> = None;
    let mut inputs = Vec::with_capacity(node.inputs.len());
    for (input, column) in node.inputs.iter().zip(columns) {
        let Some(column) = column else { continue };
        if let Some(anchor) = input.anchor(at) {
            match column.get(anchor) {
                // Absent from a producer's table: the producer does not
                // build that day (it starts later, or stops earlier), so
                // no run will ever write it; reading on would race with
                // the producer creating its table.
                Entry::Absent => {
                    return Evaluation::Pending(Status::Blocked {
                        input: Arc::new(Missing {
                            table: input.table.clone(),
                            partition: anchor,
                            invalid_config: None,
                        }),
                    });
                }
                Entry::Pending(status @ Status::Blocked { .. }) => {
                    return Evaluation::Pending(status.clone());
                }
                _ => {}
            }
        }
        let range = read_range(input, column, at);
        if range.is_empty() {
            continue;
        }
        if let Some(status) = column.first_pending(range) {
            if matches!(status, Status::Blocked { .. }) {
                return Evaluation::Pending(status.clone());
            }
            waiting = waiting.or(Some(status));
            continue;
        }
        let (present, digest) = column.digest(range);
        inputs.push(InputDigest {
            table: input.table.to_string(),
            from: range.from,
            to: range.to,
            present,
            digest,
        });
    }
    if let Some(status) = waiting {
        return Evaluation::Pending(status.clone());
    }
    inputs.sort();
    let key = KeyDoc::new(node, day, &inputs).hash();
    Evaluation::Ready { inputs, key }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_document_json_is_built_as_serde_writes_it() {
        let inputs = [
            InputDigest {
                table: "raw.\"quoted\" table".into(),
                from: Day(20_000),
                to: Day(20_030),
                present: 31,
                digest: Hash::of(b"a"),
            },
            InputDigest {
                table: "internal:out.t".into(),
                from: Day(-3),
                to: Day(5),
                present: 0,
                digest: Hash::of(b"b"),
            },
            InputDigest {
                table: "ns.t\u{1}\n\\é/".into(),
                from: Day(2_932_896),
                to: Day(2_932_896),
                present: u32::MAX,
                digest: Hash::of(b"c"),
            },
        ];
        for (step, partition) in Step::ALL
            .into_iter()
            .flat_map(|step| [(step, Some(Day(20_031))), (step, None)])
        {
            for inputs in [&inputs[..], &[]] {
                let doc = KeyDoc {
                    key_version: KEY_VERSION,
                    step,
                    slice: Hash::of(b"slice"),
                    partition,
                    inputs,
                };
                let (inputs_hash, key, json) = doc.hashed();
                assert_eq!(json, serde_json::to_vec(inputs).unwrap());
                assert_eq!(inputs_hash, Hash::of_json(&inputs));
                assert_eq!(inputs_hash, super::inputs_hash(inputs));
                assert_eq!(key, Hash::of_json(&doc));
                assert_eq!(doc.hash(), key);
            }
        }
    }
}
