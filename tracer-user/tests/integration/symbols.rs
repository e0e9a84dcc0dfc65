//! Root integration tests: names and stacks when the target's program changes or has no
//! path (issue 16 points 7–9): an `exec` during the trace, a program run from a memfd.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::common::{
    Names, Target, as_strs, assert_cycle, assert_success, build_target, deadlocks, describe,
    json_attach_args, json_lines, lock_by_addr, name_of, parse_hex, require_root, run_tracer,
    summary,
};

/// The `key=value` facts a program printed after the first `ready` (the program the target
/// executed prints its own), waiting up to `timeout` for its `ready`.
fn facts_after_exec(target: &mut Target, timeout: Duration) -> HashMap<String, String> {
    let deadline = Instant::now() + timeout;
    loop {
        let lines = target.later_lines();
        if lines.iter().any(|l| l == "ready") {
            return lines
                .iter()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
        }
        assert!(
            Instant::now() < deadline,
            "the executed program printed no `ready`: {lines:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn hex_fact(facts: &HashMap<String, String>, key: &str) -> u64 {
    facts
        .get(key)
        .and_then(|v| parse_hex(v))
        .unwrap_or_else(|| panic!("no address fact {key}: {facts:?}"))
}

fn notes(summary: &Value) -> Vec<&str> {
    summary["notes"]
        .as_array()
        .expect("notes array")
        .iter()
        .filter_map(Value::as_str)
        .collect()
}

/// Guards against: names lost, or taken from the wrong program, after the target
/// `exec`s another program during the trace (issue 16 point 8). `exec_contend` contends
/// `first_lock`, then executes `abba`, which deadlocks on `lock_a`/`lock_b`. The deadlock
/// must name the new program's locks (at the addresses it printed), the summary must
/// still name `first_lock` from the old program (its stacks and name from its own
/// symbols), and a note must say which program was executed and that symbols were
/// reloaded. Checked to fail before the fix: the deadlock's locks were named from the old
/// program's symbols (no names), and the note said only "names may be wrong".
#[test]
fn exec_reloads_symbols_and_keeps_the_old_programs_names() {
    check_exec(&[]);
}

/// Guards against: `--holds` lock probes silently lost, or said lost when they still
/// fire, after an `exec`: uprobes belong to files, and the new program maps the same C
/// library, so its holders must still be known (`held_ns` in the cycle), and the note
/// must say the probes still apply.
#[test]
fn exec_with_holds_keeps_the_c_library_probes() {
    let (values, abba_path) = check_exec(&["--holds"]);
    for entry in deadlocks(&values)[0]["cycle"].as_array().unwrap() {
        assert!(
            entry["held_ns"].is_u64(),
            "a holder seen by the probes after the exec: {entry:#}"
        );
    }
    let notes = notes(summary(&values));
    assert!(
        notes
            .iter()
            .any(|n| n.contains(&format!("the target executed {abba_path}"))
                && n.contains("--holds lock probes in")
                && n.contains("still apply")),
        "{notes:?}"
    );
}

/// Runs the tracer (with `extra` flags) on `exec_contend` executing `abba` and checks the
/// names on both sides of the exec; returns the report and the path of `abba`.
fn check_exec(extra: &[&str]) -> (Vec<Value>, String) {
    require_root();
    let contend = build_target("exec_contend", &[]);
    let abba = build_target("abba", &[]);
    let abba_path = abba.path().to_str().expect("utf-8 path");
    let mut target = Target::spawn(contend.path(), &["1500", abba_path]);
    let first_lock = target.lock("first_lock");
    let out = run_tracer(&as_strs(&json_attach_args(target.pid(), 5, extra)));
    assert_success(&out);
    let facts = facts_after_exec(&mut target, Duration::from_secs(2));
    let (lock_a, lock_b) = (
        hex_fact(&facts, "lock.lock_a"),
        hex_fact(&facts, "lock.lock_b"),
    );
    let values = json_lines(&out.stdout);
    let found = deadlocks(&values);
    assert_eq!(found.len(), 1, "one deadlock\n{}", describe(&out));
    for entry in found[0]["cycle"].as_array().expect("cycle") {
        let held = parse_hex(entry["holds"]["addr"].as_str().expect("addr")).expect("hex address");
        let (want_held, want_name) = if held == lock_a {
            (lock_a, "lock_a")
        } else {
            (lock_b, "lock_b")
        };
        assert_eq!(held, want_held, "{entry:#}");
        assert_eq!(
            name_of(&entry["holds"]),
            Some(want_name),
            "the new program's lock, named from its symbols\n{}",
            describe(&out)
        );
        let stack: Vec<&str> = entry["stack"]
            .as_array()
            .expect("stack array")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            stack.iter().any(|f| f.contains("worker_")),
            "the new program's frames: {stack:?}"
        );
    }
    let s = summary(&values);
    let old = lock_by_addr(s, first_lock)
        .unwrap_or_else(|| panic!("first_lock in the summary\n{}", describe(&out)));
    assert_eq!(
        name_of(old),
        Some("first_lock"),
        "the old program's lock, named from its own symbols: {old:#}"
    );
    let old_stack: Vec<&str> = old["top_waiter_stack"]
        .as_array()
        .expect("stack array")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        old_stack
            .iter()
            .any(|f| f.starts_with("pthread_mutex_lock")),
        "the old program's stack, from its own symbols: {old_stack:?}"
    );
    // With `--holds`, the return address into `contender_main` is the uretprobe
    // trampoline's while the lock call is probed, which a summary stack cannot resolve
    // (no waiting thread to ask for its call site).
    if extra.is_empty() {
        assert!(
            old_stack.iter().any(|f| f.contains("contender_main")),
            "the old program's stack, from its own symbols: {old_stack:?}"
        );
    }
    assert!(
        old_stack
            .iter()
            .all(|f| !f.contains('?') && !f.contains("+0x1 (")),
        "no unchecked frames in the old program's stack: {old_stack:?}"
    );
    for (addr, name) in [(lock_a, "lock_a"), (lock_b, "lock_b")] {
        let lock = lock_by_addr(s, addr).unwrap_or_else(|| panic!("{name} in the summary"));
        assert_eq!(name_of(lock), Some(name), "{lock:#}");
    }
    let notes = notes(s);
    assert!(
        notes
            .iter()
            .any(|n| n.contains(&format!("the target executed {abba_path}"))
                && n.contains("symbols were reloaded from it")),
        "the exec note: {notes:?}"
    );
    (values, abba_path.to_owned())
}

