//! The local engine: computes Chronon's steps on the embedded SQLite
//! warehouse, so the whole pipeline runs on one machine with nothing
//! installed. The `local` executor runs each job as `chronon-build compute
//! STEP CONFIG ...`, a process like any `zipline` job, so the runner's
//! logs, timeouts, retries and recording apply unchanged.
//!
//! `selects`, `wheres`, derivations and staging queries are SQL run by
//! SQLite, with the Spark functions SQLite lacks registered (`sql`). The
//! aggregations are computed here (`aggregate`), windows sliding across the
//! range. What the engine cannot compute exactly fails the target with a
//! message naming the config and the field, and nothing is written.

pub(crate) mod aggregate;
pub(crate) mod bounds;
pub(crate) mod consistency;
pub(crate) mod fetch;
mod groupby;
mod ir;
mod join;
pub(crate) mod kv;
mod label;
mod seen;
pub(crate) mod sql;
pub(crate) mod streaming;

use std::collections::HashMap;
use std::path::PathBuf;

use rusqlite::Connection;
use rusqlite::types::Value;

use crate::config::{Body, Derivation, Query, Repo};
use crate::graph::{Node, Step};
use crate::partition::DayRange;
use crate::settings::Settings;
use crate::warehouse::{Rows, TableName, Warehouse, quote, quote_list};

/// Why a step could not be computed.
#[derive(Debug)]
pub struct EngineError {
    pub message: String,
    /// The engine lacks the feature; Spark through `zipline` has it.
    pub unsupported: bool,
}

impl std::fmt::Display for EngineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)?;
        if self.unsupported {
            f.write_str(
                "\n  the local engine does not support this; run this config with the zipline \
                 executor ([executor] kind = \"zipline\" in chronon-build.toml)",
            )?;
        }
        Ok(())
    }
}

impl EngineError {
    pub fn failed(message: impl Into<String>) -> EngineError {
        EngineError {
            message: message.into(),
            unsupported: false,
        }
    }

    pub fn unsupported(message: impl Into<String>) -> EngineError {
        EngineError {
            message: message.into(),
            unsupported: true,
        }
    }
}

pub type Result<T> = std::result::Result<T, EngineError>;

/// What a computation needs: the configs and where data lives.
pub struct Engine<'a> {
    pub repo: &'a Repo,
    pub settings: &'a Settings,
    pub warehouse: Warehouse,
    /// The local KV store that `upload-to-kv` fills and `fetch` reads.
    pub kv_path: PathBuf,
}

