//! Classic and multi-part Delta checkpoints (PROTOCOL.md, "Checkpoints",
//! "Checkpoint Schema"): Parquet files of actions, one action a row, each
//! action a struct column (`add`, `remove`, `metaData`, `protocol`, ...)
//! null in the rows of the other actions.
//!
//! Read column by column through parquet's column readers: only the leaf
//! columns the reader needs are decoded (`add.path`, `add.partitionValues`,
//! `add.size`, `add.deletionVector`; `metaData.id`, `partitionColumns`,
//! `configuration`; `protocol.minReaderVersion`, `readerFeatures`;
//! `sidecar.path`, in v2 checkpoints, whose sidecar files are read the same
//! way), never `add.stats` nor the `remove` tombstones, which a checkpoint
//! keeps only for VACUUM. Rows are put together from each leaf's
//! definition and repetition levels (the Dremel encoding Parquet uses, see
//! apache/parquet-format `README.md`, "Nested Encoding"): a value is
//! there when its definition level is the column's highest, a struct when
//! the level reaches the struct's own, and a repetition level of 0 starts
//! a row.

use std::collections::HashMap;

use parquet::basic::Repetition;
use parquet::column::reader::ColumnReader;
use parquet::data_type::ByteArray;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::schema::types::{SchemaDescriptor, Type};

use super::log::{Action, AddFile, DeletionVector, Metadata, Protocol};
use crate::formats::FormatError;

/// The actions of one checkpoint part (`file`, for errors).
pub fn read_part(table: &str, file: &str, bytes: Vec<u8>) -> Result<Vec<Action>, FormatError> {
    let corrupt = |message: String| FormatError::Corrupt {
        table: table.to_string(),
        file: file.to_string(),
        message,
    };
    // The Parquet decoder has panicked on malformed files before (fuzzing
    // finds such bugs in arrow-rs now and then); a checkpoint is input, so
    // a panic in it is a corrupt file, not a crash.
    std::panic::catch_unwind(|| decode(bytes))
        .map_err(|_| corrupt("the parquet decoder failed on it".into()))?
        .map_err(|e| corrupt(e.to_string()))
}

/// Why a checkpoint does not decode.
#[derive(Debug)]
enum DecodeError {
    Parquet(parquet::errors::ParquetError),
    Shape(String),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Parquet(e) => e.fmt(f),
            DecodeError::Shape(m) => f.write_str(m),
        }
    }
}

impl From<parquet::errors::ParquetError> for DecodeError {
    fn from(e: parquet::errors::ParquetError) -> Self {
        DecodeError::Parquet(e)
    }
}

fn shape(message: impl Into<String>) -> DecodeError {
    DecodeError::Shape(message.into())
}

/// A leaf column's values, whatever its physical type.
enum Values {
    Bytes(Vec<ByteArray>),
    Int(Vec<i64>),
    Bool(Vec<bool>),
    Other,
}

/// One leaf column read whole (every row group), with its levels.
struct Leaf {
    def: Vec<i16>,
    rep: Vec<i16>,
    max_def: i16,
    max_rep: i16,
    values: Values,
    /// The leaf's path, for errors.
    name: String,
}

/// The file's leaf columns by their path (`add.path`, ...).
struct Columns<'a> {
    reader: &'a SerializedFileReader<bytes::Bytes>,
    schema: &'a SchemaDescriptor,
    rows: usize,
}

impl Columns<'_> {
    /// The index of the leaf at `path` (its parts, `*` for any one part).
    fn find(&self, path: &[&str]) -> Option<usize> {
        self.schema.columns().iter().position(|c| {
            let parts = c.path().parts();
            parts.len() == path.len()
                && parts
                    .iter()
                    .zip(path)
                    .all(|(p, want)| *want == "*" || p == want)
        })
    }

    /// The leaf at `path`, read whole; `None` when the file has none.
    fn leaf(&self, path: &[&str]) -> Result<Option<Leaf>, DecodeError> {
        let Some(index) = self.find(path) else {
            return Ok(None);
        };
        let descr = self.schema.column(index);
        let mut leaf = Leaf {
            def: Vec::new(),
            rep: Vec::new(),
            max_def: descr.max_def_level(),
            max_rep: descr.max_rep_level(),
            values: Values::Other,
            name: descr.path().string(),
        };
        for group in 0..self.reader.num_row_groups() {
            let column = self.reader.get_row_group(group)?.get_column_reader(index)?;
            leaf.read(column)?;
        }
        let levels = if leaf.max_def > 0 {
            leaf.def.len()
        } else {
            leaf.len_values()
        };
        if leaf.max_rep == 0 && levels != self.rows {
            return Err(shape(format!(
                "{}: {levels} values for {} rows",
                leaf.name, self.rows
            )));
        }
        Ok(Some(leaf))
    }
}

