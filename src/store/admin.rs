//! The state as a whole: what `state info` says of it, and `state copy`,
//! which copies every recorded row from one state to another (a SQLite
//! file to a PostgreSQL database and back) in bulk, in one transaction
//! (streamed in batches: `COPY` into PostgreSQL, multi-row `INSERT`s into
//! SQLite), and then checks, table by table, that both hold the same rows
//! (an order-free digest of them: the source's taken as its rows are read,
//! the target's read back once committed).
//! Claims are not copied: they belong to runs of the state copied from.

use super::db::{Arg, Db, DbError, DbResult, Row};
use super::pg_write::{copy_bytea_value, copy_text_value};
use super::{SCHEMA_VERSION, StateLocation, StateStore, StoreError};

/// What `state info` shows.
#[derive(Debug, serde::Serialize)]
pub struct StateInfo {
    pub backend: &'static str,
    /// The file, or the URL without its password.
    pub location: String,
    pub schema_version: i64,
    /// Bytes on disk: the file and its WAL, or the database.
    pub size_bytes: u64,
    pub runs: i64,
    pub targets: i64,
    /// `None` when the schema has no claims (before 7).
    pub claims: Option<Vec<super::ActiveClaim>>,
}

/// The tables a copy copies, each with its columns, parents first.
const TABLES: &[(&str, &str)] = &[
    ("nodes", "id, step, config, part, output"),
    ("slices", "hash, json"),
    (
        "targets",
        "node, day, key, slice, inputs, output, seq, built_at, inputs_doc",
    ),
    ("inputs_seen", "tbl, day, seq, fingerprint"),
    ("runs", "id, args, started_at, ended_at, result"),
    (
        "attempts",
        "id, run, node, day_from, day_to, attempt, argv, exit_code, duration_ms, log_path, started_at",
    ),
    ("failures", "node, day, run, exit_code"),
    ("forced", "node, day"),
    ("counters", "name, value"),
    ("node_memos", "node, memo, last"),
];

/// A column value, owned.
#[derive(Clone, Debug)]
enum Value {
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
    Null,
}

impl Value {
    fn arg(&self) -> Arg<'_> {
        match self {
            Value::Int(v) => Arg::Int(*v),
            Value::Text(v) => Arg::Text(v),
            Value::Blob(v) => Arg::Blob(v),
            Value::Null => Arg::Null,
        }
    }
}

fn value(row: &Row, i: usize) -> DbResult<Value> {
    match row {
        Row::Sqlite(r) => {
            use rusqlite::types::ValueRef;
            Ok(match r.get_ref(i)? {
                ValueRef::Null => Value::Null,
                ValueRef::Integer(v) => Value::Int(v),
                ValueRef::Real(v) => Value::Int(v as i64),
                ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Blob(b) => Value::Blob(b.to_vec()),
            })
        }
        Row::Pg(r) => {
            use postgres::types::Type;
            let ty = r.columns()[i].type_().clone();
            Ok(if ty == Type::BYTEA {
                r.try_get::<_, Option<Vec<u8>>>(i)?
                    .map_or(Value::Null, Value::Blob)
            } else if ty == Type::TEXT || ty == Type::VARCHAR {
                r.try_get::<_, Option<String>>(i)?
                    .map_or(Value::Null, Value::Text)
            } else {
                row.opt_int(i)?.map_or(Value::Null, Value::Int)
            })
        }
    }
}

/// An order-free digest of a table's rows: their count and, per row, a
/// hash of its values, summed; the same rows give the same digest in any
/// order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Digest {
    rows: i64,
    sum: [u64; 4],
}

