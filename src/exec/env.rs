//! A job's environment, exactly as the real CLI computes it from the
//! repository, so that what a job gets does not depend on which of us sets
//! it. Both CLIs set a variable only when the environment does not already
//! have it: what the operator exported wins, and so do we (`exec::command`
//! drops every variable the runner's environment already has).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::config::{Config, Layout, Repo};
use crate::exec::Interface;

/// The variables the CLI would set for `config` in `mode`.
pub fn environment(
    interface: Interface,
    repo: &Repo,
    config: &Config,
    mode: &str,
) -> BTreeMap<String, String> {
    match interface {
        Interface::Zipline | Interface::Zipline10 => zipline(config, mode),
        Interface::Chronon => chronon(repo, config, mode),
    }
}

/// zipline-ai's `set_runtime_env_v3` (`ai/chronon/repo/utils.py`, 1.0.5 and
/// 1.28.0): the config's own `metaData.executionInfo.env`, its
/// `modeEnvironments[mode]` when that is non-empty, else its `common`; the
/// compiler has already merged the team's settings into each config.
fn zipline(config: &Config, mode: &str) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    set_missing(
        &mut env,
        execution_info_for_mode(config, Section::Env, mode),
    );
    env
}

/// A section of a Zipline config's `metaData.executionInfo`, each with its
/// per-mode map: `env` (`modeEnvironments`) and `conf` (`modeConfigs`).
#[derive(Clone, Copy)]
pub enum Section {
    Env,
    Conf,
}

/// The values a Zipline config gives a mode in one section: the per-mode
/// map's entry when it is non-empty, else the section's `common`, as
/// zipline-ai's `set_runtime_env_v3` reads them.
pub fn execution_info_for_mode<'c>(
    config: &'c Config,
    section: Section,
    mode: &str,
) -> Option<&'c Value> {
    let (pointer, per_mode) = match section {
        Section::Env => ("/executionInfo/env", "modeEnvironments"),
        Section::Conf => ("/executionInfo/conf", "modeConfigs"),
    };
    let meta = config.raw.get("metaData").unwrap_or(&config.raw);
    let scope = meta.pointer(pointer)?;
    scope
        .get(per_mode)
        .and_then(|m| m.get(mode))
        .filter(|v| v.as_object().is_some_and(|o| !o.is_empty()))
        .or_else(|| scope.get("common"))
}

/// The literal modes for which run.py passes `customJson.additional_args`.
const ADDITIONAL_ARGS_MODES: [&str; 5] = [
    "backfill",
    "backfill-left",
    "backfill-final",
    "upload",
    "model-transform-batch",
];

/// chronon-ai's `set_runtime_env` (airbnb/chronon
/// `api/py/ai/chronon/repo/run.py`), with the context `dev` that run.py
/// takes when no `--env` is given (as airbnb's Airflow operators call it,
/// `airflow/operators.py`). First wins, in this order:
/// 1. the config's `metaData.modeToEnvMap[mode]`, plus
///    `CHRONON_CONFIG_ADDITIONAL_ARGS` from `customJson.additional_args` for
///    the backfill and upload modes;
/// 2. `teams.json[team].dev[mode]`, where the team is the config's folder;
/// 3. `teams.json[team].production[mode]`;
/// 4. `teams.json.default.production[mode]`;
/// 5. `teams.json.default.common_env` (the team's own `common_env` is not read).
///
/// `mode` is the literal mode (`backfill-left` is not `backfill`), except
/// that any streaming mode reads `streaming`. run.py's own variables
/// (`APP_NAME`, `CHRONON_CONF_PATH`, jar paths) it sets itself.
fn chronon(repo: &Repo, config: &Config, mode: &str) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let mode = if mode.contains("streaming") {
        "streaming"
    } else {
        mode
    };
    let meta = config.raw.get("metaData");
    set_missing(
        &mut env,
        meta.and_then(|m| m.get("modeToEnvMap"))
            .and_then(|m| m.get(mode)),
    );
    let custom = config.meta().custom_json.as_ref();
    if let Some(Value::Object(custom)) = custom
        && !custom.is_empty()
        && ADDITIONAL_ARGS_MODES.contains(&mode)
    {
        // run.py's `" ".join(custom_json.get("additional_args", []))`:
        // a list joins its items, a dict its keys (in the file's order, as
        // Python's dict keeps them), a string its characters.
        let args: Vec<String> = match custom.get("additional_args") {
            Some(Value::Array(items)) => items.iter().map(value_text).collect(),
            Some(Value::Object(map)) => raw_custom_json(config)
                .and_then(|text| serde_json::from_str::<InOrder>(&text).ok())
                .and_then(|c| c.additional_args)
                .map(|a| a.0)
                .unwrap_or_else(|| map.keys().cloned().collect()),
            Some(Value::String(text)) => text.chars().map(String::from).collect(),
            _ => Vec::new(),
        };
        env.entry("CHRONON_CONFIG_ADDITIONAL_ARGS".into())
            .or_insert_with(|| args.join(" "));
    }
    if repo.layout != Layout::Chronon {
        return env;
    }
    let team = team_folder(&config.path);
    let teams = &repo.teams;
    let team = teams.get(team);
    let default = teams.get("default");
    let layers = [
        team.and_then(|t| t.get("dev")).and_then(|c| c.get(mode)),
        team.and_then(|t| t.get("production"))
            .and_then(|c| c.get(mode)),
        default
            .and_then(|t| t.get("production"))
            .and_then(|c| c.get(mode)),
        default.and_then(|t| t.get("common_env")),
    ];
    for layer in layers {
        set_missing(&mut env, layer);
    }
    env
}

/// `metaData.customJson` as written: a JSON string inside the config.
fn raw_custom_json(config: &Config) -> Option<String> {
    config
        .raw
        .pointer("/metaData/customJson")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// `customJson` read for the keys of `additional_args` in document order
/// (serde_json's maps are sorted).
#[derive(serde::Deserialize)]
struct InOrder {
    additional_args: Option<KeysInOrder>,
}

struct KeysInOrder(Vec<String>);

impl<'de> serde::Deserialize<'de> for KeysInOrder {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<KeysInOrder, D::Error> {
        struct Keys;
        impl<'de> serde::de::Visitor<'de> for Keys {
            type Value = KeysInOrder;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<KeysInOrder, A::Error> {
                let mut keys: Vec<String> = Vec::new();
                while let Some((key, _)) = map.next_entry::<String, serde::de::IgnoredAny>()? {
                    // A repeated key keeps its first place, as in a dict.
                    if !keys.contains(&key) {
                        keys.push(key);
                    }
                }
                Ok(KeysInOrder(keys))
            }
        }
        d.deserialize_map(Keys)
    }
}

/// run.py's `_, conf_type, team, _ = conf.split("/")[-4:]`.
fn team_folder(path: &str) -> &str {
    let parts: Vec<&str> = path.split('/').collect();
    match parts.len() {
        n if n >= 2 => parts[n - 2],
        _ => "default",
    }
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Sets each variable of an object that is not set yet.
fn set_missing(env: &mut BTreeMap<String, String>, values: Option<&Value>) {
    let Some(Value::Object(map)) = values else {
        return;
    };
    for (k, v) in map {
        if v.is_null() {
            continue;
        }
        env.entry(k.clone()).or_insert_with(|| value_text(v));
    }
}
