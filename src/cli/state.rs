//! `state info` and `state copy`: the state itself, on either backend.

use clap::{Args, Subcommand};

use super::{Format, Global, print_json, print_out};
use crate::error::{Error, Exit};
use crate::store::{StateLocation, StateStore};

#[derive(Args, Debug)]
pub struct StateArgs {
    #[command(subcommand)]
    pub command: StateCommand,
}

#[derive(Subcommand, Debug)]
pub enum StateCommand {
    /// Backend, schema version, size, runs, targets and active claims.
    Info {
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Copy every recorded row from one state to another, empty one (a
    /// SQLite file to PostgreSQL and back), then check both hold the same.
    Copy {
        /// The state to copy: a file path, sqlite:///path or postgresql://...
        from: String,
        /// The state to copy into, which must be empty (created when missing).
        to: String,
        /// Wait for either state's lock instead of failing when a run holds it.
        #[arg(long)]
        wait_lock: bool,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
}

pub fn run(global: &Global, args: &StateArgs) -> Result<Exit, Error> {
    match &args.command {
        StateCommand::Info { format } => info(global, *format),
        StateCommand::Copy {
            from,
            to,
            wait_lock,
            format,
        } => copy(global, from, to, *wait_lock, *format),
    }
}

fn info(global: &Global, format: Format) -> Result<Exit, Error> {
    let location = super::own_state(global)?;
    let Some(store) = StateStore::open_read_at(&location)? else {
        return Err(Error::Usage(format!(
            "{}: no state there yet",
            location.name()
        )));
    };
    let info = store.info()?;
    if format == Format::Json {
        print_json(&info);
        return Ok(Exit::Ok);
    }
    let mut text = format!(
        "backend: {}\nlocation: {}\nschema version: {}\nsize: {} bytes\nruns: {}\ntargets: {}\n",
        info.backend, info.location, info.schema_version, info.size_bytes, info.runs, info.targets
    );
    match &info.claims {
        None => text.push_str("claims: none (schema before 7)\n"),
        Some(claims) => {
            text.push_str(&format!("active claims: {}\n", claims.len()));
            for c in claims {
                text.push_str(&format!(
                    "  {} run {} on host {} (pid {}){}\n",
                    c.target,
                    c.run,
                    c.host,
                    c.pid,
                    if c.held { "" } else { ", lapsed" }
                ));
            }
        }
    }
    print_out(&text);
    Ok(Exit::Ok)
}

/// A state named on the command line: a URL, or a file path.
fn location(what: &str, text: &str) -> Result<StateLocation, Error> {
    if text.contains("://") {
        let cwd = std::env::current_dir().unwrap_or_default();
        StateLocation::parse(text, &cwd).map_err(|e| Error::Usage(format!("{what}: {e}")))
    } else {
        Ok(StateLocation::File(super::absolute(std::path::Path::new(
            text,
        ))))
    }
}

fn copy(_: &Global, from: &str, to: &str, wait: bool, format: Format) -> Result<Exit, Error> {
    let (from, to) = (location("FROM", from)?, location("TO", to)?);
    if from.name() == to.name() {
        return Err(Error::Usage(format!(
            "FROM and TO are both {}",
            from.name()
        )));
    }
    let _from_lock = crate::run::lock::acquire_at(&from, crate::run::lock::Mode::Exclusive, wait)?;
    let source = StateStore::open_read_at(&from)?
        .ok_or_else(|| Error::Usage(format!("FROM {}: no state there", from.name())))?;
    let _to_lock = crate::run::lock::acquire_at(&to, crate::run::lock::Mode::Exclusive, wait)?;
    let mut target = StateStore::open_at(&to)?;
    if !target.is_empty()? {
        return Err(Error::Usage(format!(
            "TO {}: already holds a state; copy into an empty one",
            to.name()
        )));
    }
    let counts = source.copy_to(&mut target)?;
    if format == Format::Json {
        #[derive(serde::Serialize)]
        struct Copied {
            from: String,
            to: String,
            verified: bool,
            rows: std::collections::BTreeMap<&'static str, i64>,
        }
        print_json(&Copied {
            from: from.name(),
            to: to.name(),
            verified: true,
            rows: counts.into_iter().collect(),
        });
        return Ok(Exit::Ok);
    }
    let rows: Vec<String> = counts.iter().map(|(t, n)| format!("{t} {n}")).collect();
    print_out(&format!(
        "copied {} to {} and verified: {}\n",
        from.name(),
        to.name(),
        rows.join(", ")
    ));
    Ok(Exit::Ok)
}