/// Reads every record of a column reader into `def`, `rep` and `values`.
macro_rules! read_all {
    ($reader:expr, $leaf:expr, $values:expr) => {{
        let mut reader = $reader;
        loop {
            let (records, _, _) = reader.read_records(
                4096,
                Some(&mut $leaf.def),
                Some(&mut $leaf.rep),
                &mut $values,
            )?;
            if records == 0 {
                break;
            }
        }
    }};
}

impl Leaf {
    fn read(&mut self, column: ColumnReader) -> Result<(), DecodeError> {
        match column {
            ColumnReader::ByteArrayColumnReader(reader) => {
                let mut values = match std::mem::replace(&mut self.values, Values::Other) {
                    Values::Bytes(v) => v,
                    _ => Vec::new(),
                };
                read_all!(reader, self, values);
                self.values = Values::Bytes(values);
            }
            ColumnReader::Int32ColumnReader(reader) => {
                let mut values: Vec<i32> = Vec::new();
                read_all!(reader, self, values);
                self.ints().extend(values.into_iter().map(i64::from));
            }
            ColumnReader::Int64ColumnReader(reader) => {
                let mut values: Vec<i64> = Vec::new();
                read_all!(reader, self, values);
                self.ints().extend(values);
            }
            ColumnReader::BoolColumnReader(reader) => {
                let mut values: Vec<bool> = Vec::new();
                read_all!(reader, self, values);
                match &mut self.values {
                    Values::Bool(v) => v.extend(values),
                    other => *other = Values::Bool(values),
                }
            }
            _ => return Err(shape(format!("{}: an unexpected physical type", self.name))),
        }
        Ok(())
    }

    fn ints(&mut self) -> &mut Vec<i64> {
        if !matches!(self.values, Values::Int(_)) {
            self.values = Values::Int(Vec::new());
        }
        match &mut self.values {
            Values::Int(v) => v,
            _ => unreachable!("set just above"),
        }
    }

    fn len_values(&self) -> usize {
        match &self.values {
            Values::Bytes(v) => v.len(),
            Values::Int(v) => v.len(),
            Values::Bool(v) => v.len(),
            Values::Other => 0,
        }
    }

    /// Whether level `i` holds a value (else a null somewhere above it).
    fn present(&self, i: usize) -> bool {
        self.max_def == 0 || self.def[i] == self.max_def
    }

    /// The definition level at `i` (the highest when the column has none).
    fn def_at(&self, i: usize) -> i16 {
        if self.max_def == 0 { 0 } else { self.def[i] }
    }

    fn levels(&self) -> usize {
        if self.max_def > 0 {
            self.def.len()
        } else {
            self.len_values()
        }
    }

    /// The `n`th value as text.
    fn text(&self, n: usize) -> Result<String, DecodeError> {
        match &self.values {
            Values::Bytes(v) => v
                .get(n)
                .ok_or_else(|| shape(format!("{}: fewer values than levels", self.name)))?
                .as_utf8()
                .map(str::to_string)
                .map_err(|_| shape(format!("{}: a value that is not UTF-8", self.name))),
            _ => Err(shape(format!("{}: not a string column", self.name))),
        }
    }

    fn int(&self, n: usize) -> Result<i64, DecodeError> {
        match &self.values {
            Values::Int(v) => v.get(n).copied(),
            _ => None,
        }
        .ok_or_else(|| shape(format!("{}: not an integer column", self.name)))
    }

    /// Per row, the value (`None` when null) of a leaf that is not
    /// repeated: `get(n)` reads the `n`th non-null value.
    fn per_row<T>(
        &self,
        get: impl Fn(&Self, usize) -> Result<T, DecodeError>,
    ) -> Result<Vec<Option<T>>, DecodeError> {
        let mut out = Vec::with_capacity(self.levels());
        let mut n = 0;
        for i in 0..self.levels() {
            if self.present(i) {
                out.push(Some(get(self, n)?));
                n += 1;
            } else {
                out.push(None);
            }
        }
        Ok(out)
    }

    /// Per row, the non-null items of a repeated leaf (a list's elements,
    /// or a map's keys): `get(n)` reads the `n`th non-null value. Rows
    /// start where the repetition level is 0.
    fn per_row_items<T>(
        &self,
        rows: usize,
        mut each: impl FnMut(usize, usize) -> Result<T, DecodeError>,
    ) -> Result<Vec<Vec<T>>, DecodeError> {
        let mut out: Vec<Vec<T>> = Vec::with_capacity(rows);
        let mut n = 0;
        for i in 0..self.levels() {
            if self.max_rep == 0 || self.rep[i] == 0 {
                out.push(Vec::new());
            }
            if self.present(i) {
                let row = out.last_mut().expect("pushed above");
                row.push(each(i, n)?);
                n += 1;
            }
        }
        if out.len() != rows {
            return Err(shape(format!(
                "{}: {} rows, the file says {rows}",
                self.name,
                out.len()
            )));
        }
        Ok(out)
    }
}

