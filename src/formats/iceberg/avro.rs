//! A reader of Avro object container files that decodes each record
//! directly against the file's writer schema and skips every field the
//! caller did not ask for (Iceberg manifests carry column statistics maps,
//! bounds and split offsets that a probe never needs).
//!
//! Implemented from the Avro specification (apache/avro
//! `doc/content/en/docs/++version++/Specification/_index.md`):
//! - "Object Container Files": the magic `Obj\x01`, the file metadata (a
//!   map of bytes: `avro.schema`, `avro.codec`, the writer's own keys), a
//!   16-byte sync marker, then blocks of (object count, byte size, the
//!   serialized objects, the sync marker);
//! - "Required Codecs" / "Optional Codecs": `null`; `deflate` (RFC 1951,
//!   no zlib header); `snappy` (raw snappy, then the big-endian CRC32 of
//!   the uncompressed data);
//! - "Binary Encoding": `int` and `long` as zigzag varints; `float` and
//!   `double` little-endian; `bytes` and `string` a long length then the
//!   bytes; `fixed` its size; `enum` an int; a union the branch index (a
//!   long) then the value; arrays and maps as blocks, each a count then the
//!   items, a negative count followed by the block's size in bytes (which
//!   lets a reader skip the block whole), a count of 0 ending them; a
//!   record its fields in order, with nothing between them.
//!
//! A schema is parsed once per distinct schema text and kept (`plan`).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

/// What went wrong, to be said with the file's name.
#[derive(Debug)]
pub enum AvroError {
    /// Not an Avro container file (no magic, or a header that is not one).
    NotAvro(String),
    /// A codec this reader does not have.
    Codec(String),
    /// A container that does not decode against its own schema.
    Corrupt(String),
}

impl std::fmt::Display for AvroError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AvroError::NotAvro(m) | AvroError::Corrupt(m) => f.write_str(m),
            AvroError::Codec(codec) => write!(f, "the avro codec {codec}"),
        }
    }
}

fn corrupt(message: impl Into<String>) -> AvroError {
    AvroError::Corrupt(message.into())
}

/// A writer schema ("Schema Declaration"), with the one logical type the
/// probe reads differently (`date`: days since 1970 in an `int`).
#[derive(Clone, Debug, PartialEq)]
pub enum Schema {
    Null,
    Boolean,
    Int,
    Date,
    Long,
    Float,
    Double,
    Bytes,
    String,
    Fixed(usize),
    Enum(usize),
    Array(Box<Schema>),
    Map(Box<Schema>),
    Union(Vec<Schema>),
    Record(Vec<(String, Schema)>),
}

/// A decoded value. Records hold only the fields asked for, in the order
/// they were asked for (a field the schema does not have is `Null`).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Boolean(bool),
    Int(i32),
    Date(i32),
    Long(i64),
    Float(f32),
    Double(f64),
    Bytes(Vec<u8>),
    String(String),
    Enum(u32),
    Array(Vec<Value>),
    Map(Vec<(String, Value)>),
    Record(Vec<Value>),
}

