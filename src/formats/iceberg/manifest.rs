//! Iceberg's Avro files: manifest lists ("Manifest Lists") and manifests
//! ("Manifests", "Manifest Entry Fields", "Data File Fields"), with each
//! manifest's partition tuple read by the spec it was written with
//! ("Partition Evolution") and turned into a day ("Partition Transforms").
//! Fields are found by name, as formats 1 and 2 write them.

use std::collections::HashMap;

use std::sync::Arc;

use super::avro::{self, AvroError, Container, Plan, Value, Want};

use super::metadata::{PartitionField, SchemaField};
use crate::formats::{Content, FormatError};
use crate::partition::Day;
use crate::table::TableLayout;

/// A manifest list's entry.
#[derive(Debug)]
pub struct ManifestFile {
    pub path: String,
    pub spec_id: Option<i32>,
    /// The snapshot that wrote the manifest.
    pub added_snapshot_id: Option<i64>,
    /// Files added plus files deleted, when the list says (a manifest a
    /// snapshot wrote with neither only carries existing files over).
    pub changed_files: Option<i64>,
}

/// "Manifest Entry Fields": `status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Existing,
    Added,
    Deleted,
}

/// A manifest entry the caller asked for, with its day.
#[derive(Debug)]
pub struct Entry {
    pub status: Status,
    pub day: Day,
    pub path: String,
    pub size: u64,
    pub records: u64,
    pub content: Content,
}

/// Where the caller's day is in a manifest's partition tuples.
#[derive(Clone, Debug)]
pub enum DaySource {
    /// The tuple's field `name`: an identity partition (the value in the
    /// day format, or a `date`'s days) or `day(ts)` (days since 1970).
    Field { name: String },
    /// The spec has no day on the column; why, for the error.
    Missing { detail: String },
}

impl DaySource {
    /// The field of `spec` holding the day of `column`: a partition field
    /// named `column` first (`ts_day` for `day(ts)`), then one whose source
    /// column is `column` (`ts`). Fields `void`ed by partition evolution
    /// are not days.
    pub fn of(
        spec: &[PartitionField],
        sources: &HashMap<i32, &SchemaField>,
        column: &str,
    ) -> DaySource {
        let source_name = |f: &PartitionField| sources.get(&f.source_id).map(|s| s.name.as_str());
        let candidates = spec.iter().filter(|f| f.transform != "void");
        let field = candidates
            .clone()
            .find(|f| f.name == column)
            .or_else(|| candidates.clone().find(|f| source_name(f) == Some(column)));
        let Some(field) = field else {
            let detail = if spec.iter().all(|f| f.transform == "void") {
                " (the table is not partitioned)".to_string()
            } else {
                let names: Vec<&str> = spec
                    .iter()
                    .filter(|f| f.transform != "void")
                    .map(|f| f.name.as_str())
                    .collect();
                format!(" (its partition fields: {})", names.join(", "))
            };
            return DaySource::Missing { detail };
        };
        let by_day = match field.transform.as_str() {
            "day" => true,
            "identity" => match sources.get(&field.source_id).map(|s| &s.kind) {
                Some(serde_json::Value::String(kind)) => {
                    matches!(kind.as_str(), "string" | "date" | "int" | "long")
                }
                _ => false,
            },
            _ => false,
        };
        if by_day {
            DaySource::Field {
                name: field.name.clone(),
            }
        } else {
            DaySource::Missing {
                detail: format!(
                    " (its field {} is {}({}), not a day)",
                    field.name,
                    field.transform,
                    source_name(field).unwrap_or("?")
                ),
            }
        }
    }
}

/// Opens an Avro object container file: what is not one is `NotAvro`.
fn open<'a>(table: &str, file: &str, bytes: &'a [u8]) -> Result<Container<'a>, FormatError> {
    Container::open(bytes).map_err(|e| avro_error(table, file, e))
}

