//! Building the Rust test programs of `tests/rust_targets` (std only, with `rustc`).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use tempfile::TempDir;

use crate::tools;

pub(crate) fn rust_targets_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("rust_targets")
}

/// `tests/rust_targets/NAME.rs` built with `rustc -O -g` into a temporary directory
/// (kept as long as the returned directory).
pub(crate) fn build_rustc_target(name: &str) -> (TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix(&format!("tracer-it-{name}-"))
        .tempdir()
        .expect("temp dir for a Rust target");
    let exe = dir.path().join(name);
    let out = tools::output(
        Command::new("rustc")
            .args(["-O", "-g", "--edition", "2021", "-o"])
            .arg(&exe)
            .arg(rust_targets_dir().join(format!("{name}.rs"))),
        "rustc",
    );
    assert!(
        out.status.success(),
        "rustc failed for {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (dir, exe)
}

/// A copy of `exe` next to it with its symbols and debug information stripped
/// (`strip --strip-all`).
pub(crate) fn stripped_copy(exe: &Path) -> PathBuf {
    let stripped = exe.with_extension("stripped");
    let out = tools::output(
        Command::new("strip")
            .arg("--strip-all")
            .arg("-o")
            .arg(&stripped)
            .arg(exe),
        "binutils",
    );
    assert!(
        out.status.success(),
        "strip failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stripped
}
