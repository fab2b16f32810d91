//! Where a side of a diff comes from: a folder, or a git revision read with
//! the git CLI (`git archive` of the config folders into a temporary
//! directory; the working tree is never checked out or touched).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::Error;

/// What `diff` reads for each side: the compiled config folders and the
/// files that shape the graph.
const WANTED: &[&str] = &["production", "compiled", "teams.json", "chronon-build.toml"];

/// A config set on disk, and what to call it.
pub struct Materialized {
    pub label: String,
    pub root: PathBuf,
    /// Removed on drop, for revisions.
    _temp: Option<tempfile::TempDir>,
}

impl Materialized {
    pub fn folder(label: String, root: &Path) -> Materialized {
        Materialized {
            label,
            root: root.to_path_buf(),
            _temp: None,
        }
    }
}

/// `spec` is a folder when one exists at that path, else a git revision of
/// the repository that holds `repo`. `flag` names the option in errors.
pub fn materialize(flag: &str, spec: &str, repo: &Path) -> Result<Materialized, Error> {
    if Path::new(spec).is_dir() {
        return Ok(Materialized::folder(spec.to_string(), Path::new(spec)));
    }
    if spec.is_empty() || spec.starts_with('-') {
        return Err(Error::Usage(format!(
            "{flag} {spec:?}: expected a folder or a git revision"
        )));
    }
    let not_a_revision = |detail: &str| {
        Error::Usage(format!(
            "{flag} {spec}: not a folder, and not a git revision of the repository at {}{detail}",
            repo.display()
        ))
    };
    let prefix = git(repo, &["rev-parse", "--show-prefix"])
        .map_err(|e| not_a_revision(&format!(" ({e})")))?;
    let prefix = prefix.trim_end_matches('\n');
    // Tree listings and archives run from the top level: run in a
    // subfolder, git limits `ls-tree` to it and reads `archive` paths
    // relative to it, so a config folder inside a larger repository (a
    // monorepo) would look empty.
    let top = git(repo, &["rev-parse", "--show-toplevel"])
        .map_err(|e| not_a_revision(&format!(" ({e})")))?;
    let top = PathBuf::from(top.trim_end_matches('\n'));
    let folder = if prefix.is_empty() {
        "the repository root".to_string()
    } else {
        format!("folder {}", prefix.trim_end_matches('/'))
    };
    let commit = git(
        repo,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            "--end-of-options",
            &format!("{spec}^{{commit}}"),
        ],
    )
    .map_err(|_| not_a_revision(""))?;
    let commit = commit.trim().to_string();
    let tree = format!("{commit}:{prefix}");
    let short: String = commit.chars().take(10).collect();
    let names = git(
        &top,
        &["ls-tree", "--full-tree", "--name-only", "-z", &tree],
    )
    .map_err(|e| {
        Error::Usage(format!(
            "{flag} {spec}: the {folder} does not exist at {spec} ({short}): {e}"
        ))
    })?;
    let keep: Vec<&str> = names
        .split('\0')
        .filter(|name| WANTED.contains(name))
        .collect();
    let temp = tempfile::Builder::new()
        .prefix("chronon-build-diff-")
        .tempdir()
        .map_err(|e| Error::Io(format!("cannot create a temporary folder: {e}")))?;
    if keep.is_empty() {
        return Err(Error::Usage(format!(
            "{flag} {spec}: the {folder} has no compiled configs at {spec} ({short}): \
             expected production/ or compiled/ in it"
        )));
    }
    extract(&top, &tree, &keep, temp.path()).map_err(|e| {
        Error::Io(format!(
            "{flag} {spec}: cannot read the configs of the {folder} at {spec} ({short}): {e}"
        ))
    })?;
    Ok(Materialized {
        label: format!("{spec} ({short})"),
        root: temp.path().to_path_buf(),
        _temp: Some(temp),
    })
}

/// `git archive TREE PATHS... | tar -x -C DEST`.
fn extract(repo: &Path, tree: &str, paths: &[&str], dest: &Path) -> Result<(), String> {
    let mut archive = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["archive", "--format=tar", tree])
        .args(paths)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run git: {e}"))?;
    let stdout = archive.stdout.take().expect("stdout is piped");
    let untar = Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(dest)
        .stdin(Stdio::from(stdout))
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run tar: {e}"))?;
    let archived = archive
        .wait_with_output()
        .map_err(|e| format!("git archive: {e}"))?;
    if !archived.status.success() {
        return Err(format!(
            "git archive: {}",
            String::from_utf8_lossy(&archived.stderr).trim()
        ));
    }
    if !untar.status.success() {
        return Err(format!(
            "tar: {}",
            String::from_utf8_lossy(&untar.stderr).trim()
        ));
    }
    Ok(())
}

/// Runs git in `repo`; its stdout, or its stderr as the error.
fn git(repo: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