fn avro_error(table: &str, file: &str, e: AvroError) -> FormatError {
    match e {
        AvroError::NotAvro(message) => FormatError::NotAvro {
            table: table.to_string(),
            file: file.to_string(),
            message,
        },
        AvroError::Codec(_) => FormatError::Unsupported {
            table: table.to_string(),
            file: file.to_string(),
            what: e.to_string(),
        },
        AvroError::Corrupt(message) => corrupt(table, file, message),
    }
}

fn corrupt(table: &str, file: &str, message: impl Into<String>) -> FormatError {
    FormatError::Corrupt {
        table: table.to_string(),
        file: file.to_string(),
        message: message.into(),
    }
}

/// The plan for a container's records keeping `wants`.
fn plan_of(
    table: &str,
    file: &str,
    container: &Container<'_>,
    wants: &[Want],
) -> Result<Arc<Plan>, FormatError> {
    avro::plan(container.schema(), wants).map_err(|e| avro_error(table, file, e))
}

/// A field asked for, `None` when absent or null.
fn non_null(value: &Value) -> Option<&Value> {
    (!value.is_null()).then_some(value)
}

/// "Manifest Lists": the fields read, in slot order. Format 1 writers
/// named the counts `added_data_files_count` and so on; format 2
/// `added_files_count` (the field ids are the same).
const LIST_FIELDS: [&str; 7] = [
    "manifest_path",
    "partition_spec_id",
    "added_snapshot_id",
    "added_files_count",
    "added_data_files_count",
    "deleted_files_count",
    "deleted_data_files_count",
];

/// The manifests a manifest list names.
pub fn read_manifest_list(
    table: &str,
    file: &str,
    bytes: &[u8],
) -> Result<Vec<ManifestFile>, FormatError> {
    let container = open(table, file, bytes)?;
    let wants: Vec<Want> = LIST_FIELDS.iter().map(|n| Want::whole(n)).collect();
    let plan = plan_of(table, file, &container, &wants)?;
    let mut out = Vec::new();
    container.read(
        &plan,
        |e| avro_error(table, file, e),
        |i, record| {
            let int = |slots: &[usize]| slots.iter().find_map(|s| record.field(*s).as_i64());
            let Some(path) = record.field(0).as_str() else {
                return Err(corrupt(
                    table,
                    file,
                    format!("entry {i} has no manifest_path"),
                ));
            };
            let added = int(&[3, 4]);
            let deleted = int(&[5, 6]);
            out.push(ManifestFile {
                path: path.to_string(),
                spec_id: int(&[1]).and_then(|id| i32::try_from(id).ok()),
                added_snapshot_id: int(&[2]),
                changed_files: added.zip(deleted).map(|(a, d)| a + d),
            });
            Ok(())
        },
    )?;
    Ok(out)
}

/// The partition spec a manifest file says it was written with, from its
/// Avro metadata (`partition-spec`): for a manifest whose spec the table
/// metadata does not list.
fn own_spec(
    table: &str,
    file: &str,
    metadata: &HashMap<String, Vec<u8>>,
) -> Result<Vec<PartitionField>, FormatError> {
    let text = metadata.get("partition-spec").ok_or_else(|| {
        corrupt(
            table,
            file,
            "no partition spec, in the table or the manifest",
        )
    })?;
    serde_json::from_slice(text)
        .map_err(|e| corrupt(table, file, format!("its partition-spec: {e}")))
}

/// What reading a manifest needs besides its bytes.
pub struct ManifestContext<'a> {
    pub table: &'a str,
    pub layout: &'a TableLayout,
    pub specs: &'a HashMap<i32, &'a [PartitionField]>,
    pub sources: &'a HashMap<i32, &'a SchemaField>,
}