impl Value {
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) | Value::Date(i) => Some(i64::from(*i)),
            Value::Long(l) => Some(*l),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The `i`th field asked for of a record.
    pub fn field(&self, i: usize) -> &Value {
        match self {
            Value::Record(fields) => fields.get(i).unwrap_or(&Value::Null),
            _ => &Value::Null,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
}

/// What to decode of a record: fields by name, each whole (`None`) or only
/// some of its fields (through `["null", record]` unions too).
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct Want {
    pub name: String,
    pub fields: Option<Vec<Want>>,
}

impl Want {
    pub fn whole(name: &str) -> Want {
        Want {
            name: name.to_string(),
            fields: None,
        }
    }

    pub fn some(name: &str, fields: Vec<Want>) -> Want {
        Want {
            name: name.to_string(),
            fields: Some(fields),
        }
    }
}

/// How to decode a value: skip it, decode it whole, or a record's fields
/// into their slots.
#[derive(Debug)]
pub enum Plan {
    Skip(Schema),
    Keep(Schema),
    /// Each field in the writer's order: its slot among those asked for.
    Record {
        fields: Vec<(Option<usize>, Plan)>,
        slots: usize,
    },
    Union(Vec<Plan>),
}

impl Plan {
    /// The plan for records of `schema` keeping `wants` (slots in order).
    pub fn new(schema: &Schema, wants: &[Want]) -> Plan {
        match schema {
            Schema::Record(fields) => Plan::Record {
                fields: fields
                    .iter()
                    .map(
                        |(name, field)| match wants.iter().position(|w| &w.name == name) {
                            None => (None, Plan::Skip(field.clone())),
                            Some(slot) => match &wants[slot].fields {
                                None => (Some(slot), Plan::Keep(field.clone())),
                                Some(inner) => (Some(slot), Plan::new(field, inner)),
                            },
                        },
                    )
                    .collect(),
                slots: wants.len(),
            },
            Schema::Union(branches) => {
                Plan::Union(branches.iter().map(|b| Plan::new(b, wants)).collect())
            }
            other => Plan::Keep(other.clone()),
        }
    }
}

/// Parsed schemas and plans, by schema text and what is asked for: the
/// manifests of one table (and of many tables written alike) share them.
type PlanCache = HashMap<(Vec<u8>, Vec<Want>), Arc<Plan>>;
static PLANS: LazyLock<Mutex<PlanCache>> = LazyLock::new(Mutex::default);

/// The plan for the writer schema `text`, parsed once per distinct text.
pub fn plan(text: &[u8], wants: &[Want]) -> Result<Arc<Plan>, AvroError> {
    let key = (text.to_vec(), wants.to_vec());
    if let Some(plan) = PLANS.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Ok(plan.clone());
    }
    let json: serde_json::Value = serde_json::from_slice(text)
        .map_err(|e| AvroError::NotAvro(format!("its avro.schema is not JSON: {e}")))?;
    let schema = parse_schema(&json, &mut HashMap::new(), 0)?;
    let plan = Arc::new(Plan::new(&schema, wants));
    let mut plans = PLANS.lock().unwrap_or_else(|e| e.into_inner());
    // Bounded: a process reading tables of many writers keeps the recent.
    if plans.len() >= 256 {
        plans.clear();
    }
    plans.insert(key, plan.clone());
    Ok(plan)
}

/// "Schema Declaration": primitive names, `{"type": ...}` objects,
/// records, enums, arrays, maps, fixed, and unions (JSON arrays). Named
/// types may be referred to by name after their definition.
pub fn parse_schema(
    json: &serde_json::Value,
    named: &mut HashMap<String, Schema>,
    depth: usize,
) -> Result<Schema, AvroError> {
    use serde_json::Value as J;
    let bad = |what: String| AvroError::NotAvro(format!("its avro.schema: {what}"));
    if depth > 64 {
        return Err(bad("nested too deep".into()));
    }
    let primitive = |name: &str| match name {
        "null" => Some(Schema::Null),
        "boolean" => Some(Schema::Boolean),
        "int" => Some(Schema::Int),
        "long" => Some(Schema::Long),
        "float" => Some(Schema::Float),
        "double" => Some(Schema::Double),
        "bytes" => Some(Schema::Bytes),
        "string" => Some(Schema::String),
        _ => None,
    };
    match json {
        J::String(name) => primitive(name)
            .or_else(|| named.get(name.as_str()).cloned())
            .or_else(|| {
                // A short name for a named type defined in a namespace.
                let suffix = format!(".{name}");
                (named.iter().find(|(n, _)| n.ends_with(&suffix))).map(|(_, s)| s.clone())
            })
            .ok_or_else(|| bad(format!("unknown type {name:?}"))),
        J::Array(branches) => Ok(Schema::Union(
            branches
                .iter()
                .map(|b| parse_schema(b, named, depth + 1))
                .collect::<Result<_, _>>()?,
        )),
        J::Object(object) => {
            let kind = object
                .get("type")
                .ok_or_else(|| bad("a schema object without \"type\"".into()))?;
            let name = || {
                let name = object.get("name").and_then(J::as_str).unwrap_or_default();
                match object.get("namespace").and_then(J::as_str) {
                    Some(ns) if !ns.is_empty() && !name.contains('.') => format!("{ns}.{name}"),
                    _ => name.to_string(),
                }
            };
            let schema = match kind.as_str() {
                Some("record" | "error") => parse_record(object, &name(), named, depth)?,
                Some("enum") => Schema::Enum(
                    object
                        .get("symbols")
                        .and_then(J::as_array)
                        .ok_or_else(|| bad(format!("enum {} has no symbols", name())))?
                        .len(),
                ),
                Some("fixed") => Schema::Fixed(
                    object
                        .get("size")
                        .and_then(J::as_u64)
                        .and_then(|n| usize::try_from(n).ok())
                        .ok_or_else(|| bad(format!("fixed {} has no size", name())))?,
                ),
                Some("array") => Schema::Array(Box::new(parse_schema(
                    object
                        .get("items")
                        .ok_or_else(|| bad("an array without items".into()))?,
                    named,
                    depth + 1,
                )?)),
                Some("map") => Schema::Map(Box::new(parse_schema(
                    object
                        .get("values")
                        .ok_or_else(|| bad("a map without values".into()))?,
                    named,
                    depth + 1,
                )?)),
                Some("int") if object.get("logicalType").and_then(J::as_str) == Some("date") => {
                    return Ok(Schema::Date);
                }
                _ => return parse_schema(kind, named, depth + 1),
            };
            if matches!(kind.as_str(), Some("record" | "error" | "enum" | "fixed")) {
                named.insert(name(), schema.clone());
            }
            Ok(schema)
        }
        other => Err(bad(format!("{other} is not a schema"))),
    }
}

