//! Loading a repository: its layout, every config file parsed in parallel,
//! duplicate names, the teams; strict (one invalid config refuses all) or
//! lenient (invalid configs set apart).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde_json::Value;

use super::decode::Decoder;
use super::files::{collect_files, read_json, relative, sorted_dir, without_bom};
use super::sql_reads;
use super::teams::load_teams;
use super::{Body, Config, ConfigErrors, ConfigKind, InvalidConfig, Layout, Problem, Repo, model};

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
            let what = if root.exists() {
                "is not a folder"
            } else {
                "does not exist"
            };
            return Err(fail(format!(
                "--repo {}: {what}; expected the folder that holds compiled/ (Zipline) or \
                 production/ (Chronon)",
                root.display()
            )));
        }
        if root.join("compiled").is_dir() {
            Ok(Layout::Zipline)
        } else if root.join("production").is_dir() {
            Ok(Layout::Chronon)
        } else {
            Err(fail(format!(
                "--repo {root}: no compiled configs found: looked for {zipline} (Zipline: \
                 {zipline_shape}) and {chronon} (Chronon: {chronon_shape}), and neither is a \
                 folder{found}",
                root = root.display(),
                zipline = root.join("compiled").display(),
                chronon = root.join("production").display(),
                zipline_shape = shape(Layout::Zipline),
                chronon_shape = shape(Layout::Chronon),
                found = found_elsewhere(root),
            )))
        }
    }

    /// A repository whose config folder holds no config, valid or not,
    /// plans nothing, silently: almost surely the wrong folder, or configs
    /// not compiled yet. `plan`, `run` and `validate` refuse it (exit 2),
    /// saying where they looked, what they expected, and what is there.
    pub fn require_configs(&self) -> Result<(), ConfigErrors> {
        if !self.configs.is_empty() || !self.invalid.is_empty() {
            return Ok(());
        }
        let folder = self.root.join(self.layout.folder());
        let mut unreadable = Vec::new();
        let held: Vec<String> = sorted_dir(&self.root, &folder, &mut unreadable)
            .iter()
            .filter_map(|path| {
                let name = path.file_name()?.to_string_lossy();
                let slash = if path.is_dir() { "/" } else { "" };
                (!name.starts_with('.')).then(|| format!("{name}{slash}"))
            })
            .collect();
        let holds = match held.len() {
            0 => "it is empty".to_string(),
            n if n <= HELD_MAX => format!("it holds only {}", held.join(", ")),
            n => format!(
                "it holds only {} and {} more",
                held[..HELD_MAX].join(", "),
                n - HELD_MAX
            ),
        };
        // `layout_of` takes compiled/ first: an empty one hides production/.
        let hidden = match self.layout {
            Layout::Zipline if self.root.join("production").is_dir() => {
                "; production/ is there too, but compiled/ is read when both are folders: \
                 remove the empty compiled/ to read production/"
            }
            _ => "",
        };
        Err(fail(format!(
            "--repo {root}: no configs in {folder}: expected compiled Chronon configs, \
             {shape} (one JSON file per config); {holds}{hidden}{found}",
            root = self.root.display(),
            folder = folder.display(),
            shape = shape(self.layout),
            found = found_elsewhere(&self.root),
        )))
    }

    fn load_with(root: &Path, lenient: bool) -> Result<Repo, ConfigErrors> {
        let layout = Repo::layout_of(root)?;

        let mut notes = Vec::new();
        let mut problems = Vec::new();
        let files = config_files(root, layout, &mut notes, &mut problems);

        let parsed = parse_files(root, &files);
        let mut configs = Vec::with_capacity(parsed.len());
        let mut invalid = Vec::new();
        for ((_, path), (config, mut found)) in files.iter().zip(parsed) {
            if let Some(config) = &config {
                let reads = sql_reads::check(config, layout);
                found.extend(reads.problems);
                notes.extend(reads.note);
            }
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

        for (i, problem) in duplicate_names(&configs).into_iter().rev() {
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
}

/// Entries of an empty config folder named in its error, at most.
const HELD_MAX: usize = 5;

/// Where a layout's configs are: `production/{group_bys,joins,staging_queries}/TEAM/NAME`.
fn shape(layout: Layout) -> String {
    format!(
        "{}/{{group_bys,joins,staging_queries}}/TEAM/NAME",
        layout.folder()
    )
}

/// Config folders below `root` (`nested_layouts`), as the end of an error.
fn found_elsewhere(root: &Path) -> String {
    match nested_layouts(root).as_slice() {
        [] => String::new(),
        some => format!(
            "; found {}: pass its parent as --repo",
            some.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
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

/// Every file under the config folders of `layout`, with its kind, sorted;
/// other folders are noted and skipped.
fn config_files(
    root: &Path,
    layout: Layout,
    notes: &mut Vec<String>,
    problems: &mut Vec<Problem>,
) -> Vec<(ConfigKind, PathBuf)> {
    let mut files = Vec::new();
    let base = root.join(layout.folder());
    for entry in sorted_dir(root, &base, problems) {
        let name = entry
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        if name.starts_with('.') || !entry.is_dir() {
            continue;
        }
        match ConfigKind::ALL.iter().find(|k| k.folder() == name) {
            Some(kind) => collect_files(root, &entry, *kind, &mut files, problems),
            None if name == "teams_metadata" => {}
            None => notes.push(format!(
                "skipped {}/{name}/: not a config kind chronon-build schedules",
                layout.folder()
            )),
        }
    }
    files
}

/// Each file's config and problems, in the order of `files`.
fn parse_files(
    root: &Path,
    files: &[(ConfigKind, PathBuf)],
) -> Vec<(Option<Config>, Vec<Problem>)> {
    files
        .par_iter()
        .map(|(kind, path)| {
            let rel = relative(root, path);
            let mut found = Vec::new();
            let config = parse_file(*kind, path, &rel, &mut found);
            (config, found)
        })
        .collect()
}

/// Each config whose name an earlier config has, by index, with its problem.
fn duplicate_names(configs: &[Config]) -> Vec<(usize, Problem)> {
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
    duplicates
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

/// `compiled/` or `production/` folders one or two levels below `root`
/// (a repository whose configs sit in a subfolder), at most three.
fn nested_layouts(root: &Path) -> Vec<std::path::PathBuf> {
    let subfolders = |dir: &Path| -> Vec<std::path::PathBuf> {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut dirs: Vec<_> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .filter(|p| {
                !p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect();
        dirs.sort();
        dirs
    };
    let mut found = Vec::new();
    let mut level = vec![root.to_path_buf()];
    for _ in 0..2 {
        let mut next = Vec::new();
        for dir in level.iter().flat_map(|d| subfolders(d)).take(1000) {
            if ["compiled", "production"]
                .iter()
                .any(|name| dir.join(name).is_dir())
            {
                found.push(dir.clone());
            }
            next.push(dir);
        }
        if found.len() >= 3 {
            break;
        }
        level = next;
    }
    found.truncate(3);
    found
        .into_iter()
        .map(|dir| {
            if dir.join("compiled").is_dir() {
                dir.join("compiled")
            } else {
                dir.join("production")
            }
        })
        .collect()
}
