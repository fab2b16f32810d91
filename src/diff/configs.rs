//! Configs matched by kind and name across the two sides: added, removed,
//! renamed and modified (each changed field classed by `hash::classify`),
//! and which online configs change what they serve.

use std::collections::HashMap;

use serde_json::Value;

use super::{ConfigChanges, ConfigRef, FieldDiff, Modified, Rename, ServingChange};
use crate::config::{Config, ConfigKind, Repo};
use crate::hash::{self, FieldClass, Hash};

/// Configs added, removed, renamed and modified; and, per renamed config's
/// new name, its old name (its run history estimates the new one's cost).
pub(super) fn compare_configs<'a>(
    base: &'a Repo,
    head: &'a Repo,
) -> (ConfigChanges, HashMap<&'a str, &'a str>) {
    let key = |c: &'a Config| (c.kind, c.name.as_str());
    let base_by: HashMap<(ConfigKind, &str), &Config> =
        base.configs.iter().map(|c| (key(c), c)).collect();
    let head_by: HashMap<(ConfigKind, &str), &Config> =
        head.configs.iter().map(|c| (key(c), c)).collect();

    let mut changes = ConfigChanges::default();
    let mut added: Vec<&Config> = Vec::new();
    for config in &head.configs {
        match base_by.get(&key(config)) {
            None => added.push(config),
            Some(old) => changes.modified.extend(modified(old, config)),
        }
    }
    let mut removed: Vec<&Config> = base
        .configs
        .iter()
        .filter(|c| !head_by.contains_key(&key(c)))
        .collect();
    let renamed_from = pair_renames(&mut added, &mut removed, &mut changes.renamed);
    changes.added = added.into_iter().map(ConfigRef::of).collect();
    changes.removed = removed.into_iter().map(ConfigRef::of).collect();
    (changes, renamed_from)
}

/// The changed fields of a config kept under the same name; `None` when its
/// canonical content is the same.
fn modified(old: &Config, config: &Config) -> Option<Modified> {
    let (a, b) = (hash::canonical(&old.raw), hash::canonical(&config.raw));
    if a == b {
        return None;
    }
    let fields: Vec<FieldDiff> = hash::diff(&a, &b)
        .into_iter()
        .map(|(path, old, new)| FieldDiff {
            class: hash::classify(&path),
            path,
            old,
            new,
        })
        .collect();
    let mut classes: Vec<FieldClass> = fields.iter().map(|f| f.class).collect();
    classes.sort();
    classes.dedup();
    Some(Modified {
        kind: config.kind.label(),
        name: config.name.clone(),
        path: config.path.clone(),
        classes,
        fields,
    })
}

/// Takes the renames out of `added` and `removed` into `renamed`, and
/// returns each renamed config's old name by its new one.
fn pair_renames<'a>(
    added: &mut Vec<&'a Config>,
    removed: &mut Vec<&'a Config>,
    renamed: &mut Vec<Rename>,
) -> HashMap<&'a str, &'a str> {
    let mut renamed_from = HashMap::new();
    let mut by_content: HashMap<(ConfigKind, Hash), Vec<usize>> = HashMap::new();
    for (i, config) in removed.iter().enumerate() {
        by_content.entry(unnamed(config)).or_default().push(i);
    }
    let mut taken = vec![false; removed.len()];
    added.retain(|config| {
        let found = by_content
            .get(&unnamed(config))
            .and_then(|candidates| candidates.iter().find(|i| !taken[**i]).copied());
        let Some(i) = found else {
            return true;
        };
        taken[i] = true;
        let old = removed[i];
        renamed_from.insert(config.name.as_str(), old.name.as_str());
        renamed.push(Rename {
            kind: config.kind.label(),
            from: old.name.clone(),
            to: config.name.clone(),
            from_path: old.path.clone(),
            to_path: config.path.clone(),
        });
        false
    });
    let mut i = 0;
    removed.retain(|_| {
        i += 1;
        !taken[i - 1]
    });
    renamed_from
}

/// A rename keeps everything but the name: match on the content without it.
fn unnamed(c: &Config) -> (ConfigKind, Hash) {
    let mut value = hash::canonical(&c.raw);
    if let Some(meta) = value.get_mut("metaData").and_then(Value::as_object_mut) {
        meta.remove("name");
    }
    (c.kind, Hash::of_json(&value))
}

/// Whether a changed field changes what a fetch returns. Sampling rates and
/// the online flag itself do not; nor, for a join, what only offline
/// backfills read (the left side, bootstraps, labels).
fn changes_served_values(kind: ConfigKind, field: &FieldDiff) -> bool {
    let last = field.path.rsplit('.').next().unwrap_or_default();
    let top = field.path.split(['.', '[']).next().unwrap_or_default();
    let served = match field.class {
        FieldClass::Semantic | FieldClass::Cutoff => true,
        FieldClass::ServingOnly => !matches!(
            last,
            "online" | "samplePercent" | "consistencySamplePercent"
        ),
        FieldClass::NonSemantic => false,
    };
    served
        && (kind != ConfigKind::Join
            || matches!(top, "joinParts" | "derivations" | "onlineExternalParts"))
}

pub(super) fn serving_changes(
    changes: &ConfigChanges,
    base: &Repo,
    head: &Repo,
) -> Vec<ServingChange> {
    let online = |repo: &Repo, name: &str| repo.find(name).is_some_and(|c| c.meta().online);
    let mut out = Vec::new();
    for modified in &changes.modified {
        let Some(config) = head.find(&modified.name).filter(|c| c.meta().online) else {
            continue;
        };
        if modified
            .fields
            .iter()
            .any(|f| changes_served_values(config.kind, f))
        {
            out.push(ServingChange {
                kind: modified.kind,
                name: modified.name.clone(),
                path: modified.path.clone(),
                in_place: online(base, &modified.name),
            });
        }
    }
    for rename in &changes.renamed {
        if online(head, &rename.to) {
            out.push(ServingChange {
                kind: rename.kind,
                name: rename.to.clone(),
                path: rename.to_path.clone(),
                in_place: false,
            });
        }
    }
    out
}

/// The name with its version suffix bumped: `team.gb.v1` becomes `team.gb.v2`.
pub fn next_version(name: &str) -> String {
    let digits = name.len() - name.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let stem = &name[..name.len() - digits];
    match name[name.len() - digits..].parse::<u64>() {
        Ok(n) if stem.ends_with(".v") || stem.ends_with("_v") => format!("{stem}{}", n + 1),
        _ => format!("{name}_v2"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_bump_at_the_end_of_the_name() {
        assert_eq!(next_version("risk.purchases.v1"), "risk.purchases.v2");
        assert_eq!(next_version("team.gb_v9"), "team.gb_v10");
        assert_eq!(next_version("team.gb"), "team.gb_v2");
        assert_eq!(next_version("team.gb2"), "team.gb2_v2");
    }
}