/// A record's fields, in order ("Complex Types", Records).
fn parse_record(
    object: &serde_json::Map<String, serde_json::Value>,
    name: &str,
    named: &mut HashMap<String, Schema>,
    depth: usize,
) -> Result<Schema, AvroError> {
    let bad = |what: String| AvroError::NotAvro(format!("its avro.schema: record {name}: {what}"));
    let fields = object
        .get("fields")
        .and_then(serde_json::Value::as_array)
        .ok_or_else(|| bad("no fields".into()))?;
    let mut out = Vec::with_capacity(fields.len());
    for field in fields {
        let field_name = field.get("name").and_then(serde_json::Value::as_str);
        let (Some(field_name), Some(field_type)) = (field_name, field.get("type")) else {
            return Err(bad("a field without a name or type".into()));
        };
        let schema = parse_schema(field_type, named, depth + 1)?;
        out.push((field_name.to_string(), schema));
    }
    Ok(Schema::Record(out))
}

/// A cursor over encoded bytes.
pub struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(bytes: &'a [u8]) -> Cursor<'a> {
        Cursor { bytes, at: 0 }
    }

    pub fn done(&self) -> bool {
        self.at >= self.bytes.len()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], AvroError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| corrupt(format!("ends inside a value (at byte {})", self.at)))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    /// A zigzag varint ("Binary Encoding", int and long).
    pub fn long(&mut self) -> Result<i64, AvroError> {
        let mut value: u64 = 0;
        let mut shift = 0;
        loop {
            let byte = *self
                .bytes
                .get(self.at)
                .ok_or_else(|| corrupt("ends inside a number"))?;
            self.at += 1;
            if shift >= 64 {
                return Err(corrupt("a number longer than 64 bits"));
            }
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        Ok((value >> 1) as i64 ^ -((value & 1) as i64))
    }

    fn int(&mut self) -> Result<i32, AvroError> {
        let long = self.long()?;
        i32::try_from(long).map_err(|_| corrupt(format!("int {long} out of range")))
    }

    /// A length (of bytes, or a block's size): not negative.
    fn length(&mut self) -> Result<usize, AvroError> {
        let long = self.long()?;
        usize::try_from(long).map_err(|_| corrupt(format!("a negative length {long}")))
    }

    fn bytes(&mut self) -> Result<&'a [u8], AvroError> {
        let n = self.length()?;
        self.take(n)
    }

    fn string(&mut self) -> Result<String, AvroError> {
        let bytes = self.bytes()?;
        String::from_utf8(bytes.to_vec()).map_err(|_| corrupt("a string that is not UTF-8"))
    }

    /// Items of an array or map, by blocks: `item` for each. A block with
    /// a size is skipped whole when `skip_sized`.
    fn blocks(
        &mut self,
        skip_sized: bool,
        mut item: impl FnMut(&mut Self) -> Result<(), AvroError>,
    ) -> Result<(), AvroError> {
        loop {
            let count = self.long()?;
            if count == 0 {
                return Ok(());
            }
            let count = if count < 0 {
                let size = self.length()?;
                if skip_sized {
                    self.take(size)?;
                    continue;
                }
                count.unsigned_abs()
            } else {
                count as u64
            };
            for _ in 0..count {
                // Every item takes a byte at least, but for null items:
                // a count past the data is corrupt, not a long loop.
                if self.done() {
                    return Err(corrupt("an array or map block longer than its data"));
                }
                item(self)?;
            }
        }
    }

    /// Passes over a value of `schema`.
    pub fn skip(&mut self, schema: &Schema) -> Result<(), AvroError> {
        match schema {
            Schema::Null => {}
            Schema::Boolean => {
                self.take(1)?;
            }
            Schema::Int | Schema::Date | Schema::Long | Schema::Enum(_) => {
                self.long()?;
            }
            Schema::Float => {
                self.take(4)?;
            }
            Schema::Double => {
                self.take(8)?;
            }
            Schema::Bytes | Schema::String => {
                self.bytes()?;
            }
            Schema::Fixed(n) => {
                self.take(*n)?;
            }
            Schema::Array(items) => self.blocks(true, |c| c.skip(items))?,
            Schema::Map(values) => self.blocks(true, |c| {
                c.bytes()?;
                c.skip(values)
            })?,
            Schema::Union(branches) => {
                let branch = self.branch(branches.len())?;
                self.skip(&branches[branch])?;
            }
            Schema::Record(fields) => {
                for (_, field) in fields {
                    self.skip(field)?;
                }
            }
        }
        Ok(())
    }

    fn branch(&mut self, branches: usize) -> Result<usize, AvroError> {
        let index = self.long()?;
        usize::try_from(index)
            .ok()
            .filter(|i| *i < branches)
            .ok_or_else(|| corrupt(format!("union branch {index} of {branches}")))
    }

    /// A whole value of `schema`; records with every field.
    pub fn value(&mut self, schema: &Schema) -> Result<Value, AvroError> {
        Ok(match schema {
            Schema::Null => Value::Null,
            Schema::Boolean => match self.take(1)?[0] {
                0 => Value::Boolean(false),
                1 => Value::Boolean(true),
                b => return Err(corrupt(format!("boolean byte {b}"))),
            },
            Schema::Int => Value::Int(self.int()?),
            Schema::Date => Value::Date(self.int()?),
            Schema::Long => Value::Long(self.long()?),
            Schema::Float => Value::Float(f32::from_le_bytes(
                self.take(4)?.try_into().unwrap_or_default(),
            )),
            Schema::Double => Value::Double(f64::from_le_bytes(
                self.take(8)?.try_into().unwrap_or_default(),
            )),
            Schema::Bytes => Value::Bytes(self.bytes()?.to_vec()),
            Schema::String => Value::String(self.string()?),
            Schema::Fixed(n) => Value::Bytes(self.take(*n)?.to_vec()),
            Schema::Enum(symbols) => {
                let index = self.long()?;
                match u32::try_from(index)
                    .ok()
                    .filter(|i| (*i as usize) < *symbols)
                {
                    Some(i) => Value::Enum(i),
                    None => return Err(corrupt(format!("enum symbol {index} of {symbols}"))),
                }
            }
            Schema::Array(items) => {
                let mut out = Vec::new();
                self.blocks(false, |c| {
                    out.push(c.value(items)?);
                    Ok(())
                })?;
                Value::Array(out)
            }
            Schema::Map(values) => {
                let mut out = Vec::new();
                self.blocks(false, |c| {
                    let key = c.string()?;
                    out.push((key, c.value(values)?));
                    Ok(())
                })?;
                Value::Map(out)
            }
            Schema::Union(branches) => {
                let branch = self.branch(branches.len())?;
                self.value(&branches[branch])?
            }
            Schema::Record(fields) => Value::Record(
                fields
                    .iter()
                    .map(|(_, f)| self.value(f))
                    .collect::<Result<_, _>>()?,
            ),
        })
    }

    /// A value by `plan`.
    pub fn planned(&mut self, plan: &Plan) -> Result<Value, AvroError> {
        match plan {
            Plan::Skip(schema) => {
                self.skip(schema)?;
                Ok(Value::Null)
            }
            Plan::Keep(schema) => self.value(schema),
            Plan::Union(branches) => {
                let branch = self.branch(branches.len())?;
                self.planned(&branches[branch])
            }
            Plan::Record { fields, slots } => {
                let mut out = vec![Value::Null; *slots];
                for (slot, plan) in fields {
                    let value = self.planned(plan)?;
                    if let Some(slot) = slot {
                        out[*slot] = value;
                    }
                }
                Ok(Value::Record(out))
            }
        }
    }
}

