//! Root integration tests: `tracer attach --bpf-log`, the eBPF programs' diagnostics
//! (`aya-log` messages about paths they should not take, printed as `tracer: bpf: …`).

use std::process::Output;

use crate::{
    common::{
        Target, as_strs, assert_success, build_target, describe, json_attach_args, json_lines,
        kind, require_root, run_tracer, u64_field,
    },
    go_toolchain,
};

/// The diagnostics the tracer printed on stderr.
fn bpf_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.starts_with("tracer: bpf: "))
        .map(str::to_owned)
        .collect()
}

/// Guards the whole path of a diagnostic, and its absence when not asked for: with
/// `--bpf-log` the kernel programs load with their logging (the `--holds` uprobes too),
/// reach an unexpected path the target provokes (a futex wait on an unmapped word, whose
/// lock memory the `sys_exit` program cannot copy), and the message reaches stderr; without
/// the flag the same run prints no diagnostic at all.
#[test]
fn bpf_log_prints_what_the_programs_report_and_nothing_without_the_flag() {
    require_root();
    let bin = build_target("futex_fault", &[]);
    let target = Target::spawn(bin.path(), &[]);
    assert_eq!(
        target.fact("first_errno"),
        "14",
        "the target's futex waits must fail with EFAULT"
    );
    let pid = target.pid().to_string();
    let expected = format!(
        "tracer: bpf: debug: thread {}: cannot read the lock memory around futex word {}",
        target.fact("tid.faulter"),
        target.fact("fault_addr"),
    );

    let out = run_tracer(&[
        "attach",
        "--pid",
        &pid,
        "--duration",
        "1",
        "--holds",
        "--bpf-log",
    ]);
    assert_success(&out);
    let lines = bpf_lines(&out);
    assert!(
        lines.contains(&expected),
        "expected `{expected}` on stderr\n{}",
        describe(&out)
    );

    let out = run_tracer(&["attach", "--pid", &pid, "--duration", "1", "--holds"]);
    assert_success(&out);
    assert!(
        bpf_lines(&out).is_empty(),
        "no diagnostics without --bpf-log\n{}",
        describe(&out)
    );
}

/// Guards the Go site program with its diagnostics on: the verifier accepts it, the
/// `uprobe_multi` loader links the functions that send its messages (BPF-to-BPF calls),
/// and its records still flow (a healthy Go target provokes no diagnostic worth asserting
/// on: a hot lock may fill the ring buffer, which is one).
#[test]
fn bpf_log_loads_the_go_site_program() {
    require_root();
    let dir = tempfile::Builder::new()
        .prefix("tracer-it-bpf-log-go-")
        .tempdir()
        .expect("create temp dir for Go target");
    let [_, go125] = go_toolchain::installed();
    let exe = go_toolchain::build(&go125, "go_hot", dir.path(), false);
    // One second of load, starting half a second after `ready`.
    let target = Target::spawn(&exe, &["1", "500"]);
    let args = json_attach_args(target.pid(), 2, &["--bpf-log"]);
    let out = run_tracer(&as_strs(&args));
    assert_success(&out);
    // The `uprobe_multi` copy of the program links the functions that send messages.
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("uprobe_multi unavailable"),
        "the Go sites fell back to one uprobe each\n{}",
        describe(&out)
    );
    let values = json_lines(&out.stdout);
    let summary = values
        .iter()
        .find(|v| kind(v) == "summary")
        .unwrap_or_else(|| panic!("no summary\n{}", describe(&out)));
    let events = u64_field(summary, "events");
    assert!(
        events > 0,
        "the Go sites sent no records\n{}",
        describe(&out)
    );
}