/// The definition level of the struct or list at `path` (how many of it
/// and its ancestors are optional or repeated), from the root.
fn level_of(root: &Type, path: &[&str]) -> Option<i16> {
    let mut level = 0;
    let mut node = root;
    for part in path {
        node = node.get_fields().iter().find(|f| f.name() == *part)?;
        if node.get_basic_info().repetition() != Repetition::REQUIRED {
            level += 1;
        }
    }
    Some(level)
}

/// The projected actions of a Parquet checkpoint.
fn decode(bytes: Vec<u8>) -> Result<Vec<Action>, DecodeError> {
    let reader = SerializedFileReader::new(bytes::Bytes::from(bytes))?;
    let metadata = reader.metadata();
    let rows = usize::try_from(metadata.file_metadata().num_rows())
        .map_err(|_| shape("a negative row count"))?;
    let columns = Columns {
        reader: &reader,
        schema: metadata.file_metadata().schema_descr(),
        rows,
    };
    let mut actions: Vec<Action> = (0..rows).map(|_| Action::default()).collect();
    adds(&columns, &mut actions)?;
    metadata_actions(&columns, &mut actions)?;
    protocols(&columns, &mut actions)?;
    if let Some(sidecar) = columns.leaf(&["sidecar", "path"])? {
        for (action, path) in actions.iter_mut().zip(sidecar.per_row(Leaf::text)?) {
            action.sidecar = path.map(|path| super::log::Sidecar { path });
        }
    }
    actions.retain(|a| {
        a.add.is_some() || a.meta_data.is_some() || a.protocol.is_some() || a.sidecar.is_some()
    });
    Ok(actions)
}

/// A map of strings to strings or nulls.
type StringMap = HashMap<String, Option<String>>;

/// Per row, a map column's entries (`None` values for null ones), from
/// its key and value leaves (`{column}.key_value.key`, whatever the middle
/// level is named: "Logical Types", MAP).
fn map_column(columns: &Columns<'_>, path: &[&str]) -> Result<Option<Vec<StringMap>>, DecodeError> {
    let with = |last: &'static str| [path, &["*", last][..]].concat();
    let (Some(keys), Some(values)) = (columns.leaf(&with("key"))?, columns.leaf(&with("value"))?)
    else {
        return Ok(None);
    };
    if keys.levels() != values.levels() {
        return Err(shape(format!("{}: keys and values differ", keys.name)));
    }
    let mut value_n = 0;
    let rows = keys.per_row_items(columns.rows, |i, key_n| {
        let key = keys.text(key_n)?;
        let value = if values.present(i) {
            value_n += 1;
            Some(values.text(value_n - 1)?)
        } else {
            None
        };
        Ok((key, value))
    })?;
    Ok(Some(
        rows.into_iter().map(|r| r.into_iter().collect()).collect(),
    ))
}

/// Per row, a list of strings' elements (`{column}.list.element`, or the
/// legacy two-level `{column}.array`: "Logical Types", LIST).
fn list_column(
    columns: &Columns<'_>,
    path: &[&str],
) -> Result<Option<Vec<Vec<String>>>, DecodeError> {
    let leaf = match columns.leaf(&[path, &["*", "*"][..]].concat())? {
        Some(leaf) => leaf,
        None => match columns.leaf(&[path, &["*"][..]].concat())? {
            Some(leaf) => leaf,
            None => return Ok(None),
        },
    };
    leaf.per_row_items(columns.rows, |_, n| leaf.text(n))
        .map(Some)
}

/// "Add File and Remove File": the adds, into their rows.
fn adds(columns: &Columns<'_>, actions: &mut [Action]) -> Result<(), DecodeError> {
    let Some(path) = columns.leaf(&["add", "path"])? else {
        return Ok(());
    };
    let root = columns.schema.root_schema();
    let add_level = level_of(root, &["add"]).unwrap_or(1);
    let size = columns
        .leaf(&["add", "size"])?
        .map(|l| l.per_row(Leaf::int))
        .transpose()?;
    let mut partition_values = map_column(columns, &["add", "partitionValues"])?;
    let deletion_vectors = deletion_vectors(columns)?;
    let mut n = 0;
    for (row, action) in actions.iter_mut().enumerate() {
        if !struct_there(&path, row, add_level) {
            continue;
        }
        if !path.present(row) {
            return Err(shape(format!("row {row}: an add without its path")));
        }
        let file_path = path.text(n)?;
        n += 1;
        let Some(size) = size.as_ref().and_then(|s| s[row]) else {
            return Err(shape(format!(
                "row {row}: the add of {file_path} has no size"
            )));
        };
        action.add = Some(AddFile {
            path: file_path,
            partition_values: partition_values
                .as_mut()
                .map(|p| std::mem::take(&mut p[row]))
                .unwrap_or_default(),
            size,
            data_change: true,
            deletion_vector: deletion_vectors.as_ref().and_then(|d| d[row].clone()),
        });
    }
    Ok(())
}

