//! Small helpers shared by the tasks: the workspace root, running commands with an echo
//! of what runs, and the effective uid.
use std::{
    ffi::OsStr,
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};

/// Root of the workspace (the parent of `xtask/`). Taken from the compile-time manifest
/// directory so the tasks work from any current directory.
pub(crate) fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map_or_else(|| manifest_dir.to_path_buf(), Path::to_path_buf)
}

/// `cmd` as a shell-like line, with the environment variables it sets, for the echo
/// before running it (so CI logs show exactly what ran).
pub(crate) fn describe(cmd: &Command) -> String {
    let mut line = String::new();
    for (key, value) in cmd.get_envs() {
        if let Some(value) = value {
            let _ = write!(line, "{}={} ", key.display(), quote(value));
        }
    }
    line.push_str(&quote(cmd.get_program()));
    for arg in cmd.get_args() {
        line.push(' ');
        line.push_str(&quote(arg));
    }
    if let Some(dir) = cmd.get_current_dir() {
        let _ = write!(line, "   (in {})", dir.display());
    }
    line
}

fn quote(s: &OsStr) -> String {
    let s = s.to_string_lossy();
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=+:,@%".contains(c))
    {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Runs `cmd` with inherited stdio after echoing it; fails unless it exits 0.
pub(crate) fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let line = describe(cmd);
    eprintln!("$ {line}");
    let status = cmd
        .status()
        .with_context(|| format!("could not start `{line}`"))?;
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    Ok(())
}

/// Runs `cmd` quietly and returns its stdout if it exits 0; `None` if it cannot be
/// started or fails. For probes ("is X installed?"), where failure is an answer.
pub(crate) fn probe(cmd: &mut Command) -> Option<String> {
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Convenience for [`probe`] with a program and arguments.
pub(crate) fn probe_cmd<I, S>(program: &str, args: I) -> Option<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    probe(Command::new(program).args(args))
}

/// Effective uid, from `/proc/self/status` (its `Uid:` line is real, effective, saved,
/// filesystem), which avoids an `unsafe` libc call.
pub(crate) fn euid() -> anyhow::Result<u32> {
    let status = fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|id| id.parse().ok())
        .context("no effective uid in /proc/self/status")
}

pub(crate) fn is_root() -> bool {
    euid().is_ok_and(|uid| uid == 0)
}

/// The `cargo` to run: the rustup proxy on PATH, so `+nightly` and `rustup run` overrides
/// work (the `CARGO` variable cargo sets for us points at one toolchain's binary).
pub(crate) fn cargo() -> Command {
    Command::new("cargo")
}
