//! A repository's state opened by the tests, to read it and to damage it,
//! on whichever backend the tests keep it (`postgres::on_postgres`): the
//! repository's `state.db` on SQLite, its database on PostgreSQL. The
//! same SQL serves both (the schema's types are the same: `store::db`):
//! placeholders are written `?1`, `?2`, and become `$1`, `$2` there.

use std::path::{Path, PathBuf};

use crate::postgres;

pub enum StateDb {
    Sqlite(rusqlite::Connection),
    Pg(::postgres::Client),
}

/// A value bound to a placeholder, or read from a column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cell {
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
    Null,
}

impl Cell {
    pub fn int(&self) -> i64 {
        match self {
            Cell::Int(v) => *v,
            other => panic!("{other:?} is no integer"),
        }
    }

    pub fn text(&self) -> &str {
        match self {
            Cell::Text(v) => v,
            other => panic!("{other:?} is no text"),
        }
    }

    pub fn bytes(&self) -> &[u8] {
        match self {
            Cell::Bytes(v) => v,
            other => panic!("{other:?} is no blob"),
        }
    }
}

/// The repository's own state file (SQLite).
pub fn state_file(repo: &Path) -> PathBuf {
    repo.join(".chronon-build/state.db")
}

impl StateDb {
    /// The state `repo`'s commands keep.
    pub fn open(repo: &Path) -> StateDb {
        if postgres::on_postgres() {
            let url = postgres::state_url_for(repo);
            StateDb::Pg(::postgres::Client::connect(&url, ::postgres::NoTls).unwrap())
        } else {
            StateDb::Sqlite(rusqlite::Connection::open(state_file(repo)).unwrap())
        }
    }

    /// Every row `sql` selects.
    pub fn rows(&mut self, sql: &str, params: &[Cell]) -> Vec<Vec<Cell>> {
        match self {
            StateDb::Sqlite(conn) => {
                let mut stmt = conn.prepare(sql).unwrap();
                let columns = stmt.column_count();
                let params: Vec<rusqlite::types::Value> = params.iter().map(to_sqlite).collect();
                stmt.query_map(rusqlite::params_from_iter(params), |row| {
                    (0..columns)
                        .map(|i| {
                            Ok(match row.get_ref(i)? {
                                rusqlite::types::ValueRef::Integer(v) => Cell::Int(v),
                                rusqlite::types::ValueRef::Text(t) => {
                                    Cell::Text(String::from_utf8_lossy(t).into_owned())
                                }
                                rusqlite::types::ValueRef::Blob(b) => Cell::Bytes(b.to_vec()),
                                rusqlite::types::ValueRef::Null => Cell::Null,
                                rusqlite::types::ValueRef::Real(r) => {
                                    panic!("a real ({r}) in the state")
                                }
                            })
                        })
                        .collect()
                })
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
            }
            StateDb::Pg(client) => {
                let rows = with_pg_params(params, |refs| client.query(&dollars(sql), refs));
                rows.unwrap()
                    .iter()
                    .map(|row| (0..row.len()).map(|i| from_pg(row, i)).collect())
                    .collect()
            }
        }
    }

    /// The first column of the one row `sql` selects, as an integer.
    pub fn count(&mut self, sql: &str) -> i64 {
        self.one(sql, &[]).expect("a row").int()
    }

    /// The first column of the first row `sql` selects, if any.
    pub fn one(&mut self, sql: &str, params: &[Cell]) -> Option<Cell> {
        self.rows(sql, params)
            .into_iter()
            .next()
            .map(|mut row| row.swap_remove(0))
    }

    /// Runs one statement that changes the state.
    pub fn execute(&mut self, sql: &str, params: &[Cell]) {
        match self {
            StateDb::Sqlite(conn) => {
                let params: Vec<rusqlite::types::Value> = params.iter().map(to_sqlite).collect();
                conn.execute(sql, rusqlite::params_from_iter(params))
                    .unwrap();
            }
            StateDb::Pg(client) => {
                with_pg_params(params, |refs| client.execute(&dollars(sql), refs)).unwrap();
            }
        }
    }