/// "Deletion Vector Descriptor Schema": per row, the add's vector.
fn deletion_vectors(
    columns: &Columns<'_>,
) -> Result<Option<Vec<Option<DeletionVector>>>, DecodeError> {
    let leaf = |name: &str| columns.leaf(&["add", "deletionVector", name]);
    let (Some(storage), Some(path)) = (leaf("storageType")?, leaf("pathOrInlineDv")?) else {
        return Ok(None);
    };
    let storage = storage.per_row(Leaf::text)?;
    let path = path.per_row(Leaf::text)?;
    let offset = leaf("offset")?.map(|l| l.per_row(Leaf::int)).transpose()?;
    let cardinality = leaf("cardinality")?
        .map(|l| l.per_row(Leaf::int))
        .transpose()?;
    let mut out = Vec::with_capacity(columns.rows);
    for row in 0..columns.rows {
        out.push(match (&storage[row], &path[row]) {
            (Some(storage), Some(path)) => Some(DeletionVector {
                storage_type: storage.clone(),
                path_or_inline_dv: path.clone(),
                offset: offset
                    .as_ref()
                    .and_then(|o| o[row])
                    .map(|o| {
                        i32::try_from(o)
                            .map_err(|_| shape(format!("row {row}: deletionVector.offset {o}")))
                    })
                    .transpose()?,
                cardinality: cardinality.as_ref().and_then(|c| c[row]),
            }),
            (None, None) => None,
            _ => {
                return Err(shape(format!(
                    "row {row}: a deletion vector without its storage type or path"
                )));
            }
        });
    }
    Ok(Some(out))
}

/// Whether row `row`'s struct at definition level `level` is there, from
/// one of its leaves that is not repeated.
fn struct_there(leaf: &Leaf, row: usize, level: i16) -> bool {
    leaf.max_def == 0 || leaf.def_at(row) >= level
}

/// "Change Metadata": the table id, partition columns, configuration.
fn metadata_actions(columns: &Columns<'_>, actions: &mut [Action]) -> Result<(), DecodeError> {
    let Some(id) = columns.leaf(&["metaData", "id"])? else {
        return Ok(());
    };
    let level = level_of(columns.schema.root_schema(), &["metaData"]).unwrap_or(1);
    let mut partition_columns = list_column(columns, &["metaData", "partitionColumns"])?;
    let mut configuration = map_column(columns, &["metaData", "configuration"])?;
    let ids = id.per_row(Leaf::text)?;
    for (row, (action, value)) in actions.iter_mut().zip(ids).enumerate() {
        if !struct_there(&id, row, level) {
            continue;
        }
        let Some(value) = value else {
            return Err(shape(format!("row {row}: a metaData without its id")));
        };
        action.meta_data = Some(Metadata {
            id: value,
            partition_columns: partition_columns
                .as_mut()
                .map(|p| std::mem::take(&mut p[row]))
                .unwrap_or_default(),
            configuration: configuration
                .as_mut()
                .map(|c| std::mem::take(&mut c[row]))
                .unwrap_or_default(),
        });
    }
    Ok(())
}

/// "Protocol Evolution": the reader version and features.
fn protocols(columns: &Columns<'_>, actions: &mut [Action]) -> Result<(), DecodeError> {
    let Some(version) = columns.leaf(&["protocol", "minReaderVersion"])? else {
        return Ok(());
    };
    let level = level_of(columns.schema.root_schema(), &["protocol"]).unwrap_or(1);
    let mut features = list_column(columns, &["protocol", "readerFeatures"])?;
    let versions = version.per_row(Leaf::int)?;
    for (row, (action, value)) in actions.iter_mut().zip(versions).enumerate() {
        if !struct_there(&version, row, level) {
            continue;
        }
        let Some(value) = value else {
            return Err(shape(format!(
                "row {row}: a protocol without minReaderVersion"
            )));
        };
        action.protocol = Some(Protocol {
            min_reader_version: value,
            reader_features: features.as_mut().map(|f| std::mem::take(&mut f[row])),
        });
    }
    Ok(())
}

#[cfg(test)]
#[path = "checkpoint_tests.rs"]
mod tests;
