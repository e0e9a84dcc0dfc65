//! `cargo xtask test`: formatting, lints, unit tests and the root integration tests, in
//! that order. Every step runs even after an earlier one failed (a lint failure should not
//! hide a test failure in CI); the task fails if any step did.
use std::{path::Path, process::Command};

use anyhow::bail;

use crate::{
    setup::{self, SetupArgs},
    util::{cargo, is_root, run, workspace_root},
};

/// The rustflags aya-build gives the eBPF crate (minus debuginfo, irrelevant to lints):
/// the helpers in aya-ebpf are selected by `bpf_target_arch`, and `--btf` is what
/// bpf-linker needs to emit BTF.
const EBPF_RUSTFLAGS: &str = "--cfg=bpf_target_arch=\"x86_64\"\x1f-Clink-arg=--btf";

#[derive(clap::Args)]
pub(crate) struct TestArgs {
    /// Skip rustfmt and clippy (for local iteration while code is in flux; CI never uses it).
    #[arg(long)]
    no_lint: bool,
}

struct Step {
    name: &'static str,
    /// `Err` holds the reason a step cannot run here (reported as a failure).
    cmd: Result<Command, String>,
}

pub(crate) fn run_test(args: &TestArgs) -> anyhow::Result<()> {
    setup::run_setup(&SetupArgs::default())?;
    let root = workspace_root();
    let mut steps = Vec::new();

    if args.no_lint {
        println!("note: --no-lint: skipping rustfmt and clippy");
    } else {
        steps.extend(lint_steps(&root));
    }

    let mut unit = cargo();
    unit.args(["test", "--workspace", "--exclude", "tracer-ebpf"]);
    steps.push(Step {
        name: "unit tests",
        cmd: Ok(unit),
    });

    let root_tests = if is_root() {
        let mut cmd = cargo();
        cmd.args([
            "test",
            "-p",
            "tracer-user",
            "--features",
            "root-tests",
            "--tests",
            "--",
            "--test-threads=1",
        ]);
        Ok(cmd)
    } else {
        Err("the root integration tests attach eBPF programs and need root: run `sudo -E cargo xtask test`"
            .to_owned())
    };
    steps.push(Step {
        name: "root integration tests",
        cmd: root_tests,
    });

    let mut failed = Vec::new();
    for Step { name, cmd } in steps {
        println!("\n=== xtask test: {name}");
        let result = match cmd {
            Ok(mut cmd) => run(cmd.current_dir_if_unset(&root)).map_err(|err| format!("{err:#}")),
            Err(reason) => Err(reason),
        };
        if let Err(reason) = result {
            println!("xtask test: step `{name}` FAILED: {reason}");
            failed.push(name);
        }
    }

    println!();
    if failed.is_empty() {
        println!("xtask test: all passed");
        Ok(())
    } else {
        bail!("xtask test: failed step(s): {}", failed.join(", "))
    }
}

/// rustfmt and the clippy runs: host crates (root tests included), the integration tests
/// without root-tests, and the eBPF crate when the toolchain has clippy for BPF.
fn lint_steps(root: &Path) -> Vec<Step> {
    let mut steps = Vec::new();
    steps.push(Step {
        name: "rustfmt",
        cmd: Ok(rustfmt()),
    });
    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--exclude",
        "tracer-ebpf",
        "--all-targets",
        // root-tests: lint the root integration tests too.
        "--all-features",
        "--",
        "-D",
        "warnings",
    ]);
    steps.push(Step {
        name: "clippy (host crates)",
        cmd: Ok(clippy),
    });
    // The integration tests again without root-tests, as the unit test step builds
    // them: helpers used only by the root modules must be gated like them, or they are
    // dead code there.
    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "-p",
        "tracer-user",
        "--test",
        "integration",
        "--",
        "-D",
        "warnings",
    ]);
    steps.push(Step {
        name: "clippy (integration tests without root-tests)",
        cmd: Ok(clippy),
    });
    if setup::using_debian_toolchain() {
        println!(
            "note: skipping clippy on the eBPF crate: the Debian toolchain `{}` has no clippy for the BPF target",
            setup::DEBIAN_TOOLCHAIN
        );
    } else {
        let mut clippy = cargo();
        clippy
            .args([
                "+nightly",
                "clippy",
                "--release",
                "--target",
                "bpfel-unknown-none",
                "-Z",
                "build-std=core",
            ])
            .args(["--", "-D", "warnings"])
            .current_dir(root.join("tracer-ebpf"))
            .env("CARGO_ENCODED_RUSTFLAGS", EBPF_RUSTFLAGS)
            // Own target dir: these flags and the nightly compiler would otherwise
            // invalidate the host builds' artifacts in target/.
            .env("CARGO_TARGET_DIR", root.join("target").join("ebpf-clippy"));
        steps.push(Step {
            name: "clippy (eBPF crate)",
            cmd: Ok(clippy),
        });
    }
    steps
}

/// rustfmt in check mode. rustfmt.toml uses unstable options (`group_imports`,
/// `imports_granularity`) that only nightly rustfmt applies; stable would check a different
/// formatting, so it is only a fallback with a note.
fn rustfmt() -> Command {
    let mut cmd = cargo();
    let nightly_rustfmt = Command::new("rustup")
        .args(["run", "nightly", "rustfmt", "--version"])
        .output()
        .is_ok_and(|out| out.status.success());
    if nightly_rustfmt {
        cmd.arg("+nightly");
    } else {
        println!(
            "note: nightly rustfmt unavailable; checking with stable rustfmt (unstable options ignored)"
        );
    }
    cmd.args(["fmt", "--all", "--check"]);
    cmd
}

/// Sets the working directory to `dir` unless the step chose its own.
trait CurrentDirIfUnset {
    fn current_dir_if_unset(&mut self, dir: &std::path::Path) -> &mut Self;
}

impl CurrentDirIfUnset for Command {
    fn current_dir_if_unset(&mut self, dir: &std::path::Path) -> &mut Self {
        if self.get_current_dir().is_none() {
            self.current_dir(dir);
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::describe;

    #[test]
    fn ebpf_rustflags_are_unit_separated() {
        let flags: Vec<&str> = EBPF_RUSTFLAGS.split('\x1f').collect();
        assert_eq!(
            flags,
            ["--cfg=bpf_target_arch=\"x86_64\"", "-Clink-arg=--btf"]
        );
    }

    #[test]
    fn describe_quotes_what_needs_it() {
        let mut cmd = Command::new("cargo");
        cmd.args(["test", "a b"]).env("X", "1");
        assert_eq!(describe(&cmd), "X=1 cargo test 'a b'");
    }
}
