//! The state as a whole: what `state info` says of it, and `state copy`,
//! which copies every recorded row from one state to another (a SQLite
//! file to a PostgreSQL database and back) and then checks, table by
//! table, that both hold the same rows (an order-free digest of them).
//! Claims are not copied: they belong to runs of the state copied from.

use super::db::{Arg, Db, DbResult, Row};
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

/// Per row a hash of its values, summed: the same rows give the same
/// digest in any order.
fn digest(db: &Db, table: &str, columns: &str) -> DbResult<(i64, [u64; 4])> {
    let n = columns.split(',').count();
    let mut count = 0;
    let mut sum = [0u64; 4];
    db.for_each(&format!("SELECT {columns} FROM {table}"), &[], |row| {
        let mut hasher = blake3::Hasher::new();
        for i in 0..n {
            match value(row, i)? {
                Value::Int(v) => hasher.update(b"i").update(&v.to_le_bytes()),
                Value::Text(t) => hasher
                    .update(b"t")
                    .update(&(t.len() as u64).to_le_bytes())
                    .update(t.as_bytes()),
                Value::Blob(b) => hasher
                    .update(b"b")
                    .update(&(b.len() as u64).to_le_bytes())
                    .update(&b),
                Value::Null => hasher.update(b"n"),
            };
        }
        let bytes = hasher.finalize();
        for (lane, chunk) in sum.iter_mut().zip(bytes.as_bytes().chunks(8)) {
            *lane = lane.wrapping_add(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        }
        count += 1;
        Ok(())
    })?;
    Ok((count, sum))
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
            for (table, columns) in TABLES {
                copy_table(source, target, table, columns)?;
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
            Ok(())
        });
        copied.map_err(|e| to.err(e))?;
        let mut counts = Vec::new();
        for (table, columns) in TABLES {
            let from = digest(&self.db, table, columns).map_err(|e| self.err(e))?;
            let into = digest(&to.db, table, columns).map_err(|e| to.err(e))?;
            if from != into {
                return Err(StoreError::Open {
                    path: to.location.name(),
                    message: format!(
                        "the copy of table {table} differs from {} ({} rows there, {} here)",
                        self.location.name(),
                        from.0,
                        into.0
                    ),
                });
            }
            counts.push((*table, from.0));
        }
        Ok(counts)
    }
}

fn copy_table(source: &Db, target: &Db, table: &str, columns: &str) -> DbResult<()> {
    let n = columns.split(',').count();
    let placeholders: Vec<String> = (1..=n).map(|i| format!("?{i}")).collect();
    let insert = format!(
        "INSERT INTO {table} ({columns}) VALUES ({})",
        placeholders.join(", ")
    );
    // Read first, then written: the source's statement is not held across
    // the writes (source and target may be one connection's kind).
    let mut rows: Vec<Vec<Value>> = Vec::new();
    source.for_each(&format!("SELECT {columns} FROM {table}"), &[], |row| {
        rows.push((0..n).map(|i| value(row, i)).collect::<DbResult<_>>()?);
        Ok(())
    })?;
    for row in &rows {
        let values: Vec<Arg> = row.iter().map(Value::arg).collect();
        target.execute(&insert, &values)?;
    }
    Ok(())
}
