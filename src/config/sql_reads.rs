//! The tables a staging query reads, against the ones it declares.
//!
//! A staging query's inputs are what it declares (`metaData.dependencies`,
//! Zipline's `metaData.executionInfo.tableDependencies`): they make its
//! keys, so a change to a table it reads without declaring it would never
//! rerun it. Its Spark SQL is parsed here (`sqlparser`, Spark's dialect,
//! then Hive's) after its templates (`{{ start_date }}`) are replaced by a
//! placeholder, and every table in a `FROM` or a join, in subqueries too,
//! is a read; names a `WITH` clause defines are not, and neither are
//! table-valued functions (`range(10)`). SQL neither dialect reads is said
//! in a note: the local engine still sees its reads when it runs it.
//!
//! A query that declares nothing at all keeps the graph's note ("declares no
//! inputs") and is not refused: Chronon accepts such a query, and its own
//! compiler writes them (the kaggle sample in `testdata/corpus`).

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use sqlparser::ast::{TableFactor, Visit, Visitor};
use sqlparser::dialect::{Dialect, HiveDialect, SparkSqlDialect};
use sqlparser::parser::Parser;

use super::{Config, Layout, Problem, StagingQuery};

/// What replaces a template; an identifier in expressions, plain text in
/// string literals.
const PLACEHOLDER: &str = "chronon_template";

/// What checking one staging query found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Check {
    /// One per table read but not declared.
    pub problems: Vec<Problem>,
    /// The query could not be parsed.
    pub note: Option<String>,
}

/// Checks a staging query's reads against its declarations; nothing for
/// other configs.
pub fn check(config: &Config, layout: Layout) -> Check {
    let super::Body::StagingQuery(sq) = &config.body else {
        return Check::default();
    };
    let read = match tables_read(&sq.query) {
        Ok(read) => read,
        Err(e) => {
            return Check {
                problems: Vec::new(),
                note: Some(format!(
                    "{}: query: not read as Spark SQL ({e}); the tables it reads are not checked \
                     against its dependencies",
                    config.path
                )),
            };
        }
    };
    let declared = declared_tables(sq);
    if declared.is_empty() {
        // The graph's note says so ("declares no inputs").
        return Check::default();
    }
    let problems = read
        .iter()
        .filter(|table| !is_declared(table, &declared))
        .map(|table| Problem {
            file: config.path.clone(),
            path: "query".into(),
            message: undeclared_message(table, sq, layout),
        })
        .collect();
    Check {
        problems,
        note: None,
    }
}

/// The message for a table read but not declared: the table, and where to
/// declare it. The local engine says the same.
pub fn undeclared_message(table: &str, sq: &StagingQuery, layout: Layout) -> String {
    format!(
        "reads {table}, which it does not declare: a change to {table} would never rerun it; {}",
        where_to_declare_table(table, sq, layout)
    )
}

fn where_to_declare_table(table: &str, sq: &StagingQuery, layout: Layout) -> String {
    if uses_table_dependencies(sq, layout) {
        format!(
            "declare it in metaData.executionInfo.tableDependencies \
             ({{\"tableInfo\": {{\"table\": \"{table}\"}}}})"
        )
    } else {
        format!(
            "declare it in metaData.dependencies \
             (\"{table}/ds={{{{ ds }}}}\", or the compiler's {{\"name\", \"spec\"}} form)"
        )
    }
}

fn uses_table_dependencies(sq: &StagingQuery, layout: Layout) -> bool {
    !sq.meta.execution_info.table_dependencies.is_empty()
        || (layout == Layout::Zipline && sq.meta.dependencies.is_empty())
}

/// The tables a staging query declares, lowercased, without
/// sub-partitions.
pub fn declared_tables(sq: &StagingQuery) -> Vec<String> {
    sq.meta
        .dependencies
        .iter()
        .map(|d| &d.table.table)
        .chain(
            sq.meta
                .execution_info
                .table_dependencies
                .iter()
                .map(|d| &d.table.table),
        )
        .map(|t| t.trim().to_ascii_lowercase())
        .collect()
}

/// Whether `table` (as read, possibly unqualified: `t`, `db.t`,
/// `catalog.db.t`) is one of `declared`: the shorter name must end the
/// longer one, part by part, since Spark resolves a name without its
/// database in the session's current database, which the config does not
/// say.
pub fn is_declared(table: &str, declared: &[String]) -> bool {
    let read: Vec<&str> = table.split('.').collect();
    declared.iter().any(|d| {
        let d: Vec<&str> = d.split('.').collect();
        let n = read.len().min(d.len());
        read[read.len() - n..]
            .iter()
            .zip(&d[d.len() - n..])
            .all(|(a, b)| a.eq_ignore_ascii_case(b))
    })
}

/// The tables `sql` reads, lowercased, `ns.table` as written; an error when
/// neither Spark's nor Hive's dialect parses it.
pub fn tables_read(sql: &str) -> Result<BTreeSet<String>, String> {
    let text = without_templates(sql);
    let dialects: [&dyn Dialect; 2] = [&SparkSqlDialect {}, &HiveDialect {}];
    let mut first_error = None;
    for dialect in dialects {
        match Parser::parse_sql(dialect, &text) {
            Ok(statements) => {
                let mut reads = Reads::default();
                let _ = statements.visit(&mut reads);
                return Ok(reads.tables());
            }
            Err(e) => {
                first_error.get_or_insert(e.to_string());
            }
        }
    }
    Err(first_error.unwrap_or_default())
}