/// Guards against: no names for a program run from a memfd (`memfd_create` +
/// `fexecve`, as some launchers and self-updating services do; issue 16 point 8): it has
/// no path (`/memfd:memfd_target (deleted)`), and its symbols must come from the still
/// open file through `/proc/PID/map_files`. `abba`, copied into a memfd and executed from
/// there, must give its cycle with `lock_a`/`lock_b` named. Checked to fail (no names)
/// with the `map_files` route disabled.
#[test]
fn memfd_program_names_its_locks() {
    require_root();
    let launcher = build_target("memfd_launch", &[]);
    let abba = build_target("abba", &[]);
    let target = Target::spawn(
        launcher.path(),
        &[abba.path().to_str().expect("utf-8 path")],
    );
    target.wait_in_futex(
        &[target.tid("worker_a"), target.tid("worker_b")],
        Duration::from_secs(5),
    );
    let exe = std::fs::read_link(format!("/proc/{}/exe", target.pid())).unwrap();
    assert!(
        exe.to_string_lossy().starts_with("/memfd:memfd_target"),
        "the target runs from a memfd: {}",
        exe.display()
    );
    let out = run_tracer(&as_strs(&json_attach_args(target.pid(), 2, &[])));
    assert_success(&out);
    let values = json_lines(&out.stdout);
    let found = deadlocks(&values);
    assert_eq!(found.len(), 1, "one deadlock\n{}", describe(&out));
    assert_cycle(
        &target,
        found[0],
        &[
            ("worker_a", "lock_a", "lock_b"),
            ("worker_b", "lock_b", "lock_a"),
        ],
        Names::Symbols,
    );
}

