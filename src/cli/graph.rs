//! `chronon-build graph`: the target graph as DOT, JSON or Mermaid.

use clap::{Args, ValueEnum};

use super::{Global, Workspace, print_json};
use crate::error::{Error, Exit};
use crate::graph::render;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    Dot,
    Json,
    /// A Mermaid flowchart, for pull requests and wikis.
    Mermaid,
}

#[derive(Args, Debug)]
pub struct GraphArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "dot")]
    pub format: GraphFormat,
    /// Only nodes of configs whose name matches this glob, e.g. 'sample_team.*'.
    #[arg(long, value_name = "GLOB")]
    pub select: Option<String>,
}

pub fn run(global: &Global, args: &GraphArgs) -> Result<Exit, Error> {
    let ws = Workspace::load(global)?;
    let selected = ws.select(args.select.as_deref())?;
    match args.format {
        GraphFormat::Dot => print!("{}", render::to_dot(&ws.graph, &selected)),
        GraphFormat::Json => print_json(&render::to_json(&ws.graph, &ws.repo, &selected)),
        GraphFormat::Mermaid => print!("{}", render::to_mermaid(&ws.graph, &selected)),
    }
    Ok(Exit::Ok)
}