/// `sql` with each `{{ ... }}` replaced by the placeholder.
fn without_templates(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(open) = rest.find("{{") {
        let Some(close) = rest[open..].find("}}") else {
            break;
        };
        out.push_str(&rest[..open]);
        out.push_str(PLACEHOLDER);
        rest = &rest[open + close + 2..];
    }
    out.push_str(rest);
    out
}

/// Collects table names and the names `WITH` clauses define.
#[derive(Default)]
struct Reads {
    tables: BTreeSet<String>,
    ctes: BTreeSet<String>,
}

impl Reads {
    /// The tables read: a one-part name a `WITH` clause defines is that
    /// clause's, not a table.
    fn tables(self) -> BTreeSet<String> {
        let ctes = self.ctes;
        self.tables
            .into_iter()
            .filter(|t| !ctes.contains(t))
            .collect()
    }
}

impl Visitor for Reads {
    type Break = ();

    fn pre_visit_query(&mut self, query: &sqlparser::ast::Query) -> ControlFlow<()> {
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                self.ctes.insert(cte.alias.name.value.to_ascii_lowercase());
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table {
            name, args: None, ..
        } = factor
        {
            let parts: Vec<String> = name
                .0
                .iter()
                .filter_map(|part| part.as_ident())
                .map(|ident| ident.value.to_ascii_lowercase())
                .collect();
            if !parts.is_empty() {
                self.tables.insert(parts.join("."));
            }
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reads(sql: &str) -> Vec<String> {
        tables_read(sql).unwrap().into_iter().collect()
    }

    #[test]
    fn joins_and_subqueries_are_reads_and_ctes_are_not() {
        assert_eq!(
            reads(
                "WITH recent AS (SELECT * FROM data.checkouts WHERE ds = '{{ end_date }}')
                 SELECT r.*, u.name FROM recent r
                 JOIN `data`.`Users` u ON r.user_id = u.user_id
                 LEFT JOIN (SELECT * FROM data.returns) x ON x.id = r.id
                 WHERE r.user_id IN (SELECT user_id FROM data.vips)
                   AND EXISTS (SELECT 1 FROM data.flags f WHERE f.id = r.id)
                   AND ds BETWEEN '{{ start_date }}' AND {{ latest_date }}"
            ),
            [
                "data.checkouts",
                "data.flags",
                "data.returns",
                "data.users",
                "data.vips"
            ]
        );
    }

    #[test]
    fn spark_constructs_parse() {
        assert_eq!(
            reads(
                "SELECT a, e FROM db.t LATERAL VIEW explode(arr) x AS e
                 UNION ALL SELECT id, 1 FROM range(10)"
            ),
            ["db.t"]
        );
        assert!(tables_read("SELEC nothing FROM").is_err());
    }

    fn staging_query(query: &str, dependencies: serde_json::Value) -> Config {
        let raw = serde_json::json!({
            "metaData": {"name": "t.sq", "team": "t", "outputNamespace": "t",
                         "dependencies": dependencies},
            "query": query,
        });
        let mut problems = Vec::new();
        let config = super::super::parse_value(
            super::super::ConfigKind::StagingQuery,
            raw,
            "production/staging_queries/t/sq",
            &mut problems,
        );
        assert_eq!(problems, []);
        config.unwrap()
    }

    #[test]
    fn an_undeclared_read_is_a_problem_and_unread_sql_a_note() {
        let deps = serde_json::json!(["data.checkouts/ds={{ ds }}"]);
        let sql = "SELECT * FROM data.checkouts JOIN data.users USING (user_id)";
        let found = check(&staging_query(sql, deps.clone()), Layout::Chronon);
        assert_eq!(found.problems.len(), 1);
        assert_eq!(found.problems[0].path, "query");
        assert!(
            found.problems[0]
                .message
                .starts_with("reads data.users, which it does not declare"),
            "{:?}",
            found.problems
        );
        assert!(found.problems[0].message.contains("metaData.dependencies"));

        let unread = check(&staging_query("SELEC * FRM x", deps), Layout::Chronon);
        assert_eq!(unread.problems, []);
        assert!(
            unread
                .note
                .as_deref()
                .is_some_and(|n| n.contains("query: not read as Spark SQL")),
            "{unread:?}"
        );

        let none = check(&staging_query(sql, serde_json::json!([])), Layout::Chronon);
        assert_eq!(none, Check::default(), "the graph notes it");
    }

    #[test]
    fn a_shorter_name_matches_the_end_of_a_longer_one() {
        let declared = vec!["data.users".to_string()];
        assert!(is_declared("users", &declared));
        assert!(is_declared("data.users", &declared));
        assert!(is_declared("spark_catalog.data.users", &declared));
        assert!(!is_declared("other.users", &declared));
        assert!(!is_declared("data.user", &declared));
    }
}
