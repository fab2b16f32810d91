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

pub mod decode;
pub mod model;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde_json::Value;

pub use model::*;

use decode::Decoder;

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
    /// Every config, or every problem: one invalid config refuses the
    /// repository (`validate`, `diff`, `--strict`).
    pub fn load(root: &Path) -> Result<Repo, ConfigErrors> {
        Repo::load_with(root, false)
    }

    /// The valid configs, with each invalid one set apart in `invalid`, so
    /// that one team's broken file does not stop every team's work. What is
    /// wrong with the repository as a whole (no config folder, teams.json,
    /// an unreadable folder) still refuses it.
    pub fn load_lenient(root: &Path) -> Result<Repo, ConfigErrors> {
        Repo::load_with(root, true)
    }

    /// One config file (`rel`, relative to the repository, inside its
    /// config folder), and the teams: what one local job needs.
    pub fn load_one(root: &Path, rel: &str) -> Result<Repo, ConfigErrors> {
        let layout = Repo::layout_of(root)?;
        let prefix = format!("{}/", layout.folder());
        let kind = rel
            .strip_prefix(&prefix)
            .and_then(|rest| rest.split('/').next())
            .and_then(|folder| ConfigKind::ALL.into_iter().find(|k| k.folder() == folder))
            .filter(|_| !rel.split('/').any(|part| part == ".." || part.is_empty()));
        let Some(kind) = kind else {
            return Err(fail(format!(
                "--conf {rel}: expected a config file under {prefix}group_bys/, joins/ or staging_queries/"
            )));
        };
        let mut problems = Vec::new();
        let config = parse_file(kind, &root.join(rel), rel, &mut problems);
        let teams = load_teams(root, layout, &mut problems);
        if !problems.is_empty() {
            problems.sort();
            return Err(ConfigErrors(problems));
        }
        Ok(Repo {
            root: root.to_path_buf(),
            layout,
            configs: config.into_iter().collect(),
            teams,
            notes: Vec::new(),
            invalid: Vec::new(),
        })
    }

    fn layout_of(root: &Path) -> Result<Layout, ConfigErrors> {
        if !root.is_dir() {
            return Err(fail(format!("{}: not a directory", root.display())));
        }
        if root.join("compiled").is_dir() {
            Ok(Layout::Zipline)
        } else if root.join("production").is_dir() {
            Ok(Layout::Chronon)
        } else {
            Err(fail(format!(
                "{}: no compiled configs found: expected a production/ folder (Chronon) or a compiled/ folder (Zipline)",
                root.display()
            )))
        }
    }

    fn load_with(root: &Path, lenient: bool) -> Result<Repo, ConfigErrors> {
        let layout = Repo::layout_of(root)?;

        let mut notes = Vec::new();
        let mut problems = Vec::new();
        let mut files = Vec::new();
        let base = root.join(layout.folder());
        for entry in sorted_dir(root, &base, &mut problems) {
            let name = entry
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            if name.starts_with('.') || !entry.is_dir() {
                continue;
            }
            match ConfigKind::ALL.iter().find(|k| k.folder() == name) {
                Some(kind) => collect_files(root, &entry, *kind, &mut files, &mut problems),
                None if name == "teams_metadata" => {}
                None => notes.push(format!(
                    "skipped {}/{name}/: not a config kind chronon-build schedules",
                    layout.folder()
                )),
            }
        }

        let parsed: Vec<(Option<Config>, Vec<Problem>)> = files
            .par_iter()
            .map(|(kind, path)| {
                let rel = relative(root, path);
                let mut found = Vec::new();
                let config = parse_file(*kind, path, &rel, &mut found);
                (config, found)
            })
            .collect();
        let mut configs = Vec::with_capacity(parsed.len());
        let mut invalid = Vec::new();
        for ((_, path), (config, found)) in files.iter().zip(parsed) {
            if lenient && !found.is_empty() {
                invalid.push(InvalidConfig {
                    path: relative(root, path),
                    problems: found,
                    tables: written_tables(path),
                });
                continue;
            }
            problems.extend(found);
            configs.extend(config);
        }

        let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
        let mut duplicates = Vec::new();
        for (i, config) in configs.iter().enumerate() {
            if let Some(first) = seen.insert(&config.name, &config.path) {
                duplicates.push((
                    i,
                    Problem {
                        file: config.path.clone(),
                        path: "metaData.name".into(),
                        message: format!("duplicate config name {} (also in {first})", config.name),
                    },
                ));
                seen.insert(&config.name, first);
            }
        }
        for (i, problem) in duplicates.into_iter().rev() {
            if lenient {
                // The later file is the one set apart.
                let config = configs.remove(i);
                invalid.push(InvalidConfig {
                    path: config.path,
                    problems: vec![problem],
                    tables: Vec::new(),
                });
            } else {
                problems.push(problem);
            }
        }
        invalid.sort_by(|a, b| a.path.cmp(&b.path));

        let teams = load_teams(root, layout, &mut problems);

        if !problems.is_empty() {
            problems.sort();
            return Err(ConfigErrors(problems));
        }
        configs.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
        Ok(Repo {
            root: root.to_path_buf(),
            layout,
            configs,
            teams,
            notes,
            invalid,
        })
    }

    pub fn find(&self, name: &str) -> Option<&Config> {
        self.configs.iter().find(|c| c.name == name)
    }
}

