//! `cargo xtask demo`: builds the tracer and the bundled deadlocking program
//! (`xtask/demo/deadlock_demo.c`), starts the program, and attaches the tracer to it so
//! the DEADLOCK report and the summary appear on the terminal.
use std::{
    fs,
    process::{Child, Command},
    thread,
    time::Duration,
};

use anyhow::{Context as _, bail};

use crate::{
    setup::{self, SetupArgs},
    util::{cargo, is_root, run, workspace_root},
};

/// Long enough for the tellers to take their first locks (they pause 200 ms between the
/// two), so the deadlock usually forms before the tracer attaches; the tracer reports
/// both cases.
const SETTLE: Duration = Duration::from_millis(500);
const TRACE_SECS: &str = "5";

#[derive(clap::Args)]
pub(crate) struct DemoArgs {
    /// Print newline-delimited JSON instead of text (`--format json`).
    #[arg(long)]
    json: bool,
    /// Also trace lock acquisitions and releases (uprobes): adds hold times.
    #[arg(long)]
    holds: bool,
}

/// Kills and reaps the demo program however the task ends (error, panic or success).
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // Errors mean it is already gone, which is what we want.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn run_demo(args: &DemoArgs) -> anyhow::Result<()> {
    setup::run_setup(&SetupArgs::default())?;
    build()?;
    if !is_root() {
        bail!(
            "the tracer needs root (or CAP_BPF + CAP_PERFMON + CAP_SYS_PTRACE): run `sudo -E cargo xtask demo`"
        );
    }

    let root = workspace_root();
    let out_dir = root.join("target").join("demo");
    fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let demo_bin = out_dir.join("deadlock_demo");
    // -g and frame pointers: names for the locks and readable stacks in the report.
    run(Command::new("gcc")
        .args(["-g", "-O0", "-fno-omit-frame-pointer", "-pthread", "-o"])
        .arg(&demo_bin)
        .arg(root.join("xtask").join("demo").join("deadlock_demo.c")))?;

    println!("\nstarting {}", demo_bin.display());
    let demo = KillOnDrop(
        Command::new(&demo_bin)
            .spawn()
            .with_context(|| format!("starting {}", demo_bin.display()))?,
    );
    let pid = demo.0.id().to_string();
    thread::sleep(SETTLE);

    let mut tracer = Command::new(root.join("target").join("release").join("tracer"));
    tracer.args(["attach", "--pid", &pid, "--duration", TRACE_SECS]);
    if args.json {
        tracer.args(["--format", "json"]);
    }
    if args.holds {
        tracer.arg("--holds");
    }
    println!();
    // The demo deadlocks: the tracer says so with its exit status, 3 (README "Exit
    // status"), which is the demo working, not failing.
    let result = tracer
        .status()
        .context("could not start the tracer")
        .and_then(|status| match status.code() {
            Some(0 | 3) => Ok(()),
            _ => Err(anyhow::anyhow!("the tracer failed ({status})")),
        });
    drop(demo);
    println!("\ndemo: stopped deadlock_demo (pid {pid})");
    result
}

/// `cargo xtask build`: the release tracer, at target/release/tracer.
pub(crate) fn build() -> anyhow::Result<()> {
    run(cargo()
        .args(["build", "--release", "-p", "tracer-user"])
        .current_dir(workspace_root()))
}
