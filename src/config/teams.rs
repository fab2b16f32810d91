//! The teams' settings: `teams.json` (Chronon) or `compiled/teams_metadata/`
//! (Zipline).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use super::files::{collect_files, read_json, relative};
use super::{ConfigKind, Layout, Problem, decode};

/// The teams' settings: `teams.json`, or Zipline's `teams_metadata/`.
pub(super) fn load_teams(
    root: &Path,
    layout: Layout,
    problems: &mut Vec<Problem>,
) -> BTreeMap<String, Value> {
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
