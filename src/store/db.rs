//! The one place that knows the two backends: a connection (`Db`) to a
//! SQLite file or a PostgreSQL database, statements with `?N` parameters
//! (`$N` for PostgreSQL), arguments (`Arg`) and rows (`Row`) that read the
//! same on both, and the dialect of the schema (`pg_ddl`): SQLite's
//! `INTEGER`, `BLOB`, `INTEGER PRIMARY KEY` and `WITHOUT ROWID` in
//! PostgreSQL's words. The statements themselves are written in the SQL
//! both accept (`ON CONFLICT ... DO UPDATE`, `IS DISTINCT FROM`,
//! `RETURNING`); nothing outside the store knows which backend it has.

use std::cell::RefCell;
use std::collections::HashMap;

use super::location::PgLocation;

/// The advisory lock key that serializes writers on PostgreSQL.
const WRITERS_LOCK: i64 = 0x0063_6872_6f6e_6f02;

/// A connection to the state.
pub(super) enum Db {
    Sqlite(rusqlite::Connection),
    /// PostgreSQL's client needs `&mut` to query; the store's readers take
    /// `&self` (a store is never shared between threads).
    Pg(Box<RefCell<PgConn>>),
}

pub(super) struct PgConn {
    pub client: postgres::Client,
    /// Prepared statements by their SQL (`?N` form).
    statements: HashMap<String, postgres::Statement>,
    /// The state's lock this process holds, checked before writes.
    lock: Option<std::sync::Arc<dyn LockCheck>>,
}

/// The state's lock as writes check it (`pg_lock::Keeper`).
pub(super) trait LockCheck: Send + Sync {
    /// Why the lock was lost for good, if it was.
    fn lost(&self) -> Option<String>;
    /// Makes sure the lock is held, taking it again if its connection was
    /// lost; the error says why it cannot be.
    fn check(&self) -> Result<(), String>;
}

/// Whether `error` says the connection to the server is gone (closed, or
/// the server shutting down or not yet accepting), so that a new one may
/// succeed.
pub(super) fn connection_lost(error: &postgres::Error) -> bool {
    use postgres::error::SqlState;
    error.is_closed()
        || error.code().is_some_and(|code| {
            [
                SqlState::ADMIN_SHUTDOWN,
                SqlState::CRASH_SHUTDOWN,
                SqlState::CANNOT_CONNECT_NOW,
                SqlState::CONNECTION_FAILURE,
            ]
            .contains(code)
        })
}

#[derive(Debug)]
pub enum DbError {
    Sqlite(rusqlite::Error),
    Pg(postgres::Error),
    /// The state's lock was lost for good (`pg_lock`): nothing more may be
    /// written.
    LockLost(String),
    Other(String),
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DbError::Sqlite(e) => write!(f, "{e}"),
            DbError::Pg(e) => f.write_str(&pg_message(e)),
            DbError::LockLost(message) | DbError::Other(message) => f.write_str(message),
        }
    }
}

/// A PostgreSQL error as messages show it: the server's severity and
/// message, or what failed on the way to it (a refused connection).
pub fn pg_message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => e.to_string(),
    }
}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> DbError {
        DbError::Sqlite(e)
    }
}

impl From<postgres::Error> for DbError {
    fn from(e: postgres::Error) -> DbError {
        DbError::Pg(e)
    }
}

pub(super) type DbResult<T> = Result<T, DbError>;

/// A statement argument.
#[derive(Clone, Copy, Debug)]
pub(super) enum Arg<'a> {
    Int(i64),
    Text(&'a str),
    Blob(&'a [u8]),
    Null,
}

macro_rules! arg_from {
    ($($t:ty => $f:expr),* $(,)?) => {$(
        impl<'a> From<$t> for Arg<'a> {
            fn from(v: $t) -> Arg<'a> {
                #[allow(clippy::redundant_closure_call)]
                ($f)(v)
            }
        }
    )*};
}

arg_from! {
    i64 => Arg::Int,
    i32 => |v| Arg::Int(i64::from(v)),
    u32 => |v| Arg::Int(i64::from(v)),
    &'a str => Arg::Text,
    &'a String => |v: &'a String| Arg::Text(v.as_str()),
    &'a [u8] => Arg::Blob,
    Option<i64> => |v: Option<i64>| v.map_or(Arg::Null, Arg::Int),
    Option<i32> => |v: Option<i32>| v.map_or(Arg::Null, |v| Arg::Int(i64::from(v))),
    Option<&'a str> => |v: Option<&'a str>| v.map_or(Arg::Null, Arg::Text),
    Option<&'a [u8]> => |v: Option<&'a [u8]>| v.map_or(Arg::Null, Arg::Blob),
}