    /// The schema version: SQLite's `user_version`, PostgreSQL's
    /// `schema_version` table (`store::schema`).
    pub fn version(&mut self) -> i64 {
        match self {
            StateDb::Sqlite(conn) => conn
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .unwrap(),
            StateDb::Pg(_) => self.count("SELECT max(version) FROM schema_version"),
        }
    }

    pub fn set_version(&mut self, version: i64) {
        match self {
            StateDb::Sqlite(conn) => conn.pragma_update(None, "user_version", version).unwrap(),
            StateDb::Pg(_) => self.execute(
                "UPDATE schema_version SET version = ?1",
                &[Cell::Int(version)],
            ),
        }
    }
}

/// A SQLite copy of `repo`'s state at `to`: `VACUUM INTO` on SQLite,
/// `chronon-build state copy` (which verifies what it copied) from
/// PostgreSQL.
pub fn copy_to_file(repo: &Path, to: &Path) {
    let _ = std::fs::remove_file(to);
    if postgres::on_postgres() {
        let url = postgres::state_url_for(repo);
        let out = crate::chronon_build(repo, &["state", "copy", &url, &to.display().to_string()]);
        assert_eq!(out.code, 0, "state copy: {}\n{}", out.stdout, out.stderr);
    } else {
        rusqlite::Connection::open(state_file(repo))
            .unwrap()
            .execute("VACUUM INTO ?1", [to.display().to_string()])
            .unwrap();
    }
}

/// Loses `repo`'s state, as deleting its file does: its next command
/// starts on an empty one.
pub fn lose(repo: &Path) {
    if postgres::on_postgres() {
        postgres::forget_state_of(repo);
    } else {
        let state = state_file(repo);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", state.display()));
        }
    }
}

/// `?N` placeholders as PostgreSQL's `$N`.
fn dollars(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

fn to_sqlite(cell: &Cell) -> rusqlite::types::Value {
    match cell {
        Cell::Int(v) => rusqlite::types::Value::Integer(*v),
        Cell::Text(t) => rusqlite::types::Value::Text(t.clone()),
        Cell::Bytes(b) => rusqlite::types::Value::Blob(b.clone()),
        Cell::Null => rusqlite::types::Value::Null,
    }
}

/// Runs `f` with `params` as the postgres client takes them.
fn with_pg_params<T>(
    params: &[Cell],
    f: impl FnOnce(&[&(dyn ::postgres::types::ToSql + Sync)]) -> T,
) -> T {
    let boxed: Vec<Box<dyn ::postgres::types::ToSql + Sync>> = params.iter().map(to_pg).collect();
    let refs: Vec<&(dyn ::postgres::types::ToSql + Sync)> =
        boxed.iter().map(|p| p.as_ref()).collect();
    f(&refs)
}

fn to_pg(cell: &Cell) -> Box<dyn ::postgres::types::ToSql + Sync> {
    match cell {
        Cell::Int(v) => Box::new(*v),
        Cell::Text(t) => Box::new(t.clone()),
        Cell::Bytes(b) => Box::new(b.clone()),
        Cell::Null => Box::new(Option::<i64>::None),
    }
}

fn from_pg(row: &::postgres::Row, i: usize) -> Cell {
    use ::postgres::types::Type;
    let ty = row.columns()[i].type_().clone();
    let cell = if ty == Type::INT8 {
        row.get::<_, Option<i64>>(i).map(Cell::Int)
    } else if ty == Type::INT4 {
        row.get::<_, Option<i32>>(i).map(|v| Cell::Int(v.into()))
    } else if ty == Type::TEXT || ty == Type::VARCHAR {
        row.get::<_, Option<String>>(i).map(Cell::Text)
    } else if ty == Type::BYTEA {
        row.get::<_, Option<Vec<u8>>>(i).map(Cell::Bytes)
    } else {
        panic!("a column of type {ty} in the state")
    };
    cell.unwrap_or(Cell::Null)
}
