//! A small path-tracking reader over `serde_json::Value`.
//!
//! Compiled configs are Thrift simple-JSON: enums are integers, booleans are
//! `1`/`0` (or `true`/`false`), unset fields are absent and unknown fields are
//! ignored. Serde derive would stop at the first problem and lose the path, so
//! the typed model is read by hand through `Decoder`, which records every
//! problem with its JSON path and keeps going.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::config::Problem;
use crate::partition::Day;

/// An object being read, with the JSON path that leads to it.
#[derive(Clone)]
pub struct Obj<'v> {
    pub map: &'v Map<String, Value>,
    pub path: String,
}

pub fn join_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

pub fn index_path(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

/// Integer-coded Thrift enums.
pub trait ThriftEnum: Sized {
    /// Lowercase name of the enum for messages, e.g. `operation`.
    const WHAT: &'static str;
    fn from_i64(value: i64) -> Option<Self>;
}

pub fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) if s.len() > 40 => {
            format!("string {:?}...", &s[..s.floor_char_boundary(40)])
        }
        Value::String(s) => format!("string {s:?}"),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// The longest identifier a config may hold: names, teams, namespaces,
/// tables and columns. Hive's metastore keeps table names in 256
/// characters and file systems cut file names at 255 bytes; a bound well
/// above both keeps every name readable and what a plan holds small.
pub const MAX_IDENT: usize = 1024;

pub struct Decoder<'p> {
    pub file: String,
    pub problems: &'p mut Vec<Problem>,
}