/// `args![a, b]`: statement arguments.
macro_rules! args {
    ($($a:expr),* $(,)?) => { &[$($crate::store::db::Arg::from($a)),*][..] };
}
pub(super) use args;

impl rusqlite::ToSql for Arg<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match *self {
            Arg::Int(v) => ValueRef::Integer(v),
            Arg::Text(v) => ValueRef::Text(v.as_bytes()),
            Arg::Blob(v) => ValueRef::Blob(v),
            Arg::Null => ValueRef::Null,
        }))
    }
}

impl postgres::types::ToSql for Arg<'_> {
    fn to_sql(
        &self,
        ty: &postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use postgres::types::{IsNull, Type};
        match *self {
            Arg::Int(v) if *ty == Type::INT4 => i32::try_from(v)?.to_sql(ty, out),
            Arg::Int(v) => v.to_sql(ty, out),
            Arg::Text(v) => v.to_sql(ty, out),
            Arg::Blob(v) => v.to_sql(ty, out),
            Arg::Null => Ok(IsNull::Yes),
        }
    }

    fn accepts(_: &postgres::types::Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

/// A result row of either backend.
pub(super) enum Row<'r> {
    Sqlite(&'r rusqlite::Row<'r>),
    Pg(&'r postgres::Row),
}

impl<'r> Row<'r> {
    pub fn int(&self, i: usize) -> DbResult<i64> {
        self.opt_int(i)?
            .ok_or_else(|| DbError::Other(format!("column {i}: unexpected NULL")))
    }

    pub fn opt_int(&self, i: usize) -> DbResult<Option<i64>> {
        match self {
            Row::Sqlite(row) => Ok(row.get(i)?),
            Row::Pg(row) => {
                use postgres::types::Type;
                let ty = row.columns()[i].type_();
                Ok(if *ty == Type::INT4 {
                    row.try_get::<_, Option<i32>>(i)?.map(i64::from)
                } else if *ty == Type::BOOL {
                    row.try_get::<_, Option<bool>>(i)?.map(i64::from)
                } else {
                    row.try_get(i)?
                })
            }
        }
    }

    pub fn text(&self, i: usize) -> DbResult<String> {
        self.opt_text(i)?
            .ok_or_else(|| DbError::Other(format!("column {i}: unexpected NULL")))
    }

    pub fn opt_text(&self, i: usize) -> DbResult<Option<String>> {
        match self {
            Row::Sqlite(row) => Ok(row.get(i)?),
            Row::Pg(row) => Ok(row.try_get(i)?),
        }
    }

    pub fn blob(&self, i: usize) -> DbResult<&'r [u8]> {
        self.opt_blob(i)?
            .ok_or_else(|| DbError::Other(format!("column {i}: unexpected NULL")))
    }

    pub fn opt_blob(&self, i: usize) -> DbResult<Option<&'r [u8]>> {
        match self {
            Row::Sqlite(row) => Ok(row
                .get_ref(i)?
                .as_blob_or_null()
                .map_err(rusqlite::Error::from)?),
            Row::Pg(row) => Ok(row.try_get(i)?),
        }
    }
}

/// `?N` parameters as PostgreSQL's `$N`.
fn pg_sql(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(|n| n.is_ascii_digit()) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

/// A migration's DDL in PostgreSQL's words.
pub(super) fn pg_ddl(sql: &str) -> String {
    sql.replace(
        "id INTEGER PRIMARY KEY",
        "id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
    )
    .replace("INTEGER", "BIGINT")
    .replace("BLOB", "BYTEA")
    .replace(" WITHOUT ROWID", "")
}

impl PgConn {
    fn statement(&mut self, sql: &str) -> DbResult<postgres::Statement> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(&pg_sql(sql))?;
        self.statements.insert(sql.to_string(), statement.clone());
        Ok(statement)
    }
}

