//! `chronon-build validate`: every config loads, or every problem is listed.

use clap::Args;

use super::{Format, Global, Workspace, print_json};
use crate::config::ConfigErrors;
use crate::error::{Error, Exit};

#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

#[derive(serde::Serialize)]
struct Report<'a> {
    ok: bool,
    configs: usize,
    problems: Vec<ProblemJson<'a>>,
    notes: Vec<String>,
}

#[derive(serde::Serialize)]
struct ProblemJson<'a> {
    file: &'a str,
    path: &'a str,
    message: &'a str,
}

pub fn run(global: &Global, args: &ValidateArgs) -> Result<Exit, Error> {
    let loaded = Workspace::load_strict(global).and_then(|ws| {
        ws.repo.require_configs().map_err(Error::Config)?;
        Ok(ws)
    });
    let problems = match loaded {
        Ok(ws) => {
            let mut notes = ws.repo.notes.clone();
            notes.extend(ws.graph.notes.iter().cloned());
            match args.format {
                Format::Json => print_json(&Report {
                    ok: true,
                    configs: ws.repo.configs.len(),
                    problems: Vec::new(),
                    notes,
                }),
                Format::Text => {
                    for note in &notes {
                        println!("note: {note}");
                    }
                    println!(
                        "ok: {} configs, {} graph nodes",
                        ws.repo.configs.len(),
                        ws.graph.nodes.len()
                    );
                }
            }
            return Ok(Exit::Ok);
        }
        Err(Error::Config(ConfigErrors(problems))) => problems,
        Err(other) => return Err(other),
    };
    match args.format {
        Format::Json => {
            let problems = problems
                .iter()
                .map(|p| ProblemJson {
                    file: &p.file,
                    path: &p.path,
                    message: &p.message,
                })
                .collect();
            print_json(&Report {
                ok: false,
                configs: 0,
                problems,
                notes: Vec::new(),
            });
        }
        Format::Text => {
            for problem in &problems {
                errln!("{problem}");
            }
            errln!(
                "{} problem{} found",
                problems.len(),
                if problems.len() == 1 { "" } else { "s" }
            );
        }
    }
    Ok(Exit::Invalid)
}