impl<'p> Decoder<'p> {
    pub fn new(file: impl Into<String>, problems: &'p mut Vec<Problem>) -> Decoder<'p> {
        Decoder {
            file: file.into(),
            problems,
        }
    }

    pub fn problem(&mut self, path: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            file: self.file.clone(),
            path: path.to_string(),
            message: message.into(),
        });
    }

    pub fn root<'v>(&mut self, value: &'v Value) -> Option<Obj<'v>> {
        match value {
            Value::Object(map) => Some(Obj {
                map,
                path: String::new(),
            }),
            other => {
                self.problem(
                    "",
                    format!(
                        "expected a JSON object at the top level, got {}",
                        describe(other)
                    ),
                );
                None
            }
        }
    }

    /// The field's value, `None` when absent or null.
    fn field<'v>(&self, obj: &Obj<'v>, key: &str) -> Option<&'v Value> {
        obj.map.get(key).filter(|v| !v.is_null())
    }

    pub fn as_obj<'v>(&mut self, value: &'v Value, path: String) -> Option<Obj<'v>> {
        match value {
            Value::Object(map) => Some(Obj { map, path }),
            other => {
                self.problem(
                    &path,
                    format!("expected an object, got {}", describe(other)),
                );
                None
            }
        }
    }

    pub fn opt_obj<'v>(&mut self, obj: &Obj<'v>, key: &str) -> Option<Obj<'v>> {
        let value = self.field(obj, key)?;
        self.as_obj(value, join_path(&obj.path, key))
    }

    pub fn req_obj<'v>(&mut self, obj: &Obj<'v>, key: &str) -> Option<Obj<'v>> {
        if self.field(obj, key).is_none() {
            self.problem(&join_path(&obj.path, key), "missing required object");
            return None;
        }
        self.opt_obj(obj, key)
    }

    pub fn obj_list<'v>(&mut self, obj: &Obj<'v>, key: &str) -> Vec<Obj<'v>> {
        let Some(items) = self.list(obj, key) else {
            return Vec::new();
        };
        let path = join_path(&obj.path, key);
        items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| self.as_obj(item, index_path(&path, i)))
            .collect()
    }

    pub fn list<'v>(&mut self, obj: &Obj<'v>, key: &str) -> Option<&'v Vec<Value>> {
        match self.field(obj, key)? {
            Value::Array(items) => Some(items),
            other => {
                self.problem(
                    &join_path(&obj.path, key),
                    format!("expected an array, got {}", describe(other)),
                );
                None
            }
        }
    }

    pub fn opt_str(&mut self, obj: &Obj<'_>, key: &str) -> Option<String> {
        match self.field(obj, key)? {
            Value::String(s) => Some(s.clone()),
            other => {
                self.problem(
                    &join_path(&obj.path, key),
                    format!("expected a string, got {}", describe(other)),
                );
                None
            }
        }
    }

    pub fn req_str(&mut self, obj: &Obj<'_>, key: &str) -> Option<String> {
        if self.field(obj, key).is_none() {
            self.problem(&join_path(&obj.path, key), "missing required string");
            return None;
        }
        let value = self.opt_str(obj, key)?;
        if value.trim().is_empty() {
            self.problem(&join_path(&obj.path, key), "expected a non-empty string");
            return None;
        }
        Some(value)
    }

    /// An identifier (a config, team, namespace, table or column name), at
    /// most `MAX_IDENT` characters.
    pub fn opt_ident(&mut self, obj: &Obj<'_>, key: &str) -> Option<String> {
        let value = self.opt_str(obj, key)?;
        self.bounded(&join_path(&obj.path, key), value)
    }

    pub fn req_ident(&mut self, obj: &Obj<'_>, key: &str) -> Option<String> {
        let value = self.req_str(obj, key)?;
        self.bounded(&join_path(&obj.path, key), value)
    }

    pub fn ident_list(&mut self, obj: &Obj<'_>, key: &str) -> Vec<String> {
        let path = join_path(&obj.path, key);
        let items = self.str_list(obj, key);
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            if let Some(item) = self.bounded(&index_path(&path, i), item) {
                out.push(item);
            }
        }
        out
    }

    fn bounded(&mut self, path: &str, value: String) -> Option<String> {
        let length = value.chars().count();
        if length <= MAX_IDENT {
            return Some(value);
        }
        self.problem(
            path,
            format!(
                "a name of {} characters: expected at most {MAX_IDENT}",
                crate::say::thousands(length)
            ),
        );
        None
    }

    /// Thrift booleans: `1`/`0` or `true`/`false`; absent is false.
    pub fn opt_bool(&mut self, obj: &Obj<'_>, key: &str) -> bool {
        match self.field(obj, key) {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(Value::Number(n)) if n.as_i64() == Some(1) => true,
            Some(Value::Number(n)) if n.as_i64() == Some(0) => false,
            Some(other) => {
                self.problem(
                    &join_path(&obj.path, key),
                    format!(
                        "expected a boolean (1, 0, true or false), got {}",
                        describe(other)
                    ),
                );
                false
            }
        }
    }

    pub fn opt_i64(&mut self, obj: &Obj<'_>, key: &str) -> Option<i64> {
        match self.field(obj, key)? {
            Value::Number(n) if n.as_i64().is_some() => n.as_i64(),
            Value::Number(n)
                if n.as_f64()
                    .is_some_and(|f| f.fract() == 0.0 && f.abs() < 9e15) =>
            {
                n.as_f64().map(|f| f as i64)
            }
            other => {
                self.problem(
                    &join_path(&obj.path, key),
                    format!("expected an integer, got {}", describe(other)),
                );
                None
            }
        }
    }

    pub fn opt_f64(&mut self, obj: &Obj<'_>, key: &str) -> Option<f64> {
        match self.field(obj, key)? {
            Value::Number(n) => n.as_f64(),
            other => {
                self.problem(
                    &join_path(&obj.path, key),
                    format!("expected a number, got {}", describe(other)),
                );
                None
            }
        }
    }

    pub fn opt_day(&mut self, obj: &Obj<'_>, key: &str) -> Option<Day> {
        let text = self.opt_str(obj, key)?;
        Day::parse_checked(&text)
            .map_err(|e| self.problem(&join_path(&obj.path, key), e))
            .ok()
    }

    /// A day written in a partition format (`Query.startPartition` of a
    /// source whose `partitionFormat` is not the default).
    pub fn opt_formatted_day(
        &mut self,
        obj: &Obj<'_>,
        key: &str,
        format: &crate::partition::DayFormat,
    ) -> Option<Day> {
        if format.is_default() {
            return self.opt_day(obj, key);
        }
        let text = self.opt_str(obj, key)?;
        let day = format.parse_day(&text);
        if day.is_none() {
            self.problem(
                &join_path(&obj.path, key),
                format!("expected a date in the source's partitionFormat {format}, got {text:?}"),
            );
        }
        day
    }

    pub fn opt_enum<E: ThriftEnum>(&mut self, obj: &Obj<'_>, key: &str) -> Option<E> {
        let path = join_path(&obj.path, key);
        match self.field(obj, key)? {
            Value::Number(n) => match n.as_i64().and_then(E::from_i64) {
                Some(e) => Some(e),
                None => {
                    self.problem(&path, format!("unknown {} {n}", E::WHAT));
                    None
                }
            },
            other => {
                self.problem(
                    &path,
                    format!(
                        "expected an integer {} code, got {}",
                        E::WHAT,
                        describe(other)
                    ),
                );
                None
            }
        }
    }

    pub fn req_enum<E: ThriftEnum>(&mut self, obj: &Obj<'_>, key: &str) -> Option<E> {
        if self.field(obj, key).is_none() {
            self.problem(
                &join_path(&obj.path, key),
                format!("missing required {}", E::WHAT),
            );
            return None;
        }
        self.opt_enum(obj, key)
    }

    pub fn str_list(&mut self, obj: &Obj<'_>, key: &str) -> Vec<String> {
        let Some(items) = self.list(obj, key) else {
            return Vec::new();
        };
        let path = join_path(&obj.path, key);
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match item {
                Value::String(s) => out.push(s.clone()),
                other => self.problem(
                    &index_path(&path, i),
                    format!("expected a string, got {}", describe(other)),
                ),
            }
        }
        out
    }

    /// A map of strings; numbers and booleans are accepted as their text,
    /// since compilers write `argMap` values either way.
    pub fn str_map(&mut self, obj: &Obj<'_>, key: &str) -> BTreeMap<String, String> {
        let Some(value) = self.field(obj, key) else {
            return BTreeMap::new();
        };
        let path = join_path(&obj.path, key);
        let Value::Object(map) = value else {
            self.problem(
                &path,
                format!("expected an object of strings, got {}", describe(value)),
            );
            return BTreeMap::new();
        };
        let mut out = BTreeMap::new();
        for (k, v) in map {
            match v {
                Value::String(s) => {
                    out.insert(k.clone(), s.clone());
                }
                Value::Number(n) => {
                    out.insert(k.clone(), n.to_string());
                }
                Value::Bool(b) => {
                    out.insert(k.clone(), b.to_string());
                }
                other => self.problem(
                    &join_path(&path, k),
                    format!("expected a string, got {}", describe(other)),
                ),
            }
        }
        out
    }
}