/// A problem with the repository as a whole.
fn fail(message: String) -> ConfigErrors {
    ConfigErrors(vec![Problem {
        file: String::new(),
        path: String::new(),
        message,
    }])
}

/// The tables an invalid config would write, as far as its JSON can be
/// read: its output table (`metaData.name`, `outputNamespace`, Zipline's
/// `executionInfo.outputTableInfo.table`).
fn written_tables(path: &Path) -> Vec<String> {
    let Ok(bytes) = std::fs::read(path) else {
        return Vec::new();
    };
    let Ok(raw) = serde_json::from_slice::<Value>(without_bom(&bytes)) else {
        return Vec::new();
    };
    let meta = raw.get("metaData");
    let text = |pointer: &str| {
        meta.and_then(|m| m.pointer(pointer))
            .and_then(Value::as_str)
    };
    if let Some(table) = text("/executionInfo/outputTableInfo/table") {
        return vec![table.to_string()];
    }
    match text("/name") {
        Some(name) => vec![format!(
            "{}.{}",
            text("/outputNamespace").unwrap_or("default"),
            model::sanitize(name)
        )],
        None => Vec::new(),
    }
}

/// A folder's entries, sorted; a folder that cannot be read is a problem,
/// never silently empty.
fn sorted_dir(root: &Path, dir: &Path, problems: &mut Vec<Problem>) -> Vec<PathBuf> {
    let listed = std::fs::read_dir(dir).and_then(|rd| {
        rd.map(|e| e.map(|e| e.path()))
            .collect::<Result<Vec<_>, _>>()
    });
    match listed {
        Ok(mut entries) => {
            entries.sort();
            entries
        }
        Err(e) => {
            problems.push(Problem {
                file: format!("{}/", relative(root, dir)),
                path: String::new(),
                message: format!("cannot read the folder: {e}"),
            });
            Vec::new()
        }
    }
}

fn collect_files(
    root: &Path,
    dir: &Path,
    kind: ConfigKind,
    out: &mut Vec<(ConfigKind, PathBuf)>,
    problems: &mut Vec<Problem>,
) {
    for entry in sorted_dir(root, dir, problems) {
        let hidden = entry
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        if entry.is_dir() {
            collect_files(root, &entry, kind, out, problems);
        } else {
            out.push((kind, entry));
        }
    }
}

fn relative(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

fn read_json(path: &Path, rel: &str, problems: &mut Vec<Problem>) -> Option<Value> {
    let problem = |message: String| Problem {
        file: rel.to_string(),
        path: String::new(),
        message,
    };
    let text = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) => {
            problems.push(problem(format!("cannot read: {e}")));
            return None;
        }
    };
    match strict_json(without_bom(&text)) {
        Ok(value) => Some(value),
        Err(e) => {
            problems.push(problem(format!("malformed JSON: {e}")));
            None
        }
    }
}

/// A file's bytes without a UTF-8 byte order mark, which some editors write
/// and JSON has no use for.
fn without_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix("\u{feff}".as_bytes()).unwrap_or(bytes)
}