impl Digest {
    fn add(&mut self, values: &[Value]) {
        let mut hasher = blake3::Hasher::new();
        for value in values {
            match value {
                Value::Int(v) => hasher.update(b"i").update(&v.to_le_bytes()),
                Value::Text(t) => hasher
                    .update(b"t")
                    .update(&(t.len() as u64).to_le_bytes())
                    .update(t.as_bytes()),
                Value::Blob(b) => hasher
                    .update(b"b")
                    .update(&(b.len() as u64).to_le_bytes())
                    .update(b),
                Value::Null => hasher.update(b"n"),
            };
        }
        let bytes = hasher.finalize();
        for (lane, chunk) in self.sum.iter_mut().zip(bytes.as_bytes().chunks_exact(8)) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            *lane = lane.wrapping_add(u64::from_le_bytes(word));
        }
        self.rows += 1;
    }
}

/// The digest of a table's rows.
fn digest(db: &Db, table: &str, columns: &str) -> DbResult<Digest> {
    let mut digest = Digest::default();
    stream(db, table, columns, &mut digest, |_| Ok(()))?;
    Ok(digest)
}

/// Rows a copy reads, then writes, at once.
const BATCH: usize = 1000;

/// Reads a table's rows, adding each to `digest`, and hands them to
/// `flush` in batches of `BATCH` (a million targets are never all held).
fn stream(
    db: &Db,
    table: &str,
    columns: &str,
    digest: &mut Digest,
    mut flush: impl FnMut(&[Vec<Value>]) -> DbResult<()>,
) -> DbResult<()> {
    let n = columns.split(',').count();
    let mut batch: Vec<Vec<Value>> = Vec::with_capacity(BATCH);
    db.for_each(&format!("SELECT {columns} FROM {table}"), &[], |row| {
        let values = (0..n)
            .map(|i| value(row, i))
            .collect::<DbResult<Vec<_>>>()?;
        digest.add(&values);
        batch.push(values);
        if batch.len() == BATCH {
            flush(&batch)?;
            batch.clear();
        }
        Ok(())
    })?;
    if !batch.is_empty() {
        flush(&batch)?;
    }
    Ok(())
}

impl StateStore {
    pub fn info(&self) -> Result<StateInfo, StoreError> {
        let version = self.version()?;
        let count = |table: &str| -> Result<i64, StoreError> {
            let n = self.select(&format!("SELECT count(*) FROM {table}"), &[], |r| r.int(0))?;
            Ok(n.first().copied().unwrap_or(0))
        };
        let size_bytes = match &self.location {
            StateLocation::File(path) => ["", "-wal"]
                .iter()
                .filter_map(|suffix| {
                    let mut name = path.as_os_str().to_owned();
                    name.push(suffix);
                    std::fs::metadata(name).ok().map(|m| m.len())
                })
                .sum(),
            StateLocation::Postgres(_) => {
                let size =
                    self.select("SELECT pg_database_size(current_database())", &[], |r| {
                        r.int(0)
                    })?;
                size.first().copied().unwrap_or(0).max(0) as u64
            }
        };
        Ok(StateInfo {
            backend: self.location.backend(),
            location: self.location.name(),
            schema_version: version,
            size_bytes,
            runs: count("runs")?,
            targets: count("targets")?,
            claims: if version >= 7 {
                Some(self.active_claims()?)
            } else {
                None
            },
        })
    }

