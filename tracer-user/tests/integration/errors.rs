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

/// Runs `tracer attach --pid PID --duration 5` and returns its one-line error (see
/// [`assert_one_line_error`]).
fn refused_attach(pid: &str) -> String {
    let t = Tracer::spawn_with(&["attach", "--pid", pid, "--duration", "5"], |c| {
        c.env_remove("RUST_LOG").env_remove("RUST_BACKTRACE");
    });
    assert_one_line_error(&t.wait(Duration::from_secs(20)))
}

/// Guards against: the id of a thread that is not its process's leader (`/proc/TID`
/// exists for every thread) being traced as if it were a process, which gave a
/// summary of nothing and exit 0. It must be refused in one line that names the
/// process to give instead.
#[test]
fn attach_to_a_non_leader_thread_names_its_process() {
    require_root();
    let bin = build_target("abba", &[]);
    let target = Target::spawn(bin.path(), &[]);
    let tid = target.tid("worker_a").to_string();
    let line = refused_attach(&tid);
    let pid = target.pid().to_string();
    assert!(
        line.starts_with("tracer: error: ")
            && line.contains(&tid)
            && line.contains(&format!("process {pid}"))
            && line.contains(&format!("--pid {pid}")),
        "the error should name thread {tid} and its process {pid}: {line}"
    );
}

/// Guards against: a kernel thread (`--pid 2`, kthreadd) being traced as a process,
/// which gave a note about its missing executable, an empty summary and exit 0.
#[test]
fn attach_to_a_kernel_thread_fails_with_one_line() {
    require_root();
    let status = fs::read_to_string("/proc/2/status").expect("read /proc/2/status");
    assert!(
        status.lines().any(|l| l == "Name:\tkthreadd"),
        "pid 2 should be kthreadd: {status}"
    );
    let line = refused_attach("2");
    assert!(
        line.starts_with("tracer: error: 2 ") && line.contains("kernel thread"),
        "the error should say 2 is a kernel thread: {line}"
    );
}

/// Guards against: a 32-bit program being traced with the 64-bit layouts (an empty or
/// wrong report and exit 0) instead of being refused in one line. (x86-64 only: gcc
/// builds its 32-bit programs with `-m32`.)
#[cfg(target_arch = "x86_64")]
#[test]
fn attach_to_a_32_bit_program_fails_with_one_line() {
    require_root();
    require_gcc_m32();
    let bin = build_target("exits_soon", &["-m32"]);
    let exe = fs::read(bin.path()).expect("read the target");
    assert_eq!(
        exe.get(4),
        Some(&1),
        "gcc -m32 should build an ELFCLASS32 file"
    );
    let target = Target::spawn(bin.path(), &["30"]);
    let pid = target.pid().to_string();
    let line = refused_attach(&pid);
    assert!(
        line.starts_with("tracer: error: ") && line.contains(&pid) && line.contains("32-bit"),
        "the error should say process {pid} is 32-bit: {line}"
    );
}

/// Fails the test, saying what to install, unless gcc can build 32-bit programs.
#[cfg(target_arch = "x86_64")]
pub(crate) fn require_gcc_m32() {
    let dir = tempfile::tempdir().expect("temp dir");
    let src = dir.path().join("m32.c");
    fs::write(&src, "int main(void) { return 0; }\n").expect("write m32.c");
    let out = crate::tools::output(
        std::process::Command::new("gcc")
            .arg("-m32")
            .arg("-o")
            .arg(dir.path().join("m32"))
            .arg(&src),
        "gcc",
    );
    if !out.status.success() {
        crate::tools::missing("gcc -m32 (32-bit C library)", "Debian package gcc-multilib");
    }
}