impl<'a> Engine<'a> {
    pub fn new(repo: &'a Repo, settings: &'a Settings) -> Engine<'a> {
        let root = settings.resolve(&repo.root, &settings.warehouse.root());
        let kv_path = settings.resolve(&repo.root, &settings.executor.kv);
        Engine {
            repo,
            settings,
            warehouse: Warehouse::new(root, &settings.warehouse.partition_column),
            kv_path,
        }
    }

    /// Computes `node` over `range` (`None` for unpartitioned steps) and
    /// writes its output; returns a one-line summary for the job's log.
    pub fn compute(&self, node: &Node, range: Option<DayRange>) -> Result<String> {
        let config = &self.repo.configs[node.config];
        let range = || {
            range.ok_or_else(|| {
                EngineError::failed(format!("{}: a partition range is required", node.label()))
            })
        };
        let within = |e: EngineError| EngineError {
            message: format!("{} ({}): {}", node.label(), config.path, e.message),
            unsupported: e.unsupported,
        };
        match node.step {
            Step::GroupByBackfill => groupby::backfill(self, node, range()?),
            Step::GroupByUpload => groupby::upload(self, node, range()?),
            Step::UploadToKv => kv::upload(self, node, range()?),
            Step::StagingQuery => self.staging_query(node, range()?),
            Step::JoinLeft => join::left(self, node, range()?),
            Step::JoinPart => join::part(self, node, range()?),
            Step::JoinFinal => join::final_(self, node, range()?),
            Step::LabelJoin => label::label_join(self, node, range()?),
            Step::LogFlattener => consistency::flatten(self, node, range()?),
            Step::BuildComparisonTable => consistency::compare(self, node, range()?),
            Step::ConsistencyMetricsCompute => consistency::metrics(self, node, range()?),
            Step::MetadataUpload => kv::metadata(self, node),
            Step::GroupByStreaming => streaming::deploy(self, node),
        }
        .map_err(within)
    }

    /// A connection with every namespace attached and the Spark functions,
    /// its statements stopped when the job passes a bound (`bounds`).
    pub fn connect(&self) -> Result<Connection> {
        let mut conn = self
            .warehouse
            .attach_all()
            .map_err(|e| EngineError::failed(e.to_string()))?;
        sql::register(&conn).map_err(|e| EngineError::failed(e.to_string()))?;
        bounds::watch(&mut conn).map_err(|e| EngineError::failed(e.to_string()))?;
        Ok(conn)
    }

    pub fn write(&self, table: &str, rows: &Rows, range: DayRange) -> Result<usize> {
        self.write_by(table, None, rows, range)
    }

    /// Replaces the partitions `range` of `table`, partitioned by `column`
    /// (the warehouse's when `None`).
    pub fn write_by(
        &self,
        table: &str,
        column: Option<&str>,
        rows: &Rows,
        range: DayRange,
    ) -> Result<usize> {
        let name = table_name(table)?;
        let days: Vec<_> = range.days().collect();
        self.warehouse
            .replace_days(&name, rows, column, &days)
            .map_err(|e| EngineError::failed(e.to_string()))?;
        Ok(rows.rows.len())
    }

    /// Writes rows with no declared types to the node's output over
    /// `range`; returns the table and the number of rows.
    pub fn write_untyped<'n>(
        &self,
        node: &'n Node,
        columns: Vec<String>,
        rows: Vec<Vec<Value>>,
        range: DayRange,
    ) -> Result<(&'n str, usize)> {
        let rows = Rows {
            types: vec![""; columns.len()],
            columns,
            rows,
        };
        let output = node.output.as_deref().unwrap_or_default();
        Ok((output, self.write(output, &rows, range)?))
    }

    fn staging_query(&self, node: &Node, range: DayRange) -> Result<String> {
        let Body::StagingQuery(sq) = &self.repo.configs[node.config].body else {
            return Err(EngineError::failed("not a staging query"));
        };
        let output = node.output.as_deref().unwrap_or_default();
        let text = sql::substitute_dates(&sq.query, range.from, range.to, range.to);
        if let Some(open) = text.find("{{") {
            let end = text[open..].find("}}").map_or(text.len(), |e| open + e + 2);
            return Err(EngineError::unsupported(format!(
                "query: the template {} is not one the local engine fills \
                 (start_date, end_date, latest_date)",
                &text[open..end]
            )));
        }
        let mut conn = self.connect()?;
        let text = sql::quote_default_namespace(&text);
        let guard = read_only(&mut conn)?;
        let result = select_rows(&conn, &text, &[], "query");
        if let Some(what) = guard.denied.lock().ok().and_then(|mut d| d.take()) {
            return Err(EngineError::failed(format!(
                "query: staging queries run read-only; {what} is not allowed (the engine \
                 writes the result to the output table itself)"
            )));
        }
        let rows = result?;
        let reads = guard.reads.lock().map(|r| r.clone()).unwrap_or_default();
        sql::check_declared(sq, self.repo.layout, &reads)?;
        let partition = &self.warehouse.partition_column;
        let Some(at) = rows.columns.iter().position(|c| c == partition) else {
            return Err(EngineError::failed(format!(
                "query: the result has no {partition:?} column to partition it by (columns: {})",
                rows.columns.join(", ")
            )));
        };
        let mut rows = rows;
        rows.rows.retain(|row| match &row[at] {
            Value::Text(day) => {
                crate::partition::Day::parse(day).is_some_and(|d| range.contains(d))
            }
            _ => false,
        });
        let written = self.write(output, &rows, range)?;
        Ok(format!("{output}: {written} rows over {range}"))
    }
}

/// The column a source is partitioned by: its query's `partitionColumn`,
/// else `default` (the warehouse's).
pub fn source_partition<'q>(query: &'q Query, default: &'q str) -> &'q str {
    query.partition_column_or(default)
}

/// What `read_only` records: the first refused action, and every table
/// read (`ns.table`, as SQLite's authorizer names them).
struct Guard {
    denied: std::sync::Arc<std::sync::Mutex<Option<String>>>,
    reads: std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>,
}

