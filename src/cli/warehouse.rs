//! `chronon-build warehouse`: load, list, show and export tables of the
//! embedded SQLite warehouse.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{Format, Global, parse_day, print_json};
use crate::error::{Error, Exit};
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
        /// Output format of the summary.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// List tables, or one table's partitions, with row counts and fingerprints.
    Ls {
        /// A table, e.g. raw.purchases, to list its partitions [default: list the tables].
        table: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Print the rows of one partition.
    Show {
        /// The table, e.g. raw.purchases.
        table: String,
        /// The partition (the day in the table's partition column).
        #[arg(long, value_parser = parse_day, value_name = "YYYY-MM-DD")]
        ds: Day,
        /// At most this many rows.
        #[arg(long, default_value_t = 20, value_name = "N")]
        limit: usize,
        /// Output format: an aligned table that fits the terminal, JSON
        /// objects, or CSV with a header row (values exact in both).
        #[arg(long, value_enum, default_value = "text")]
        format: ShowFormat,
    },
    /// Recompute every partition's fingerprint from its rows and check each
    /// file's integrity; correct the catalog where rows changed behind it.
    /// Exit 1 when any partition differed, 0 when none, 2 on errors.
    Verify {
        /// Tables to verify, e.g. raw.purchases [default: every table].
        tables: Vec<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Write one partition as CSV to standard output.
    Export {
        /// The table, e.g. raw.purchases.
        table: String,
        /// The partition (the day in the table's partition column).
        #[arg(long, value_parser = parse_day, value_name = "YYYY-MM-DD")]
        ds: Day,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ShowFormat {
    Text,
    Json,
    Csv,
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
    Ok(TableName::parse(text)?)
}

pub fn run(global: &Global, args: &WarehouseArgs) -> Result<Exit, Error> {
    let warehouse = open(global)?;
    match &args.command {
        WarehouseCommand::Import {
            table,
            file,
            partition_column,
            format,
        } => import(&warehouse, table, file, partition_column, *format),
        WarehouseCommand::Ls { table, format } => ls(&warehouse, table.as_deref(), *format),
        WarehouseCommand::Show {
            table,
            ds,
            limit,
            format,
        } => show(&warehouse, table, *ds, *limit, *format),
        WarehouseCommand::Verify { tables, format } => verify(&warehouse, tables, *format),
        WarehouseCommand::Export { table, ds } => {
            let name = table_name(table)?;
            let (columns, rows) = read_partition(&warehouse, &name, *ds, None)?;
            write_csv(&columns, &rows)?;
            Ok(Exit::Ok)
        }
    }
}

/// `warehouse import`: a file's rows replace the partitions they hold.
fn import(
    warehouse: &Warehouse,
    table: &str,
    file: &std::path::Path,
    partition_column: &str,
    format: Format,
) -> Result<Exit, Error> {
    let name = table_name(table)?;
    let rows = warehouse::read_file(file)?;
    let written = warehouse
        .write_partitions(&name, &rows, Some(partition_column))
        .map_err(|e| warehouse::WarehouseError::Import {
            path: file.display().to_string(),
            source: Box::new(e),
        })?;
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
    Ok(Exit::Ok)
}

/// `warehouse ls`: one table's partitions, or every table's.
fn ls(warehouse: &Warehouse, table: Option<&str>, format: Format) -> Result<Exit, Error> {
    let listing: Vec<(String, Vec<PartitionEntry>)> = match table {
        Some(table) => {
            let name = table_name(table)?;
            vec![(
                name.namespace.clone(),
                warehouse.partitions(&name).map_err(Error::Warehouse)?,
            )]
        }
        None => warehouse.all_partitions().map_err(Error::Warehouse)?,
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
            let only: Vec<PartitionEntry> = entries.iter().map(|(_, e)| (*e).clone()).collect();
            print!("{}", partition_lines(&only));
        }
        (Format::Text, None) => print!("{}", table_lines(&entries)),
    }
    Ok(Exit::Ok)
}

/// `warehouse show`: one partition's rows.
fn show(
    warehouse: &Warehouse,
    table: &str,
    ds: Day,
    limit: usize,
    format: ShowFormat,
) -> Result<Exit, Error> {
    let name = table_name(table)?;
    let (columns, rows) = read_partition(warehouse, &name, ds, Some(limit))?;
    match format {
        ShowFormat::Csv => write_csv(&columns, &rows)?,
        ShowFormat::Json => print_json(
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
        ShowFormat::Text => print!("{}", grid(&columns, &rows, terminal_width())),
    }
    Ok(Exit::Ok)
}

/// `warehouse verify`: every partition's fingerprint recomputed; the
/// catalog corrected where it differed, which fails the command.
fn verify(warehouse: &Warehouse, tables: &[String], format: Format) -> Result<Exit, Error> {
    let names = tables
        .iter()
        .map(|t| table_name(t))
        .collect::<Result<Vec<_>, _>>()?;
    let found = warehouse.verify(&names).map_err(Error::Warehouse)?;
    match format {
        Format::Json => print_json(&found),
        Format::Text => {
            let mut text = String::new();
            for m in &found {
                let short = |f: &str| f.chars().take(12).collect::<String>();
                text.push_str(&match (&m.catalog_fingerprint, m.catalog_rows) {
                    (Some(old), Some(rows)) => format!(
                        "{} {}: {rows} -> {} row(s), fingerprint {} -> {} (catalog corrected)\n",
                        m.table,
                        m.partition,
                        m.rows,
                        short(old),
                        short(&m.fingerprint)
                    ),
                    _ => format!(
                        "{} {}: {} row(s) the catalog did not list (added)\n",
                        m.table, m.partition, m.rows
                    ),
                });
            }
            text.push_str(&format!(
                "{} partition(s) differed from the catalog\n",
                found.len()
            ));
            super::print_out(&text);
        }
    }
    Ok(if found.is_empty() {
        Exit::Ok
    } else {
        Exit::Failed
    })
}

type Table = (Vec<String>, Vec<Vec<rusqlite::types::Value>>);

/// One partition's rows; a partition the catalog does not have is an error
/// (an empty partition that was written has no rows and is not).
fn read_partition(
    warehouse: &Warehouse,
    name: &TableName,
    ds: Day,
    limit: Option<usize>,
) -> Result<Table, Error> {
    let failed = Error::Warehouse;
    let read = warehouse.read(name, ds, limit).map_err(failed)?;
    let partitions = warehouse.partitions(name).map_err(failed)?;
    let wanted = ds.to_string();
    if !partitions.iter().any(|p| p.partition == wanted) {
        let listed = match (partitions.first(), partitions.last()) {
            (Some(first), Some(last)) => format!(
                "it has {} partition(s), {}..{}; `chronon-build warehouse ls {name}` lists them",
                partitions.len(),
                first.partition,
                last.partition
            ),
            _ => "it has no partition".to_string(),
        };
        return Err(Error::Usage(format!(
            "{name}: no partition {wanted}: {listed}"
        )));
    }
    Ok(read)
}

fn write_csv(columns: &[String], rows: &[Vec<rusqlite::types::Value>]) -> Result<(), Error> {
    let mut writer = csv::Writer::from_writer(std::io::stdout().lock());
    let io = |e: csv::Error| Error::Io(format!("writing CSV: {e}"));
    writer.write_record(columns).map_err(io)?;
    for row in rows {
        writer
            .write_record(row.iter().map(warehouse::text))
            .map_err(io)?;
    }
    writer
        .flush()
        .map_err(|e| Error::Io(format!("writing CSV: {e}")))
}

/// The width the table fits: `COLUMNS`, else the terminal's when standard
/// output is one, else 120 (the text format is for people; machines take
/// `--format csv` or `json`, which are never cut).
fn terminal_width() -> u16 {
    if let Some(columns) = std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()) {
        return columns;
    }
    // SAFETY: TIOCGWINSZ fills the winsize it is given; a zeroed winsize is
    // a valid value of that plain C struct.
    let tty = unsafe {
        let mut size: libc::winsize = std::mem::zeroed();
        (libc::isatty(libc::STDOUT_FILENO) == 1
            && libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) == 0
            && size.ws_col > 0)
            .then_some(size.ws_col)
    };
    tty.unwrap_or(120)
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

/// Rows as an aligned table (`comfy-table`) when it fits `width`; a wider
/// table is shown expanded, one block per row with a line per column (as
/// psql's `\\x`), rather than wrapped into unreadable slivers. Nulls print
/// as `NULL`, reals to 15 significant digits (so a sum's
/// `1125.1399999999999` reads `1125.14`; JSON and CSV keep every digit).
fn grid(columns: &[String], rows: &[Vec<rusqlite::types::Value>], width: u16) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            row.iter()
                .map(|v| match v {
                    rusqlite::types::Value::Null => "NULL".to_string(),
                    rusqlite::types::Value::Real(r) => readable_real(*r),
                    v => warehouse::text(v),
                })
                .collect()
        })
        .collect();
    let natural: usize = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .chain([c.chars().count()])
                .max()
                .unwrap_or(0)
                + 2
        })
        .sum();
    let mut out = String::new();
    if natural > usize::from(width) {
        let name_width = columns.iter().map(|c| c.chars().count()).max().unwrap_or(0);
        // A value longer than the room left wraps under itself.
        let room = usize::from(width).saturating_sub(name_width + 3).max(16);
        for (n, row) in cells.iter().enumerate() {
            out.push_str(&format!("-[ row {} ]\n", n + 1));
            for (column, value) in columns.iter().zip(row) {
                let chars: Vec<char> = value.chars().collect();
                let mut pieces = chars.chunks(room).map(|c| c.iter().collect::<String>());
                let first = pieces.next().unwrap_or_default();
                let pad = name_width - column.chars().count();
                out.push_str(&format!("{column}{} | {first}\n", " ".repeat(pad)));
                for piece in pieces {
                    out.push_str(&format!("{} | {piece}\n", " ".repeat(name_width)));
                }
            }
        }
    } else {
        let mut table = comfy_table::Table::new();
        table
            .load_style(comfy_table::presets::NOTHING)
            .set_header(columns.iter().map(comfy_table::Cell::new));
        for row in &cells {
            table.add_row(row);
        }
        for column in table.column_iter_mut() {
            column.set_padding((0, 2));
        }
        out.extend(table.lines().map(|line| format!("{}\n", line.trim_end())));
    }
    out.push_str(&format!("({} row(s))\n", rows.len()));
    out
}

/// A real to 15 significant digits, shortest form.
fn readable_real(value: f64) -> String {
    format!("{value:.14e}")
        .parse::<f64>()
        .unwrap_or(value)
        .to_string()
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