/// "Manifest Entry Fields" and "Data File Fields": what is read of an
/// entry (slots in this order), and of its `data_file`; the partition
/// tuple's one field with the day. Every other field (column sizes, value
/// and null counts, bounds, split offsets, key metadata, ...) is skipped.
fn entry_wants(day_field: Option<&str>) -> Vec<Want> {
    let mut data_file = vec![
        Want::whole("file_path"),
        Want::whole("file_size_in_bytes"),
        Want::whole("record_count"),
        Want::whole("content"),
    ];
    if let Some(name) = day_field {
        data_file.push(Want::some("partition", vec![Want::whole(name)]));
    }
    vec![
        Want::whole("status"),
        Want::whole("snapshot_id"),
        Want::some("data_file", data_file),
    ]
}

/// The entries of a manifest that `wanted(status, snapshot_id)` keeps,
/// each with its day. Only kept entries need a day, so a manifest of
/// files deleted long ago in a spec without the column is no error.
pub fn read_manifest(
    context: &ManifestContext<'_>,
    manifest: &ManifestFile,
    bytes: &[u8],
    wanted: impl Fn(Status, Option<i64>) -> bool,
) -> Result<Vec<Entry>, FormatError> {
    let (table, file) = (context.table, manifest.path.as_str());
    let container = open(table, file, bytes)?;
    let spec_id = manifest.spec_id.or_else(|| {
        let text = container.metadata.get("partition-spec-id")?;
        std::str::from_utf8(text).ok()?.parse().ok()
    });
    let own;
    let spec = match spec_id.and_then(|id| context.specs.get(&id)) {
        Some(spec) => *spec,
        None => {
            own = own_spec(table, file, &container.metadata)?;
            &own
        }
    };
    let source = DaySource::of(spec, context.sources, &context.layout.column);
    let day_field = match &source {
        DaySource::Field { name } => Some(name.as_str()),
        DaySource::Missing { .. } => None,
    };
    let plan = plan_of(table, file, &container, &entry_wants(day_field))?;
    let mut out = Vec::new();
    container.read(
        &plan,
        |e| avro_error(table, file, e),
        |i, entry| {
            let status = match non_null(entry.field(0)).and_then(Value::as_i64) {
                Some(0) => Status::Existing,
                Some(1) => Status::Added,
                Some(2) => Status::Deleted,
                other => {
                    return Err(corrupt(table, file, format!("entry {i}: status {other:?}")));
                }
            };
            if !wanted(status, entry.field(1).as_i64()) {
                return Ok(());
            }
            out.push(data_file(
                context,
                file,
                &source,
                i,
                status,
                entry.field(2),
            )?);
            Ok(())
        },
    )?;
    Ok(out)
}

/// A kept entry's `data_file` (slots as `entry_wants` asks).
fn data_file(
    context: &ManifestContext<'_>,
    file: &str,
    source: &DaySource,
    i: usize,
    status: Status,
    data_file: &Value,
) -> Result<Entry, FormatError> {
    let table = context.table;
    if !matches!(data_file, Value::Record(_)) {
        return Err(corrupt(table, file, format!("entry {i} has no data_file")));
    }
    let bad = |what: &str| corrupt(table, file, format!("entry {i}: data_file.{what}"));
    let Some(path) = data_file.field(0).as_str() else {
        return Err(bad("file_path"));
    };
    let count = |slot: usize, name: &str| {
        data_file
            .field(slot)
            .as_i64()
            .and_then(|n| u64::try_from(n).ok())
            .ok_or_else(|| bad(name))
    };
    let content = match data_file.field(3).as_i64() {
        None | Some(0) => Content::Data,
        Some(1) => Content::PositionDeletes,
        Some(2) => Content::EqualityDeletes,
        Some(_) => return Err(bad("content")),
    };
    let day = match source {
        DaySource::Field { name } => {
            let partition = data_file.field(4);
            if !matches!(partition, Value::Record(_)) {
                return Err(bad("partition"));
            }
            day_of(context, path, name, non_null(partition.field(0)))?
        }
        DaySource::Missing { detail } => {
            return Err(FormatError::NoPartitionColumn {
                table: table.to_string(),
                file: path.to_string(),
                column: context.layout.column.clone(),
                detail: format!("{detail}, in the spec of {file}"),
            });
        }
    };
    Ok(Entry {
        status,
        day,
        path: path.to_string(),
        size: count(1, "file_size_in_bytes")?,
        records: count(2, "record_count")?,
        content,
    })
}