/// Makes `conn` read-only for SQL from configs (an SQLite authorizer):
/// SELECT, reads and functions of the attached namespaces, nothing else: no
/// ATTACH or DETACH (which create files anywhere), VACUUM, PRAGMA, writes,
/// DDL or triggers. Records the first refused action, and the tables read.
fn read_only(conn: &mut Connection) -> Result<Guard> {
    use rusqlite::hooks::{AuthAction, Authorization};
    let guard = Guard {
        denied: Default::default(),
        reads: Default::default(),
    };
    let record = guard.denied.clone();
    let reads = guard.reads.clone();
    conn.authorizer(Some(move |ctx: rusqlite::hooks::AuthContext<'_>| {
        let what = match ctx.action {
            AuthAction::Read { table_name, .. } => {
                if let (Some(namespace), Ok(mut reads)) = (ctx.database_name, reads.lock()) {
                    reads.insert(format!("{namespace}.{table_name}"));
                }
                return Authorization::Allow;
            }
            AuthAction::Select | AuthAction::Function { .. } | AuthAction::Recursive => {
                return Authorization::Allow;
            }
            AuthAction::Attach { filename } => format!("ATTACH DATABASE {filename:?}"),
            AuthAction::Detach { database_name } => format!("DETACH {database_name}"),
            AuthAction::Pragma { pragma_name, .. } => format!("PRAGMA {pragma_name}"),
            AuthAction::Insert { table_name } if table_name.starts_with("sqlite_") => {
                "a schema change (CREATE, DROP)".to_string()
            }
            AuthAction::CreateTable { table_name } => format!("CREATE TABLE {table_name}"),
            AuthAction::Insert { table_name } => format!("INSERT into {table_name}"),
            AuthAction::Update { table_name, .. } => format!("UPDATE of {table_name}"),
            AuthAction::Delete { table_name } => format!("DELETE from {table_name}"),
            other => format!("{other:?}"),
        };
        if let Ok(mut slot) = record.lock() {
            slot.get_or_insert(what);
        }
        Authorization::Deny
    }))
    .map_err(|e| {
        EngineError::failed(format!("query: cannot make the connection read-only: {e}"))
    })?;
    Ok(guard)
}

pub fn table_name(table: &str) -> Result<TableName> {
    TableName::parse(table).map_err(|e| EngineError::failed(e.to_string()))
}

/// `"ns"."table"` for SQL.
pub fn sql_table(table: &str) -> Result<String> {
    let name = table_name(table)?;
    Ok(format!("{}.{}", quote(&name.namespace), quote(&name.table)))
}

/// Runs a query and collects its rows, with clear messages for what users
/// get wrong; `what` names the config field the SQL comes from.
pub fn select_rows(
    conn: &Connection,
    text: &str,
    params: &[&dyn rusqlite::ToSql],
    what: &str,
) -> Result<Rows> {
    let mut stmt = conn.prepare(text).map_err(|e| sql_error(e, what))?;
    let columns: Vec<String> = stmt.column_names().map(str::to_string).collect();
    let n = columns.len();
    let rows = stmt
        .query_map(params, |row| {
            (0..n).map(|i| row.get::<_, Value>(i)).collect()
        })
        .map_err(|e| sql_error(e, what))?
        .collect::<std::result::Result<Vec<Vec<Value>>, _>>()
        .map_err(|e| sql_error(e, what))?;
    let types = vec![""; n];
    Ok(Rows {
        columns,
        types,
        rows,
    })
}

/// An SQLite error as a message about the config: a missing function is a
/// Spark function the engine lacks, a missing table is an input not in the
/// warehouse.
pub fn sql_error(e: rusqlite::Error, what: &str) -> EngineError {
    if e.sqlite_error_code() == Some(rusqlite::ErrorCode::OutOfMemory) {
        bounds::out_of_memory();
    }
    let text = e.to_string();
    // SQLite names the statement after the message: keep the message.
    let first_word = |rest: &str| {
        rest.split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string()
    };
    if let Some(name) = text.strip_prefix("no such function: ").map(first_word) {
        return EngineError::unsupported(format!(
            "{what}: the SQL function {name} is not available in the local engine \
             (it has SQLite's functions and {})",
            sql::SPARK_FUNCTIONS.join(", ")
        ));
    }
    if let Some(table) = text.strip_prefix("no such table: ").map(first_word) {
        return EngineError::failed(format!(
            "{what}: table {table} is not in the warehouse (import it with \
             `chronon-build warehouse import`)"
        ));
    }
    EngineError::failed(format!("{what}: {text}"))
}

