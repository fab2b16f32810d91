//! `[state]`: where the state is, a file (`path`) or a database (`url`).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::Settings;
use crate::store::StateLocation;

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateSettings {
    /// Relative paths are relative to the repository root.
    #[serde(default = "default_state_path")]
    pub path: PathBuf,
    /// The state elsewhere: `postgresql://user@host:5432/db` (shared
    /// between hosts) or `sqlite:///path/state.db`; in place of `path`.
    #[serde(default)]
    pub url: Option<String>,
    /// How long a run's claims hold, seen from another host, unless renewed
    /// (`store::claims`), e.g. `"2m"`; more than `bounds.stop_grace`.
    #[serde(
        default = "default_lease",
        deserialize_with = "super::duration::required"
    )]
    pub lease: std::time::Duration,
}

fn default_lease() -> std::time::Duration {
    std::time::Duration::from_secs(120)
}

/// Shows the URL without its password.
impl std::fmt::Debug for StateSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateSettings")
            .field("path", &self.path)
            .field("url", &self.url.as_deref().map(crate::store::redact_url))
            .field("lease", &self.lease)
            .finish()
    }
}

impl Default for StateSettings {
    fn default() -> Self {
        StateSettings {
            path: default_state_path(),
            url: None,
            lease: default_lease(),
        }
    }
}

pub(super) fn default_state_path() -> PathBuf {
    PathBuf::from(".chronon-build/state.db")
}

impl Settings {
    /// Where the state is: `state.url` when set, else the file at
    /// `state.path`.
    pub fn state_location(&self, repo_root: &Path) -> Result<StateLocation, String> {
        match &self.state.url {
            Some(url) => {
                StateLocation::parse(url, repo_root).map_err(|e| format!("state.url: {e}"))
            }
            None => Ok(StateLocation::File(
                self.resolve(repo_root, &self.state.path),
            )),
        }
    }

    /// The folder of the state file: logs and the lock live beside it. A
    /// state in a database keeps them in `<repo>/.chronon-build`.
    pub fn state_dir(&self, repo_root: &Path) -> PathBuf {
        let state = match self.state_location(repo_root) {
            Ok(StateLocation::File(path)) => path,
            _ => repo_root.join(default_state_path()),
        };
        state
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_printing_hides_the_password() {
        let settings = StateSettings {
            path: default_state_path(),
            url: Some("postgresql://u:hunter2@h/db".into()),
            lease: default_lease(),
        };
        let shown = format!("{settings:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("u:***@h"), "{shown}");
    }
}
