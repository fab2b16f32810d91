//! `chronon-build warehouse`: load, list, show and export tables of the
//! embedded SQLite warehouse.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{Format, Global, parse_day, print_json};
use crate::error::{Error, exit};
use crate::partition::Day;
use crate::settings::{Settings, WarehouseKind};
use crate::warehouse::{self, PartitionEntry, TableName, Warehouse};

#[derive(Args, Debug)]
pub struct WarehouseArgs {
    #[command(subcommand)]
    pub command: WarehouseCommand,
}

#[derive(Subcommand, Debug)]
pub enum WarehouseCommand {
    /// Load a CSV file (with a header row) or a JSON-lines file into a table, replacing the partitions it contains.
    Import {
        /// The table, e.g. raw.purchases (a table with no namespace is in `default`).
        table: String,
        /// A .csv or .jsonl file.
        file: PathBuf,
        /// The column holding each row's partition (yyyy-MM-dd).
        #[arg(long, default_value = "ds", value_name = "NAME")]
        partition_column: String,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// List tables, or one table's partitions, with row counts and fingerprints.
    Ls {
        table: Option<String>,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Print the rows of one partition.
    Show {
        table: String,
        #[arg(long, value_parser = parse_day, value_name = "YYYY-MM-DD")]
        ds: Day,
        /// At most this many rows.
        #[arg(long, default_value_t = 20, value_name = "N")]
        limit: usize,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Write one partition as CSV to standard output.
    Export {
        table: String,
        #[arg(long, value_parser = parse_day, value_name = "YYYY-MM-DD")]
        ds: Day,
    },
}

fn open(global: &Global) -> Result<Warehouse, Error> {
    let mut settings = Settings::load(&global.repo)?;
    if let Some(root) = &global.warehouse {
        settings.warehouse.root = Some(super::absolute(root));
    }
    if settings.warehouse.kind != WarehouseKind::Sqlite {
        return Err(Error::Usage(
            "warehouse commands work on the embedded warehouse: warehouse.kind is not \"sqlite\" in chronon-build.toml".into(),
        ));
    }
    Ok(Warehouse::new(
        settings.resolve(&global.repo, &settings.warehouse.root()),
        &settings.warehouse.partition_column,
    ))
}

fn table_name(text: &str) -> Result<TableName, Error> {
    TableName::parse(text).map_err(|e| Error::Usage(e.0))
}

pub fn run(global: &Global, args: &WarehouseArgs) -> Result<i32, Error> {
    let warehouse = open(global)?;
    let failed = |e: warehouse::WarehouseError| Error::Io(e.0);
    match &args.command {
        WarehouseCommand::Import {
            table,
            file,
            partition_column,
            format,
        } => {
            let name = table_name(table)?;
            let rows = warehouse::read_file(file).map_err(|e| Error::Usage(e.0))?;
            let written = warehouse
                .write_partitions(&name, &rows, Some(partition_column))
                .map_err(|e| Error::Usage(format!("{}: {}", file.display(), e.0)))?;
            match format {
                Format::Json => print_json(&serde_json::json!({
                    "table": name.to_string(),
                    "rows": rows.rows.len(),
                    "partitions": written,
                })),
                Format::Text => {
                    println!(
                        "imported {} rows into {name}: {} partition(s)",
                        rows.rows.len(),
                        written.len()
                    );
                    print!("{}", partition_lines(&written));
                }
            }
        }
        WarehouseCommand::Ls { table, format } => {
            let listing: Vec<(String, Vec<PartitionEntry>)> = match table {
                Some(table) => {
                    let name = table_name(table)?;
                    vec![(
                        name.namespace.clone(),
                        warehouse.partitions(&name).map_err(failed)?,
                    )]
                }
                None => warehouse.all_partitions().map_err(failed)?,
            };
            let entries: Vec<(String, &PartitionEntry)> = listing
                .iter()
                .flat_map(|(ns, entries)| {
                    entries
                        .iter()
                        .map(move |e| (format!("{ns}.{}", e.table), e))
                })
                .collect();
            match (format, table) {
                (Format::Json, _) => print_json(
                    &entries
                        .iter()
                        .map(|(table, e)| {
                            serde_json::json!({
                                "table": table,
                                "partition": e.partition,
                                "rows": e.rows,
                                "fingerprint": e.fingerprint,
                                "written_at": e.written_at,
                            })
                        })
                        .collect::<Vec<_>>(),
                ),
                (Format::Text, Some(_)) => {
                    let only: Vec<PartitionEntry> =
                        entries.iter().map(|(_, e)| (*e).clone()).collect();
                    print!("{}", partition_lines(&only));
                }
                (Format::Text, None) => print!("{}", table_lines(&entries)),
            }
        }
        WarehouseCommand::Show {
            table,
            ds,
            limit,
            format,
        } => {
            let name = table_name(table)?;
            let (columns, rows) = warehouse.read(&name, *ds, Some(*limit)).map_err(failed)?;
            match format {
                Format::Json => print_json(
                    &rows
                        .iter()
                        .map(|row| {
                            columns
                                .iter()
                                .zip(row)
                                .map(|(c, v)| (c.clone(), warehouse::json(v)))
                                .collect::<serde_json::Map<_, _>>()
                        })
                        .collect::<Vec<_>>(),
                ),
                Format::Text => print!("{}", grid(&columns, &rows)),
            }
        }
        WarehouseCommand::Export { table, ds } => {
            let name = table_name(table)?;
            let (columns, rows) = warehouse.read(&name, *ds, None).map_err(failed)?;
            let mut writer = csv::Writer::from_writer(std::io::stdout().lock());
            let io = |e: csv::Error| Error::Io(format!("writing CSV: {e}"));
            writer.write_record(&columns).map_err(io)?;
            for row in &rows {
                writer
                    .write_record(row.iter().map(warehouse::text))
                    .map_err(io)?;
            }
            writer
                .flush()
                .map_err(|e| Error::Io(format!("writing CSV: {e}")))?;
        }
    }
    Ok(exit::OK)
}

fn partition_lines(entries: &[PartitionEntry]) -> String {
    let width = entries
        .iter()
        .map(|e| e.rows.to_string().len())
        .max()
        .unwrap_or(0);
    entries
        .iter()
        .map(|e| {
            format!(
                "  {}  {:>width$} rows  {}  written {}\n",
                e.partition,
                e.rows,
                &e.fingerprint[..12.min(e.fingerprint.len())],
                timestamp(e.written_at)
            )
        })
        .collect()
}

/// One line per table: its partitions as a range, and its rows.
fn table_lines(entries: &[(String, &PartitionEntry)]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < entries.len() {
        let table = &entries[i].0;
        let group: Vec<&PartitionEntry> = entries[i..]
            .iter()
            .take_while(|(t, _)| t == table)
            .map(|(_, e)| *e)
            .collect();
        i += group.len();
        let rows: u64 = group.iter().map(|e| e.rows).sum();
        out.push_str(&format!(
            "{table}  {} partition(s) {}..{}  {rows} rows\n",
            group.len(),
            group[0].partition,
            group[group.len() - 1].partition
        ));
    }
    out
}

/// Rows as an aligned text grid; nulls print as `NULL`.
fn grid(columns: &[String], rows: &[Vec<rusqlite::types::Value>]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            row.iter()
                .map(|v| match v {
                    rusqlite::types::Value::Null => "NULL".to_string(),
                    v => warehouse::text(v),
                })
                .collect()
        })
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .chain([c.chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |values: &[String]| -> String {
        let padded: Vec<String> = values
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(columns);
    for row in &cells {
        out.push_str(&line(row));
    }
    out.push_str(&format!("({} row(s))\n", cells.len()));
    out
}

/// Unix seconds as `yyyy-MM-dd HH:MM:SS UTC`.
fn timestamp(unix: i64) -> String {
    let day = Day(unix.div_euclid(86_400) as i32);
    let secs = unix.rem_euclid(86_400);
    format!(
        "{day} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}