/// The day a partition value names: text in the layout's format, or days
/// since 1970 (`date`, and `day(ts)`'s result, are Avro `int` with the
/// `date` logical type). An `int`/`long` identity partition is read as
/// text (`20240101` in `yyyyMMdd`).
fn day_of(
    context: &ManifestContext<'_>,
    data_file: &str,
    name: &str,
    value: Option<&Value>,
) -> Result<Day, FormatError> {
    let format = &context.layout.format;
    let day = match value {
        Some(Value::String(text)) => format.parse_day(text),
        Some(Value::Date(days)) => Some(Day(*days)),
        Some(Value::Int(n)) => format.parse_day(&n.to_string()),
        Some(Value::Long(n)) => format.parse_day(&n.to_string()),
        _ => None,
    };
    day.ok_or_else(|| FormatError::NotADay {
        table: context.table.to_string(),
        file: data_file.to_string(),
        column: name.to_string(),
        value: match value {
            Some(Value::String(text)) => format!("{text:?}"),
            Some(other) => format!("{other:?}"),
            None => "null".to_string(),
        },
        format: format.pattern().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(fields: &[(i32, &str, &str)]) -> Vec<PartitionField> {
        fields
            .iter()
            .map(|(source_id, name, transform)| PartitionField {
                source_id: *source_id,
                name: name.to_string(),
                transform: transform.to_string(),
            })
            .collect()
    }

    #[test]
    fn the_day_is_found_by_field_name_then_by_source_column() {
        let schema = [
            SchemaField {
                id: 1,
                name: "ds".into(),
                kind: "string".into(),
            },
            SchemaField {
                id: 2,
                name: "ts".into(),
                kind: "timestamp".into(),
            },
        ];
        let sources: HashMap<i32, &SchemaField> = schema.iter().map(|f| (f.id, f)).collect();
        let found = |fields: &[(i32, &str, &str)], column: &str| match DaySource::of(
            &spec(fields),
            &sources,
            column,
        ) {
            DaySource::Field { name } => Ok(name),
            DaySource::Missing { detail } => Err(detail),
        };
        assert_eq!(found(&[(1, "ds", "identity")], "ds"), Ok("ds".into()));
        assert_eq!(found(&[(2, "ts_day", "day")], "ts"), Ok("ts_day".into()));
        assert_eq!(
            found(&[(2, "ts_day", "day")], "ts_day"),
            Ok("ts_day".into())
        );
        assert_eq!(
            found(&[(1, "ds", "void"), (2, "ts_day", "day")], "ds"),
            Err(" (its partition fields: ts_day)".into())
        );
        assert_eq!(
            found(&[], "ds"),
            Err(" (the table is not partitioned)".into())
        );
        assert_eq!(
            found(&[(2, "ts_hour", "hour")], "ts"),
            Err(" (its field ts_hour is hour(ts), not a day)".into())
        );
        assert_eq!(
            found(&[(2, "ts", "identity")], "ts"),
            Err(" (its field ts is identity(ts), not a day)".into())
        );
    }

    #[test]
    fn what_is_not_avro_is_said_to_be_so() {
        let err = read_manifest_list("t", "snap-1.avro", b"{\"not\": \"avro\"}").unwrap_err();
        assert!(matches!(err, FormatError::NotAvro { .. }), "{err}");
        assert!(
            err.to_string()
                .starts_with("t: snap-1.avro is not an avro file"),
            "{err}"
        );
    }
}