/// An object container file's header, and where its blocks start.
pub struct Container<'a> {
    pub metadata: HashMap<String, Vec<u8>>,
    codec: Codec,
    sync: &'a [u8],
    rest: Cursor<'a>,
}

#[derive(Clone, Copy)]
enum Codec {
    Null,
    Deflate,
    Snappy,
}

impl<'a> Container<'a> {
    /// Reads the header ("Object Container Files").
    pub fn open(bytes: &'a [u8]) -> Result<Container<'a>, AvroError> {
        if bytes.get(..4) != Some(b"Obj\x01".as_slice()) {
            return Err(AvroError::NotAvro(
                "no avro magic bytes at its start".into(),
            ));
        }
        let mut cursor = Cursor::new(&bytes[4..]);
        let mut metadata = HashMap::new();
        let header = |e: AvroError| AvroError::NotAvro(format!("its avro header: {e}"));
        cursor
            .blocks(false, |c| {
                let key = c.string()?;
                let value = c.bytes()?.to_vec();
                metadata.insert(key, value);
                Ok(())
            })
            .map_err(header)?;
        let sync = cursor.take(16).map_err(header)?;
        let codec = match metadata.get("avro.codec").map(Vec::as_slice) {
            None | Some(b"null") => Codec::Null,
            Some(b"deflate") => Codec::Deflate,
            Some(b"snappy") => Codec::Snappy,
            Some(other) => {
                return Err(AvroError::Codec(
                    String::from_utf8_lossy(other).into_owned(),
                ));
            }
        };
        if !metadata.contains_key("avro.schema") {
            return Err(AvroError::NotAvro("no avro.schema in its header".into()));
        }
        Ok(Container {
            metadata,
            codec,
            sync,
            rest: cursor,
        })
    }

    pub fn schema(&self) -> &[u8] {
        self.metadata.get("avro.schema").map_or(&[], Vec::as_slice)
    }

    /// Each record by `plan`, in order, to `each`; what does not decode is
    /// `error`'s.
    pub fn read<E>(
        mut self,
        plan: &Plan,
        error: impl Fn(AvroError) -> E,
        mut each: impl FnMut(usize, Value) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut index = 0;
        while !self.rest.done() {
            let (count, data) = self.block(index).map_err(&error)?;
            let data = self.decompress(data).map_err(&error)?;
            let mut cursor = Cursor::new(&data);
            for _ in 0..count {
                // A record takes a byte at least (Iceberg's do): a count
                // past the data is corrupt, not a long loop.
                if cursor.done() {
                    return Err(error(corrupt(format!(
                        "a block of {count} records ends at record {index}"
                    ))));
                }
                let value = cursor
                    .planned(plan)
                    .map_err(|e| error(corrupt(format!("record {index}: {e}"))))?;
                each(index, value)?;
                index += 1;
            }
            if !cursor.done() {
                return Err(error(corrupt(format!(
                    "bytes left over in the block ending at record {index}"
                ))));
            }
        }
        Ok(())
    }

    /// The next block's record count and (compressed) data.
    fn block(&mut self, index: usize) -> Result<(u64, &'a [u8]), AvroError> {
        let count = self.rest.long()?;
        let size = self.rest.length()?;
        let data = self.rest.take(size)?;
        if self.rest.take(16)? != self.sync {
            return Err(corrupt(format!(
                "the block after record {index}: wrong sync marker"
            )));
        }
        let count =
            u64::try_from(count).map_err(|_| corrupt(format!("a block of {count} records")))?;
        Ok((count, data))
    }

    fn decompress(&self, data: &'a [u8]) -> Result<std::borrow::Cow<'a, [u8]>, AvroError> {
        match self.codec {
            Codec::Null => Ok(data.into()),
            Codec::Deflate => miniz_oxide::inflate::decompress_to_vec(data)
                .map(Into::into)
                .map_err(|e| corrupt(format!("a deflate block that does not inflate: {e}"))),
            Codec::Snappy => {
                let split = data
                    .len()
                    .checked_sub(4)
                    .ok_or_else(|| corrupt("a snappy block without its CRC"))?;
                let (compressed, crc) = data.split_at(split);
                let out = snap::raw::Decoder::new()
                    .decompress_vec(compressed)
                    .map_err(|e| {
                        corrupt(format!("a snappy block that does not decompress: {e}"))
                    })?;
                let expected = u32::from_be_bytes(crc.try_into().unwrap_or_default());
                if crc32fast::hash(&out) != expected {
                    return Err(corrupt("a snappy block whose CRC does not match"));
                }
                Ok(out.into())
            }
        }
    }
}

#[cfg(test)]
#[path = "avro_tests.rs"]
mod tests;