/// JSON whose objects have each key once: a repeated key is an error at its
/// line and column (serde_json would keep the last value silently).
pub fn strict_json(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    use serde::de::{DeserializeSeed, Deserializer, Error, MapAccess, SeqAccess, Visitor};

    struct Strict;

    impl<'de> DeserializeSeed<'de> for Strict {
        type Value = Value;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Strict {
        type Value = Value;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON value")
        }
        fn visit_bool<E: Error>(self, v: bool) -> Result<Value, E> {
            Ok(Value::Bool(v))
        }
        fn visit_i64<E: Error>(self, v: i64) -> Result<Value, E> {
            Ok(Value::from(v))
        }
        fn visit_u64<E: Error>(self, v: u64) -> Result<Value, E> {
            Ok(Value::from(v))
        }
        fn visit_f64<E: Error>(self, v: f64) -> Result<Value, E> {
            Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
        }
        fn visit_str<E: Error>(self, v: &str) -> Result<Value, E> {
            Ok(Value::String(v.to_string()))
        }
        fn visit_string<E: Error>(self, v: String) -> Result<Value, E> {
            Ok(Value::String(v))
        }
        fn visit_unit<E: Error>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_none<E: Error>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            let mut items = Vec::new();
            while let Some(item) = seq.next_element_seed(Strict)? {
                items.push(item);
            }
            Ok(Value::Array(items))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
            let mut out = serde_json::Map::new();
            while let Some(key) = map.next_key::<String>()? {
                if out.contains_key(&key) {
                    return Err(A::Error::custom(format!("duplicate key {key:?}")));
                }
                let value = map.next_value_seed(Strict)?;
                out.insert(key, value);
            }
            Ok(Value::Object(out))
        }
    }

    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = Strict.deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// Parses one compiled config file; problems go to `problems`.
pub fn parse_file(
    kind: ConfigKind,
    path: &Path,
    rel: &str,
    problems: &mut Vec<Problem>,
) -> Option<Config> {
    let raw = read_json(path, rel, problems)?;
    parse_value(kind, raw, rel, problems)
}

pub fn parse_value(
    kind: ConfigKind,
    raw: Value,
    rel: &str,
    problems: &mut Vec<Problem>,
) -> Option<Config> {
    let before = problems.len();
    let mut d = Decoder::new(rel, problems);
    let obj = d.root(&raw)?;
    let body = match kind {
        ConfigKind::GroupBy => model::read_group_by(&mut d, &obj).map(Body::GroupBy),
        ConfigKind::Join => model::read_join(&mut d, &obj).map(Body::Join),
        ConfigKind::StagingQuery => model::read_staging_query(&mut d, &obj).map(Body::StagingQuery),
    };
    if problems.len() > before {
        return None;
    }
    let body = body?;
    let name = match &body {
        Body::GroupBy(g) => g.meta.name.clone(),
        Body::Join(j) => j.meta.name.clone(),
        Body::StagingQuery(s) => s.meta.name.clone(),
    };
    Some(Config {
        kind,
        name,
        path: rel.to_string(),
        raw,
        body,
    })
}

/// The teams' settings: `teams.json`, or Zipline's `teams_metadata/`.
fn load_teams(root: &Path, layout: Layout, problems: &mut Vec<Problem>) -> BTreeMap<String, Value> {
    match layout {
        Layout::Chronon => load_teams_json(root, problems),
        Layout::Zipline => load_teams_metadata(root, problems),
    }
}

fn load_teams_json(root: &Path, problems: &mut Vec<Problem>) -> BTreeMap<String, Value> {
    let path = root.join("teams.json");
    if !path.exists() {
        return BTreeMap::new();
    }
    match read_json(&path, "teams.json", problems) {
        Some(Value::Object(map)) => map.into_iter().collect(),
        Some(other) => {
            problems.push(Problem {
                file: "teams.json".into(),
                path: String::new(),
                message: format!(
                    "expected an object of teams, got {}",
                    decode::describe(&other)
                ),
            });
            BTreeMap::new()
        }
        None => BTreeMap::new(),
    }
}

fn load_teams_metadata(root: &Path, problems: &mut Vec<Problem>) -> BTreeMap<String, Value> {
    let mut teams = BTreeMap::new();
    let dir = root.join("compiled").join("teams_metadata");
    let mut files = Vec::new();
    if dir.is_dir() {
        collect_files(root, &dir, ConfigKind::GroupBy, &mut files, problems);
    }
    for (_, path) in files {
        let rel = relative(root, &path);
        let team = path
            .parent()
            .and_then(|p| p.file_name())
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        if let Some(value) = read_json(&path, &rel, problems) {
            teams.insert(team, value);
        }
    }
    teams
}
