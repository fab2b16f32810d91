//! Listing a repository's config folders and reading its JSON files:
//! entries sorted, hidden ones skipped, an unreadable folder a problem, and
//! a key repeated in an object refused.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{ConfigKind, Problem};

/// A folder's entries, sorted; a folder that cannot be read is a problem,
/// never silently empty.
pub(super) fn sorted_dir(root: &Path, dir: &Path, problems: &mut Vec<Problem>) -> Vec<PathBuf> {
    let listed = std::fs::read_dir(dir).and_then(|rd| {
        rd.map(|e| e.map(|e| e.path()))
            .collect::<Result<Vec<_>, _>>()
    });
    match listed {
        Ok(mut entries) => {
            entries.sort();
            entries
        }
        Err(e) => {
            problems.push(Problem {
                file: format!("{}/", relative(root, dir)),
                path: String::new(),
                message: format!("cannot read the folder: {e}"),
            });
            Vec::new()
        }
    }
}

pub(super) fn collect_files(
    root: &Path,
    dir: &Path,
    kind: ConfigKind,
    out: &mut Vec<(ConfigKind, PathBuf)>,
    problems: &mut Vec<Problem>,
) {
    for entry in sorted_dir(root, dir, problems) {
        let hidden = entry
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        if entry.is_dir() {
            collect_files(root, &entry, kind, out, problems);
        } else {
            out.push((kind, entry));
        }
    }
}

pub(super) fn relative(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

pub(super) fn read_json(path: &Path, rel: &str, problems: &mut Vec<Problem>) -> Option<Value> {
    let problem = |message: String| Problem {
        file: rel.to_string(),
        path: String::new(),
        message,
    };
    let text = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) => {
            problems.push(problem(format!("cannot read: {e}")));
            return None;
        }
    };
    match strict_json(without_bom(&text)) {
        Ok(value) => Some(value),
        Err(e) => {
            problems.push(problem(format!("malformed JSON: {e}")));
            None
        }
    }
}

/// A file's bytes without a UTF-8 byte order mark, which some editors write
/// and JSON has no use for.
pub(super) fn without_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix("\u{feff}".as_bytes()).unwrap_or(bytes)
}

/// JSON whose objects have each key once: a repeated key is an error at its
/// line and column (serde_json would keep the last value silently).
pub fn strict_json(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    use serde::de::{DeserializeSeed, Deserializer, Error, MapAccess, SeqAccess, Visitor};

    struct Strict;

    impl<'de> DeserializeSeed<'de> for Strict {
        type Value = Value;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Strict {
        type Value = Value;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON value")
        }
        fn visit_bool<E: Error>(self, v: bool) -> Result<Value, E> {
            Ok(Value::Bool(v))
        }
        fn visit_i64<E: Error>(self, v: i64) -> Result<Value, E> {
            Ok(Value::from(v))
        }
        fn visit_u64<E: Error>(self, v: u64) -> Result<Value, E> {
            Ok(Value::from(v))
        }
        fn visit_f64<E: Error>(self, v: f64) -> Result<Value, E> {
            Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
        }
        fn visit_str<E: Error>(self, v: &str) -> Result<Value, E> {
            Ok(Value::String(v.to_string()))
        }
        fn visit_string<E: Error>(self, v: String) -> Result<Value, E> {
            Ok(Value::String(v))
        }
        fn visit_unit<E: Error>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_none<E: Error>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            let mut items = Vec::new();
            while let Some(item) = seq.next_element_seed(Strict)? {
                items.push(item);
            }
            Ok(Value::Array(items))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
            let mut out = serde_json::Map::new();
            while let Some(key) = map.next_key::<String>()? {
                if out.contains_key(&key) {
                    return Err(A::Error::custom(format!("duplicate key {key:?}")));
                }
                let value = map.next_value_seed(Strict)?;
                out.insert(key, value);
            }
            Ok(Value::Object(out))
        }
    }

    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = Strict.deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}
