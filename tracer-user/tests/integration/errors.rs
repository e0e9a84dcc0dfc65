//! Root integration tests: bad input to `tracer attach` (one line on stderr, non-zero exit).

use std::{
    fs,
    os::unix::{fs::PermissionsExt, process::CommandExt},
    path::Path,
    process::Output,
    time::Duration,
};

use crate::common::{Target, Tracer, build_target, describe, require_root, tracer_bin};

/// A pid above the kernel's maximum (`pid_max` is at most 2^22), so it never exists.
const NO_SUCH_PID: &str = "999999999";

/// Asserts the contract for bad input: non-zero exit, nothing on stdout, exactly one
/// (non-empty) line on stderr; returns that line.
fn assert_one_line_error(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "tracer should fail\n{}",
        describe(out)
    );
    assert!(
        out.stdout.is_empty(),
        "nothing may be printed on stdout\n{}",
        describe(out)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "expected exactly one line on stderr\n{}",
        describe(out)
    );
    lines[0].to_string()
}

/// Guards against: panicking, printing a multi-line backtrace/log dump, exiting 0, or
/// waiting forever when the pid does not exist.
#[test]
fn attach_to_missing_pid_fails_with_one_line() {
    require_root();
    for extra in [&[][..], &["--format", "json"][..]] {
        let mut args = vec!["attach", "--pid", NO_SUCH_PID];
        args.extend_from_slice(extra);
        let t = Tracer::spawn_with(&args, |c| {
            c.env_remove("RUST_LOG").env_remove("RUST_BACKTRACE");
        });
        let out = t.wait(Duration::from_secs(20));
        let line = assert_one_line_error(&out);
        assert!(
            line.contains(NO_SUCH_PID),
            "the error should name the pid: {line}"
        );
    }
}

/// Guards against: an unprivileged user getting a confusing multi-line failure (or a
/// partial attach) instead of one clear line and a non-zero exit.
#[test]
fn attach_without_privileges_fails_with_one_line() {
    require_root();
    // Copy the binary where user `nobody` can execute it.
    let dir = tempfile::Builder::new()
        .prefix("tracer-it-unpriv-")
        .tempdir()
        .expect("temp dir");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod dir");
    let exe = dir.path().join("tracer");
    fs::copy(tracer_bin(), &exe).expect("copy tracer binary");
    fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).expect("chmod tracer");

    let bin = build_target("exits_soon", &[]);
    let target = Target::spawn(bin.path(), &["30"]);
    let pid = target.pid().to_string();
    for extra in [&[][..], &["--format", "json"][..]] {
        let mut args = vec!["attach", "--pid", pid.as_str(), "--duration", "3"];
        args.extend_from_slice(extra);
        let t = Tracer::spawn_exe(Path::new(&exe), &args, |c| {
            // nobody:nogroup; std drops supplementary groups when it sets the uid as root.
            c.uid(65534)
                .gid(65534)
                .current_dir("/")
                .env_remove("RUST_LOG")
                .env_remove("RUST_BACKTRACE");
        });
        let out = t.wait(Duration::from_secs(20));
        assert_one_line_error(&out);
    }
}

/// Guards against: a target that exits while the tracer is attaching leaving the tracer
/// hung, panicking, or tracing a process that is gone. It must say so in one line and exit
/// non-zero. (The tracer's test-only `TRACER_TEST_ATTACH_DELAY_MS` holds it between reading
/// the target and attaching, and the target exits in that window; it is not reaped, so
/// this also checks that a zombie counts as exited.)
#[test]
fn target_exiting_during_attach_fails_with_one_line() {
    require_root();
    let bin = build_target("exits_soon", &[]);
    let target = Target::spawn(bin.path(), &["1"]);
    let pid = target.pid().to_string();
    let tracer = Tracer::spawn_with(&["attach", "--pid", &pid, "--duration", "10"], |cmd| {
        cmd.env("TRACER_TEST_ATTACH_DELAY_MS", "3000");
    });
    let out = tracer.wait(Duration::from_secs(30));
    assert!(
        !out.status.success(),
        "tracer should fail\n{}",
        describe(&out)
    );
    assert!(
        out.stdout.is_empty(),
        "nothing on stdout\n{}",
        describe(&out)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "exactly one line on stderr\n{}",
        describe(&out)
    );
    assert!(
        lines[0].contains("exited while the tracer was attaching") && lines[0].contains(&pid),
        "the line says the target exited: {stderr}"
    );
}
