//! Loading a repository of compiled Chronon configs.
//!
//! Two layouts exist and both load:
//! - Chronon (airbnb): `production/{group_bys,joins,staging_queries}/<team>/<file>`
//!   with `teams.json` at the root;
//! - Zipline: `compiled/{group_bys,joins,staging_queries}/<team>/<file>` with
//!   `compiled/teams_metadata/<team>/<file>`. Other folders (`models/`,
//!   `model_transforms/`) are skipped with a note.
//!
//! Every problem is collected with its file and JSON path, so `validate` can
//! list them all at once.
//!
//! Files:
//! - `mod.rs`: the repository (`Repo`, `Config`, `Layout`) and its problems;
//! - `load`: loading a repository, strict or lenient, or one config file;
//! - `files`: listing the config folders, reading JSON (`strict_json`);
//! - `teams`: the teams' settings;
//! - `model`: the typed configs, and in `model/read.rs` their readers;
//! - `decode`: the JSON decoder the readers use, which records problems;
//! - `sql_reads`: the tables a staging query's SQL reads, against the ones
//!   it declares.

pub(crate) mod decode;
mod files;
mod load;
pub(crate) mod model;
pub(crate) mod sql_reads;
mod teams;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde_json::Value;

#[cfg(test)]
pub use load::parse_value;
pub use model::*;

/// One thing wrong with the input: which file, where in it, what was expected.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    pub file: String,
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.file.is_empty(), self.path.is_empty()) {
            (true, _) => write!(f, "{}", self.message),
            (false, true) => write!(f, "{}: {}", self.file, self.message),
            (false, false) => write!(f, "{}: {}: {}", self.file, self.path, self.message),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConfigKind {
    GroupBy,
    Join,
    StagingQuery,
}

impl ConfigKind {
    pub const ALL: [ConfigKind; 3] = [
        ConfigKind::StagingQuery,
        ConfigKind::GroupBy,
        ConfigKind::Join,
    ];

    pub fn folder(self) -> &'static str {
        match self {
            ConfigKind::GroupBy => "group_bys",
            ConfigKind::Join => "joins",
            ConfigKind::StagingQuery => "staging_queries",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            ConfigKind::GroupBy => "group-by",
            ConfigKind::Join => "join",
            ConfigKind::StagingQuery => "staging-query",
        }
    }
}

/// One per config file: a repository holds thousands, not millions, so the
/// variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Body {
    GroupBy(GroupBy),
    Join(Join),
    StagingQuery(StagingQuery),
}

#[derive(Clone, Debug)]
pub struct Config {
    pub kind: ConfigKind,
    pub name: String,
    /// Path relative to the repository root, with `/` separators; this is
    /// what `zipline run --conf` takes.
    pub path: String,
    pub raw: Value,
    pub body: Body,
}

impl Config {
    pub fn meta(&self) -> &MetaData {
        match &self.body {
            Body::GroupBy(g) => &g.meta,
            Body::Join(j) => &j.meta,
            Body::StagingQuery(s) => &s.meta,
        }
    }

    pub fn team(&self) -> &str {
        &self.meta().team
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `production/` plus `teams.json`.
    Chronon,
    /// `compiled/` plus `compiled/teams_metadata/`.
    Zipline,
}

impl Layout {
    pub fn folder(self) -> &'static str {
        match self {
            Layout::Chronon => "production",
            Layout::Zipline => "compiled",
        }
    }
}

#[derive(Debug)]
pub struct Repo {
    pub root: PathBuf,
    pub layout: Layout,
    pub configs: Vec<Config>,
    /// Team name to its raw settings (from `teams.json` or `teams_metadata`).
    pub teams: BTreeMap<String, Value>,
    /// Things skipped on purpose, worth telling the user once.
    pub notes: Vec<String>,
    /// Configs left out because they are invalid (`Repo::load_lenient`).
    pub invalid: Vec<InvalidConfig>,
}

/// A config left out because it is invalid: its problems, and the tables it
/// would write as far as its raw JSON tells, whose readers are blocked.
#[derive(Clone, Debug)]
pub struct InvalidConfig {
    pub path: String,
    pub problems: Vec<Problem>,
    pub tables: Vec<String>,
}

/// Everything wrong with a repository, sorted by file then path.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<Problem>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl Repo {
    pub fn find(&self, name: &str) -> Option<&Config> {
        self.configs.iter().find(|c| c.name == name)
    }
}
