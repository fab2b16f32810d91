//! Shell completions driven in the real shells: bash (always), zsh and fish
//! (when installed; `scripts/test` installs them). A hyphenated binary name
//! once broke every subcommand's options in bash.

use std::path::Path;
use std::process::Command;

use crate::{chronon_build, tool_or_skip};

fn script(dir: &Path, shell: &str) -> std::path::PathBuf {
    let out = chronon_build(dir, &["completions", shell]);
    assert_eq!(out.code, 0, "{shell}: {}", out.stderr);
    let name = match shell {
        "zsh" => "_chronon-build".to_string(),
        _ => format!("chronon-build.{shell}"),
    };
    let path = dir.join(name);
    std::fs::write(&path, out.stdout).unwrap();
    path
}

fn has(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// What bash completes for `words`, the last being completed: the
/// completion function called as readline calls it.
fn bash_complete(script: &Path, words: &[&str]) -> Vec<String> {
    let program = "source \"$1\"; shift; COMP_WORDS=(\"$@\"); COMP_CWORD=$(( $# - 1 )); \
         _chronon__build chronon-build \"${COMP_WORDS[COMP_CWORD]}\" \"${COMP_WORDS[COMP_CWORD-1]}\"; \
         printf '%s\\n' \"${COMPREPLY[@]}\"";
    let out = Command::new("bash")
        .args(["--norc", "-c", program, "bash"])
        .arg(script)
        .args(words)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn bash_completes_subcommands_and_their_options() {
    let dir = tempfile::tempdir().unwrap();
    let script = script(dir.path(), "bash");
    assert_eq!(
        bash_complete(&script, &["chronon-build", "plan", "--un"]),
        ["--until"]
    );
    assert_eq!(bash_complete(&script, &["chronon-build", "pl"]), ["plan"]);
    assert_eq!(
        bash_complete(&script, &["chronon-build", "warehouse", "im"]),
        ["import"]
    );
    assert_eq!(
        bash_complete(&script, &["chronon-build", "run", "--dry"]),
        ["--dry-run"]
    );
    let global = bash_complete(&script, &["chronon-build", "run", "--verb"]);
    assert_eq!(global, ["--verbose"]);
    // Also under POSIX-mode bash, as /bin/sh may be.
    let out = Command::new("bash")
        .args(["--posix", "-c", "source \"$1\"", "sh"])
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn zsh_completes_subcommand_options() {
    if !tool_or_skip("zsh completions", has("zsh"), "zsh is not installed") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    script(dir.path(), "zsh");
    // An interactive zsh on a pseudo-terminal (zsh/zpty), the completion
    // system loaded from the folder holding `_chronon-build`, a line typed
    // with a tab: the completed line comes back on the terminal.
    let bin = Path::new(env!("CARGO_BIN_EXE_chronon-build"));
    let driver = r#"
zmodload zsh/zpty
zpty -b z zsh -f -i
zpty -w z "PROMPT='> '; fpath=($1 \$fpath); path=($2 \$path); autoload -Uz compinit; compinit -u -D; print READY"
zpty -r z out '*READY*'
zpty -w -n z $'chronon-build plan --un\t'
zpty -r z out '*--until*' && print -r -- COMPLETED
zpty -d z
"#;
    let out = Command::new("timeout")
        .args(["30", "zsh", "-f", "-c", driver, "zsh"])
        .arg(dir.path())
        .arg(bin.parent().unwrap())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("COMPLETED"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn fish_completes_subcommand_options() {
    if !tool_or_skip("fish completions", has("fish"), "fish is not installed") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let script = script(dir.path(), "fish");
    let out = Command::new("fish")
        .args([
            "--no-config",
            "-c",
            "source $argv[1]; complete -C 'chronon-build plan --un'",
        ])
        .arg(&script)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.lines().any(|l| l.starts_with("--until")),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("fish")
        .args([
            "--no-config",
            "-c",
            "source $argv[1]; complete -C 'chronon-build pl'",
        ])
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.starts_with("plan"))
    );
}
