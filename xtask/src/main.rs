//! Developer tasks for the tracer, run as `cargo xtask <task>` (alias in
//! `.cargo/config.toml`):
//!
//! - `setup`: install what the eBPF build and the tests need (idempotent);
//! - `build`: the release binary, target/release/tracer;
//! - `test`: rustfmt, clippy, unit tests, root integration tests;
//! - `demo`: trace the bundled deadlocking program;
//! - `bench`: the measurements behind BENCHMARKS.md;
//! - `install`: `tracer` into /usr/local/bin.
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod check;
mod demo;
mod setup;
mod util;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Developer tasks for the tracer")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what the eBPF build and the tests need; skips what is present.
    Setup(setup::SetupArgs),
    /// Build the release binary (target/release/tracer).
    Build,
    /// Run setup, then rustfmt, clippy, unit tests and the root integration tests.
    Test(check::TestArgs),
    /// Run setup and build, then trace the bundled deadlocking demo program.
    Demo(demo::DemoArgs),
    /// Install `tracer` into /usr/local/bin (after setup).
    Install,
    /// Benchmarks (see BENCHMARKS.md); arguments go to the bench, try `-- --help`.
    Bench {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Setup(args) => setup::run_setup(&args),
        Task::Build => demo::build(),
        Task::Test(args) => check::run_test(&args),
        Task::Demo(args) => demo::run_demo(&args),
        Task::Install => install(),
        Task::Bench { args } => bench::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Installs into /usr/local so `sudo tracer` finds it: sudo's `secure_path` includes
/// /usr/local/bin but not ~/.cargo/bin.
fn install() -> anyhow::Result<()> {
    setup::run_setup(&setup::SetupArgs::default())?;
    util::run(
        util::cargo()
            .args([
                "install",
                "--path",
                "tracer-user",
                "--locked",
                "--root",
                "/usr/local",
            ])
            .current_dir(util::workspace_root()),
    )
}