/// The top waiter stack of lock `addr` in the summary of `values`.
fn top_waiter_stack(values: &[Value], addr: u64) -> Vec<String> {
    let s = summary(values);
    let lock = lock_by_addr(s, addr).unwrap_or_else(|| panic!("lock {addr:#x} in {s:#}"));
    lock["top_waiter_stack"]
        .as_array()
        .expect("stack array")
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

/// Guards against: heap addresses shown as frames (issue 16: `[heap]+0x58d50`). Code
/// without frame pointers may keep anything in `rbp`; `rbp_heap` waits with `rbp` at a
/// stack slot pair whose "return address" is a heap pointer, which the kernel's
/// frame-pointer walk takes for a frame. Only words that follow a call in executable code
/// may be frames. Checked to fail (`[heap]+0x…` last frame) before the fix.
#[test]
fn frame_pointer_chain_into_the_heap_gives_no_frame() {
    require_root();
    let bin = build_target("rbp_heap", &[]);
    let target = Target::spawn(bin.path(), &["1000"]);
    let out = run_tracer(&as_strs(&json_attach_args(target.pid(), 3, &[])));
    assert_success(&out);
    let stack = top_waiter_stack(&json_lines(&out.stdout), target.lock("heap_test_lock"));
    let heap_word = parse_hex(target.fact("heap_word")).expect("heap_word address");
    assert!(
        stack.iter().any(|f| f.starts_with("wait_with_heap_rbp"))
            && stack.iter().any(|f| f.starts_with("waiter_main")),
        "the real frames: {stack:?}"
    );
    assert!(
        stack
            .iter()
            .all(|f| !f.contains("[heap]") && !f.contains(&format!("{heap_word:#x}"))),
        "a heap word taken for a frame: {stack:?}"
    );
}

/// Guards against: frames made up of non-return addresses in reports made after the
/// target exited (issue 16: `libc.so.6+0x1 (pthread_create.c:238)` between
/// `start_thread` and `clone3`): with the target's memory gone, a stack word pointing
/// into code was taken for a return address unchecked. `exec_contend` contends
/// `first_lock`, then exits (the program it tries to execute does not exist). Its stack
/// must hold the real frames and no frame at an offset of 1 or marked unchecked. Checked
/// to fail (`libc.so.6+0x1`) before the fix.
#[test]
fn stacks_reported_after_the_target_exited_are_checked() {
    require_root();
    let bin = build_target("exec_contend", &[]);
    let target = Target::spawn(bin.path(), &["1000", "/nonexistent/program"]);
    let out = run_tracer(&as_strs(&json_attach_args(target.pid(), 5, &[])));
    assert_success(&out);
    let values = json_lines(&out.stdout);
    let notes = notes(summary(&values));
    assert!(
        notes.iter().any(|n| n.contains("exited during the trace")),
        "the target exited before the report: {notes:?}"
    );
    let stack = top_waiter_stack(&values, target.lock("first_lock"));
    assert!(
        stack.iter().any(|f| f.starts_with("contender_main"))
            && stack.iter().any(|f| f.starts_with("start_thread")),
        "the real frames: {stack:?}"
    );
    assert!(
        stack
            .iter()
            .all(|f| !f.contains("+0x1 (") && !f.contains('?')),
        "an unchecked word taken for a frame: {stack:?}"
    );
}

/// Guards against: the Go side of a program that `exec`s another one going on as if
/// nothing happened (its goroutine snapshots would read the new program's memory, its
/// lock names would be lost) or being dropped without a word. `go_exec` contends
/// `main.mu`, then executes `abba`: the summary keeps `main.mu` as a Go mutex named from
/// the Go program, the deadlock names the new program's locks, and the note says the Go
/// sites no longer apply. Checked to fail before the fix (the deadlock's locks unnamed).
#[test]
fn exec_from_a_go_program_keeps_its_go_locks_and_says_the_sites_are_gone() {
    require_root();
    let dir = tempfile::tempdir().expect("temp dir");
    let [go119, _] = crate::go_toolchain::installed();
    let go_exec = crate::go_toolchain::build(&go119, "go_exec", dir.path(), false);
    let abba = build_target("abba", &[]);
    let abba_path = abba.path().to_str().expect("utf-8 path");
    let mut target = Target::spawn(&go_exec, &[abba_path]);
    let out = run_tracer(&as_strs(&json_attach_args(target.pid(), 5, &[])));
    assert_success(&out);
    let facts = facts_after_exec(&mut target, Duration::from_secs(2));
    let values = json_lines(&out.stdout);
    let found = deadlocks(&values);
    assert_eq!(found.len(), 1, "one deadlock\n{}", describe(&out));
    let lock_a = hex_fact(&facts, "lock.lock_a");
    let names: Vec<Option<&str>> = found[0]["cycle"]
        .as_array()
        .expect("cycle")
        .iter()
        .map(|e| name_of(&e["holds"]))
        .collect();
    assert!(
        names.contains(&Some("lock_a")) && names.contains(&Some("lock_b")),
        "the new program's locks: {names:?}\n{}",
        describe(&out)
    );
    // Not `summary`, whose shape check knows the native lock types only.
    let s = values
        .iter()
        .find(|v| crate::common::kind(v) == "summary")
        .expect("summary line");
    assert!(
        lock_by_addr(s, lock_a).is_some(),
        "lock_a in the summary: {s:#}"
    );
    let go_mutex = crate::common::locks(s)
        .iter()
        .find(|l| name_of(l) == Some("main.mu"))
        .unwrap_or_else(|| panic!("main.mu in the summary: {s:#}"));
    assert_eq!(go_mutex["type"].as_str(), Some("go_mutex"), "{go_mutex:#}");
    let notes = notes(s);
    assert!(
        notes
            .iter()
            .any(|n| n.contains(&format!("the target executed {abba_path}"))
                && n.contains(
                    "Go lock sites and goroutine snapshots of the previous program no longer apply"
                )),
        "{notes:?}"
    );
}

/// Whether `function` is one of the C library's mutex-wait internals (glibc's names vary
/// between versions: `__futex_abstimed_wait_common`, `__pthread_mutex_clocklock_common`,
/// `___pthread_mutex_timedlock`, `__lll_lock_wait`, …).
fn is_mutex_wait_internal(function: &str) -> bool {
    [
        "__futex",
        "futex_",
        "__pthread_mutex",
        "___pthread_mutex",
        "pthread_mutex",
        "__lll",
    ]
    .iter()
    .any(|p| function.starts_with(p))
}

/// The application frames of a `timed_abba` wait's stack (after the C library's lock
/// internals), checking that the stack starts with those internals.
fn after_lock_internals(stack: &[String]) -> &[String] {
    let internals = stack
        .iter()
        .take_while(|f| is_mutex_wait_internal(f))
        .count();
    assert!(
        internals >= 1,
        "the stack starts in the C library's wait: {stack:?}"
    );
    &stack[internals..]
}

/// Guards against: stale frames in the stacks of futex waits (issue 16 point 9; Must-have
/// 7). The words of the copied stack that merely follow a call were all taken for frames,
/// so leftovers of earlier calls showed up: `new_do_write` (a `printf`) and
/// `worker_b_main` between `__pthread_mutex_clocklock_common` and the program's lock
/// call, and `worker_a_main` appended after `clone3` to `worker_b`'s stack (the
/// `start_routine` pointer in glibc's thread descriptor, equal to the end of the function
/// before it). With CFI unwinding, each cycle entry of `timed_abba` (built with frame
/// pointers in the program, none in glibc) is exactly what its source says: the C
/// library's wait, then `timed_take` (`worker_a`) or `clock_take` (`worker_b`), `rounds`, the
/// worker's own main, `start_thread`, `clone3`; and each lock's top waiter stack, that
/// sequence or its beginning (the copied window may end before the outermost frame),
/// never a function of the other worker. Checked to fail before the CFI walk (the frames
/// above in the stacks).
#[test]
fn timed_lock_stacks_hold_only_their_own_frames() {
    require_root();
    let bin = build_target("timed_abba", &[]);
    let mut target = Target::spawn(bin.path(), &[]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !target.later_lines().iter().any(|l| l == "backed_off") {
        assert!(Instant::now() < deadline, "timed_abba never backed off");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = run_tracer(&as_strs(&json_attach_args(target.pid(), 2, &[])));
    assert_success(&out);
    let values = json_lines(&out.stdout);
    let expected = |worker: &str| -> Vec<String> {
        let take = if worker == "worker_a" {
            "timed_take"
        } else {
            "clock_take"
        };
        [
            take,
            "rounds",
            &format!("{worker}_main"),
            "start_thread",
            "clone3",
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let found = deadlocks(&values);
    assert!(!found.is_empty(), "the timed cycle\n{}", describe(&out));
    for cycle in found {
        for entry in cycle["cycle"].as_array().expect("cycle array") {
            let tid = entry["tid"].as_u64().expect("tid");
            let worker = ["worker_a", "worker_b"]
                .into_iter()
                .find(|w| target.tid(w) == tid)
                .unwrap_or_else(|| panic!("a worker's tid: {entry:#}"));
            let stack: Vec<String> = entry["stack"]
                .as_array()
                .expect("stack array")
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect();
            assert_eq!(
                after_lock_internals(&stack),
                expected(worker),
                "{worker}'s stack: {stack:?}"
            );
        }
    }
    for (lock, worker) in [("lock_b", "worker_a"), ("lock_a", "worker_b")] {
        // `timed_take+0x2a (timed_abba.c:55)`: the function alone.
        let stack: Vec<String> = top_waiter_stack(&values, target.lock(lock))
            .iter()
            .map(|f| f.split(['+', ' ']).next().unwrap_or_default().to_owned())
            .collect();
        let frames = after_lock_internals(&stack);
        let expected = expected(worker);
        assert!(
            frames.len() >= 2 && expected.starts_with(frames),
            "{lock}'s top waiter stack is {worker}'s (a beginning of {expected:?}): {stack:?}"
        );
    }
}