    /// Whether nothing is recorded: no node, run or target.
    pub fn is_empty(&self) -> Result<bool, StoreError> {
        for table in ["nodes", "runs", "targets"] {
            let any = self.select(&format!("SELECT 1 FROM {table} LIMIT 1"), &[], |_| Ok(()))?;
            if !any.is_empty() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Copies every row of `self` (at this binary's schema) into `to`
    /// (empty), in one transaction, then checks each table's rows match.
    /// Returns the rows copied per table.
    pub fn copy_to(&self, to: &mut StateStore) -> Result<Vec<(&'static str, i64)>, StoreError> {
        let version = self.version()?;
        if version != SCHEMA_VERSION {
            return Err(StoreError::Open {
                path: self.location.name(),
                message: format!(
                    "schema version {version}; copy needs {SCHEMA_VERSION}: run a command that \
                     writes this state first (it migrates)"
                ),
            });
        }
        let source = &self.db;
        let copied = to.db.transaction(|target| {
            let mut digests = Vec::new();
            for (table, columns) in TABLES {
                digests.push(copy_table(source, target, table, columns)?);
            }
            if target.is_pg() {
                // Ids were copied as they are: identities go on after them.
                for table in ["nodes", "runs", "attempts"] {
                    target.batch(&format!(
                        "SELECT setval(pg_get_serial_sequence('{table}', 'id'),
                                       coalesce((SELECT max(id) FROM {table}), 0) + 1, false)"
                    ))?;
                }
            }
            Ok(digests)
        });
        let digests = copied.map_err(|e| to.err(e))?;
        // Read back once committed: what the target holds.
        let mut counts = Vec::new();
        for ((table, columns), from) in TABLES.iter().zip(digests) {
            let into = digest(&to.db, table, columns).map_err(|e| to.err(e))?;
            if from != into {
                return Err(StoreError::Open {
                    path: to.location.name(),
                    message: format!(
                        "the copy of table {table} differs from {} ({} rows there, {} here)",
                        self.location.name(),
                        from.rows,
                        into.rows
                    ),
                });
            }
            counts.push((*table, from.rows));
        }
        Ok(counts)
    }
}

/// Copies a table's rows, streamed from `source`: into PostgreSQL with
/// one `COPY` (text format, as `pg_write` records builds), into SQLite
/// with prepared multi-row `INSERT`s. Returns the digest of the rows read.
fn copy_table(source: &Db, target: &Db, table: &str, columns: &str) -> DbResult<Digest> {
    use std::io::Write;
    let mut digest = Digest::default();
    match target {
        Db::Pg(pg) => {
            let mut pg = pg.borrow_mut();
            let mut writer = pg
                .client
                .copy_in(&format!("COPY {table} ({columns}) FROM STDIN"))?;
            let mut text = Vec::new();
            stream(source, table, columns, &mut digest, |rows| {
                text.clear();
                for row in rows {
                    copy_row(&mut text, row);
                }
                writer
                    .write_all(&text)
                    .map_err(|e| DbError::Other(format!("COPY {table}: {e}")))
            })?;
            writer.finish()?;
        }
        Db::Sqlite(_) => {
            stream(source, table, columns, &mut digest, |rows| {
                insert_rows(target, table, columns, rows)
            })?;
        }
    }
    Ok(digest)
}

/// A row in COPY's text format
/// (<https://www.postgresql.org/docs/15/sql-copy.html>, "Text Format").
fn copy_row(out: &mut Vec<u8>, row: &[Value]) {
    for (i, value) in row.iter().enumerate() {
        if i > 0 {
            out.push(b'\t');
        }
        match value {
            Value::Int(v) => out.extend_from_slice(v.to_string().as_bytes()),
            Value::Text(t) => copy_text_value(out, t),
            Value::Blob(b) => copy_bytea_value(out, b),
            Value::Null => out.extend_from_slice(b"\\N"),
        }
    }
    out.push(b'\n');
}

/// Rows in one `INSERT ... VALUES (...), (...)` (its statement prepared
/// once per batch size, so all but the last batch share one).
fn insert_rows(target: &Db, table: &str, columns: &str, rows: &[Vec<Value>]) -> DbResult<()> {
    let n = rows.first().map_or(0, Vec::len);
    let tuples: Vec<String> = (0..rows.len())
        .map(|r| {
            let params: Vec<String> = (1..=n).map(|i| format!("?{}", r * n + i)).collect();
            format!("({})", params.join(", "))
        })
        .collect();
    let sql = format!(
        "INSERT INTO {table} ({columns}) VALUES {}",
        tuples.join(", ")
    );
    let args: Vec<Arg> = rows.iter().flatten().map(Value::arg).collect();
    target.execute(&sql, &args)?;
    Ok(())
}
