//! The programs the tests run besides the tracer (gcc, binutils, Go, bpftool). A missing
//! one fails the test with one line that names it and says how to get it: a test that
//! cannot run its tools has not passed, so none of them skips.
use std::{
    io::ErrorKind,
    process::{Command, Output},
};

/// Fails the test because `what` is missing; `source` says where `cargo xtask setup`
/// installs it from (e.g. "Debian package gcc").
#[track_caller]
pub(crate) fn missing(what: &str, source: &str) -> ! {
    panic!(
        "{what} is missing ({source}): run `cargo xtask setup`, which installs everything the \
         tests need"
    )
}

/// Runs `cmd` to completion and returns its output. When its program is not installed,
/// fails the test with [`missing`], naming the Debian `package` that has it.
#[track_caller]
pub(crate) fn output(cmd: &mut Command, package: &str) -> Output {
    match cmd.output() {
        Ok(out) => out,
        Err(err) => {
            let program = cmd.get_program().to_string_lossy().into_owned();
            if err.kind() == ErrorKind::NotFound {
                missing(&program, &format!("Debian package {package}"));
            }
            panic!("cannot run {program}: {err}")
        }
    }
}

/// Fails the test with [`missing`] unless gcc can be run (for the builds that use it
/// indirectly, like cgo's, whose own failure would not say so plainly).
#[cfg(feature = "root-tests")]
#[track_caller]
pub(crate) fn require_gcc() {
    let out = output(Command::new("gcc").arg("--version"), "gcc");
    assert!(out.status.success(), "gcc --version failed: {}", out.status);
}