/// The SQL expression for a column as the query selects it: its `selects`
/// entry, or the column itself.
pub fn column_expr(query: &Query, column: &str) -> String {
    match query.selects.get(column) {
        Some(expr) => sql::quote_default_namespace(expr),
        None => quote(column),
    }
}

/// `SELECT <columns> FROM <table> WHERE <partition in range> AND <wheres>`.
pub fn scan_sql(
    table: &str,
    partition: &str,
    query: &Query,
    columns: &[(String, String)],
    range: DayRange,
) -> Result<String> {
    let select: Vec<String> = columns
        .iter()
        .map(|(name, expr)| format!("{expr} AS {}", quote(name)))
        .collect();
    let mut conditions = vec![format!(
        "{} BETWEEN '{}' AND '{}'",
        quote(partition),
        range.from,
        range.to
    )];
    conditions.extend(
        query
            .wheres
            .iter()
            .map(|w| format!("({})", sql::quote_default_namespace(w))),
    );
    Ok(format!(
        "SELECT {} FROM {} WHERE {}",
        select.join(", "),
        sql_table(table)?,
        conditions.join(" AND ")
    ))
}

/// Applies derivations to rows in SQL: `*` keeps every column; `keep` are
/// kept in front either way (keys, timestamps, the partition).
pub fn derive(
    conn: &Connection,
    rows: Rows,
    derivations: &[Derivation],
    keep: &[String],
    what: &str,
) -> Result<Rows> {
    if derivations.is_empty() {
        return Ok(rows);
    }
    let temp = "__derive";
    conn.execute_batch(&format!(
        "DROP TABLE IF EXISTS temp.{temp}; CREATE TEMP TABLE {temp} ({});",
        quote_list(&rows.columns)
    ))
    .map_err(|e| sql_error(e, what))?;
    {
        let placeholders: Vec<String> = (1..=rows.columns.len()).map(|i| format!("?{i}")).collect();
        let mut insert = conn
            .prepare(&format!(
                "INSERT INTO temp.{temp} VALUES ({})",
                placeholders.join(", ")
            ))
            .map_err(|e| sql_error(e, what))?;
        for row in &rows.rows {
            insert
                .execute(rusqlite::params_from_iter(row.iter()))
                .map_err(|e| sql_error(e, what))?;
        }
    }
    let star = derivations.iter().any(|d| d.name == "*");
    let mut select: Vec<String> = Vec::new();
    let mut names: Vec<&str> = Vec::new();
    for column in keep
        .iter()
        .chain(if star { rows.columns.iter() } else { [].iter() })
    {
        if !names.contains(&column.as_str()) {
            names.push(column);
            select.push(quote(column));
        }
    }
    for d in derivations.iter().filter(|d| d.name != "*") {
        let expr = format!(
            "({}) AS {}",
            sql::quote_default_namespace(&d.expression),
            quote(&d.name)
        );
        // A derivation replaces the column of the same name.
        match names.iter().position(|n| *n == d.name) {
            Some(at) => select[at] = expr,
            None => {
                names.push(&d.name);
                select.push(expr);
            }
        }
    }
    let out = select_rows(
        conn,
        &format!("SELECT {} FROM temp.{temp}", select.join(", ")),
        &[],
        &format!("{what}.derivations"),
    )?;
    conn.execute_batch(&format!("DROP TABLE temp.{temp}"))
        .map_err(|e| sql_error(e, what))?;
    Ok(out)
}

/// A key's values as one hashable string.
pub fn key_string(values: &[Value]) -> String {
    let mut out = String::new();
    for v in values {
        match v {
            Value::Null => out.push('N'),
            Value::Integer(i) => {
                out.push('I');
                out.push_str(&i.to_string());
            }
            Value::Real(r) => {
                out.push('R');
                out.push_str(&r.to_string());
            }
            Value::Text(t) => {
                out.push('T');
                out.push_str(t);
            }
            Value::Blob(b) => {
                out.push('B');
                out.push_str(&crate::warehouse::text(&Value::Blob(b.clone())));
            }
        }
        out.push('\u{1f}');
    }
    out
}

pub type KeyIndex = HashMap<String, usize>;
