//! The tool's own documentation, generated from the clap definitions so it
//! cannot drift: `help`, shell completions (`clap_complete`) and man pages
//! (`clap_mangen`).

use std::path::PathBuf;

use clap::{Args, CommandFactory};

use super::Cli;
use crate::error::{Error, Exit};

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Args, Debug)]
pub struct ManArgs {
    /// Write chronon-build.1 and one page per subcommand
    /// (chronon-build-run.1, ...) into this folder instead.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct HelpArgs {
    /// The subcommand, e.g. `run` or `warehouse show` [default: the top level].
    #[arg(value_name = "COMMAND")]
    pub command: Vec<String>,
}

pub fn completions(args: &CompletionsArgs) -> Result<Exit, Error> {
    let mut cmd = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, BIN, &mut script);
    let script = String::from_utf8_lossy(&script);
    let script = match args.shell {
        clap_complete::Shell::Bash => bash_arms_fixed(&script),
        _ => script.into_owned(),
    };
    super::print_out(&script);
    Ok(Exit::Ok)
}

const BIN: &str = "chronon-build";

/// clap_complete's bash script, with its subcommand arms spelled as its
/// dispatch loop spells them. For a hyphenated binary name the loop builds
/// `chronon__build__subcmd__plan` while the arms read
/// `chronon__subcmd__build__subcmd__plan`, so no option of a subcommand
/// ever completed (clap-rs/clap issue #6421, fix proposed in pull request
/// #6428: "The loop escapes the bin name and each subcommand separately
/// ... The arms escaped the path in a single pass").
fn bash_arms_fixed(script: &str) -> String {
    let sep = "__subcmd__";
    let loop_name = format!("{}{sep}", BIN.replace('-', "__"));
    let arm_name = format!("{}{sep}", BIN.replace('-', sep));
    script.replace(&arm_name, &loop_name)
}

pub fn man(args: &ManArgs) -> Result<Exit, Error> {
    let cmd = Cli::command();
    match &args.out {
        None => {
            let mut out = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut out)
                .map_err(|e| Error::Io(format!("man: {e}")))?;
            super::print_out(&String::from_utf8_lossy(&out));
        }
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::Io(format!("--out {}: {e}", dir.display())))?;
            clap_mangen::generate_to(cmd, dir)
                .map_err(|e| Error::Io(format!("--out {}: {e}", dir.display())))?;
            errln!("wrote man pages to {}", dir.display());
        }
    }
    Ok(Exit::Ok)
}

pub fn help(args: &HelpArgs) -> Result<Exit, Error> {
    let mut cmd = Cli::command();
    cmd.build();
    let mut at = &mut cmd;
    for name in &args.command {
        let Some(sub) = at.find_subcommand_mut(name) else {
            return Err(Error::Usage(format!(
                "help {}: no such command; `chronon-build help` lists them",
                args.command.join(" ")
            )));
        };
        at = sub;
    }
    at.print_long_help()
        .map_err(|e| Error::Io(format!("help: {e}")))?;
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every option and argument of every command says what it is.
    #[test]
    fn every_argument_has_help_text() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_about().is_none() {
                    missing.push(format!("{path} {} (no about)", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut cmd = Cli::command();
        cmd.build();
        let mut missing = Vec::new();
        walk(&cmd, "chronon-build", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:#?}");
    }
}