fn pg_args<'a>(args: &'a [Arg<'a>]) -> Vec<&'a (dyn postgres::types::ToSql + Sync)> {
    args.iter()
        .map(|a| a as &(dyn postgres::types::ToSql + Sync))
        .collect()
}

impl Db {
    pub fn postgres(client: postgres::Client) -> Db {
        Db::Pg(Box::new(RefCell::new(PgConn {
            client,
            statements: HashMap::new(),
            lock: None,
        })))
    }

    /// Writes from now on check the state's lock `keeper` keeps.
    pub fn guard(&self, keeper: std::sync::Arc<dyn LockCheck>) {
        if let Db::Pg(pg) = self {
            pg.borrow_mut().lock = Some(keeper);
        }
    }

    /// Before a write: fails when the state's lock was lost for good; after
    /// this connection was lost (`reconnected`: the server may have
    /// restarted, and let the lock go), first makes sure it is held again.
    pub fn check_lock(&self, reconnected: bool) -> DbResult<()> {
        let Db::Pg(pg) = self else { return Ok(()) };
        let Some(keeper) = pg.borrow().lock.clone() else {
            return Ok(());
        };
        let checked = match keeper.lost() {
            Some(why) => Err(why),
            None if reconnected => keeper.check(),
            None => Ok(()),
        };
        checked.map_err(DbError::LockLost)
    }

    pub fn is_pg(&self) -> bool {
        matches!(self, Db::Pg(_))
    }

    /// Runs a statement; returns how many rows it changed.
    pub fn execute(&self, sql: &str, args: &[Arg]) -> DbResult<usize> {
        match self {
            Db::Sqlite(conn) => Ok(conn
                .prepare_cached(sql)?
                .execute(rusqlite::params_from_iter(args))?),
            Db::Pg(pg) => {
                let mut pg = pg.borrow_mut();
                let statement = pg.statement(sql)?;
                Ok(pg.client.execute(&statement, &pg_args(args))? as usize)
            }
        }
    }

    /// Whether `error` lost the connection (a server that stopped or went
    /// away): then a new one may succeed.
    pub fn lost(&self, error: &DbError) -> bool {
        let Db::Pg(pg) = self else { return false };
        if matches!(error, DbError::LockLost(_)) {
            return false;
        }
        if pg.borrow().client.is_closed() {
            return true;
        }
        match error {
            DbError::Pg(e) => connection_lost(e),
            DbError::LockLost(_) | DbError::Sqlite(_) | DbError::Other(_) => false,
        }
    }

    /// A new connection in place of a lost one.
    pub fn reconnect(&self, location: &PgLocation) -> DbResult<()> {
        let Db::Pg(pg) = self else { return Ok(()) };
        let client = location.connect()?;
        let mut pg = pg.borrow_mut();
        pg.client = client;
        pg.statements.clear();
        Ok(())
    }

    /// Statements without arguments, separated by `;`.
    pub fn batch(&self, sql: &str) -> DbResult<()> {
        match self {
            Db::Sqlite(conn) => Ok(conn.execute_batch(sql)?),
            Db::Pg(pg) => Ok(pg.borrow_mut().client.batch_execute(sql)?),
        }
    }

    /// Every row of a query, each read by `read`, streamed (a million
    /// targets are never all held as rows).
    pub fn query<T>(
        &self,
        sql: &str,
        args: &[Arg],
        mut read: impl FnMut(&Row) -> DbResult<T>,
    ) -> DbResult<Vec<T>> {
        let mut out = Vec::new();
        self.for_each(sql, args, |row| {
            out.push(read(row)?);
            Ok(())
        })?;
        Ok(out)
    }

    pub fn for_each(
        &self,
        sql: &str,
        args: &[Arg],
        mut each: impl FnMut(&Row) -> DbResult<()>,
    ) -> DbResult<()> {
        match self {
            Db::Sqlite(conn) => {
                let mut stmt = conn.prepare_cached(sql)?;
                let mut rows = stmt.query(rusqlite::params_from_iter(args))?;
                while let Some(row) = rows.next()? {
                    each(&Row::Sqlite(row))?;
                }
                Ok(())
            }
            Db::Pg(pg) => {
                use postgres::fallible_iterator::FallibleIterator;
                let mut pg = pg.borrow_mut();
                let statement = pg.statement(sql)?;
                let mut rows = pg.client.query_raw(&statement, pg_args(args))?;
                while let Some(row) = rows.next()? {
                    each(&Row::Pg(&row))?;
                }
                Ok(())
            }
        }
    }

    /// The first row of a query, if any.
    pub fn query_opt<T>(
        &self,
        sql: &str,
        args: &[Arg],
        read: impl FnMut(&Row) -> DbResult<T>,
    ) -> DbResult<Option<T>> {
        Ok(self.query(sql, args, read)?.into_iter().next())
    }

    /// Runs `work` in a write transaction: committed when it returns `Ok`,
    /// rolled back otherwise. Writers are serialized, on SQLite by its
    /// write lock taken at once (`BEGIN IMMEDIATE`: runs writing together
    /// wait for each other instead of failing when a read turns into a
    /// write), on PostgreSQL by a transaction advisory lock, so that what
    /// a writer read (a claim) still holds when it writes.
    pub fn transaction<T>(&self, work: impl FnOnce(&Db) -> DbResult<T>) -> DbResult<T> {
        match self {
            Db::Sqlite(_) => self.batch("BEGIN IMMEDIATE")?,
            Db::Pg(_) => self.batch(&format!(
                "BEGIN; SELECT pg_advisory_xact_lock({WRITERS_LOCK})"
            ))?,
        }
        match work(self) {
            Ok(value) => {
                self.batch("COMMIT")?;
                Ok(value)
            }
            Err(e) => {
                let _ = self.batch("ROLLBACK");
                Err(e)
            }
        }
    }
}
