//! Root integration tests: programs on musl (Alpine-based images are musl), built from
//! the same C targets as the glibc tests with Debian's `musl-gcc` (`musl-tools`).
//!
//! musl keeps its locks differently from glibc: a mutex's futex word is 4 bytes into it,
//! and normal mutexes and rwlocks hold no owner TID, so holders come from the lock
//! uprobes, which the tracer turns on for musl programs.

use std::time::Duration;

use serde_json::Value;

use crate::{
    common::{
        Edge, Names, PTHREAD_RWLOCK_SIZE, Target, TargetBinary, addr_of, as_strs, assert_cycle,
        assert_success, build_target_with, deadlocks, describe, json_attach_args, json_lines,
        locks, name_of, our_prog_ids, require_root, run_tracer, summary, u64_field,
    },
    serve::{serve_attached, stop_serve},
};

const MUSL_GCC: (&str, &str) = ("musl-gcc", "musl-tools");

fn build_musl(name: &str, extra_flags: &[&str]) -> TargetBinary {
    build_target_with(MUSL_GCC, name, extra_flags)
}

const LATE_ABBA: [Edge<'static>; 2] = [
    ("late_a", "first_lock", "second_lock"),
    ("late_b", "second_lock", "first_lock"),
];

/// The report's notes, as one string to search.
fn notes_of(values: &[Value]) -> String {
    summary(values)["notes"].to_string()
}

/// Guards musl contention being lost: under musl, `hot_cold`'s 4 threads hammering
/// `hot_lock` gave 119 436 futex waits and `"locks": []` (musl waits on the mutex + 4
/// with `EBUSY | 0x80000000`, which glibc's rules do not know). `hot_lock` must lead the
/// table at the address the target prints, named, as a mutex, with its contentions; and
/// no lock call may lose its entry (musl's `pthread_mutex_lock` jumps into
/// `pthread_mutex_timedlock`, which calls `pthread_mutex_trylock`: nested probed calls).
#[test]
fn musl_contention_is_attributed_to_the_named_mutex() {
    require_root();
    let bin = build_musl("hot_cold", &[]);
    let target = Target::spawn(bin.path(), &["4"]);
    let hot = target.lock("hot_lock");
    let out = run_tracer(&as_strs(&json_attach_args(target.pid(), 3, &[])));
    assert_success(&out);
    let values = json_lines(&out.stdout);
    assert!(deadlocks(&values).is_empty(), "{}", describe(&out));
    let s = summary(&values);
    let first = locks(s)
        .first()
        .unwrap_or_else(|| panic!("no locks in the summary\n{}", describe(&out)));
    assert_eq!(
        addr_of(&first["addr"]),
        hot,
        "hot_lock ({hot:#x}) first: {s:#}"
    );
    assert_eq!(name_of(first), Some("hot_lock"), "{first:#}");
    assert_eq!(first["type"].as_str(), Some("mutex"), "{first:#}");
    let contentions = u64_field(first, "contentions");
    assert!(
        contentions > 100,
        "hot_lock contentions {contentions}: {first:#}"
    );
    assert!(u64_field(&first["wait_ns"], "total") > 0, "{first:#}");
    let notes = notes_of(&values);
    assert!(notes.contains("musl"), "the musl mode is said: {notes}");
    assert!(
        !notes.contains("returned without their entry"),
        "nested lock calls lost acquisitions: {notes}"
    );
    assert!(
        !notes.contains("not found in libc"),
        "musl has no clock* lock functions to miss: {notes}"
    );
}

/// Runs `late_abba` (built by `build`) with its locks taken 1.5 s after start, so the
/// deadlock forms while the tracer is attached, and checks the one cycle: threads,
/// held and awaited lock addresses as the target prints them, and where each held lock
/// was taken (only the uprobes know a musl mutex's holder), and each waiter's stack down
/// to the program's lock call.
fn check_late_musl_abba(bin: &TargetBinary) {
    let target = Target::spawn(bin.path(), &["1500"]);
    let out = run_tracer(&as_strs(&json_attach_args(target.pid(), 4, &[])));
    assert_success(&out);
    let values = json_lines(&out.stdout);
    let found = deadlocks(&values);
    assert_eq!(
        found.len(),
        1,
        "expected exactly one deadlock\n{}",
        describe(&out)
    );
    assert_cycle(&target, found[0], &LATE_ABBA, Names::Symbols);
    for entry in found[0]["cycle"].as_array().expect("cycle array") {
        let taken = entry["acquired_at"].to_string();
        assert!(
            taken.contains("\"run\""),
            "the holder's acquisition site (run): {entry:#}"
        );
        assert!(
            entry["held_ns"].as_u64().is_some_and(|h| h > 0),
            "{entry:#}"
        );
        // musl's lock functions keep the program's call out of the kernel's stack window
        // (no frame pointers, deep frames, a return address the uretprobe replaced).
        let stack = entry["stack"].to_string();
        assert!(
            stack.contains("\"run\""),
            "the waiter's stack reaches the program's lock call (run): {entry:#}"
        );
    }
    let types: Vec<&str> = locks(summary(&values))
        .iter()
        .filter_map(|l| l["type"].as_str())
        .collect();
    assert_eq!(types, ["mutex", "mutex"], "{:#}", summary(&values));
}

/// Guards musl deadlocks never being found ("no contended locks observed"): an ABBA
/// deadlock on two default (normal) musl mutexes that forms after the attach must be
/// reported with the right cycle, holders and lock addresses, although the mutexes keep
/// no owner in memory.
#[test]
fn musl_abba_formed_after_attach_is_found_with_holders() {
    require_root();
    check_late_musl_abba(&build_musl("late_abba", &[]));
}

/// Guards static musl programs (`musl-gcc -static`): no C library is mapped, so musl
/// must be recognised from the executable's symbols and the lock uprobes put in the
/// executable itself.
#[test]
fn static_musl_abba_formed_after_attach_is_found_with_holders() {
    require_root();
    check_late_musl_abba(&build_musl("late_abba", &["-static"]));
}

/// Guards honesty about a limit: a deadlock on normal musl mutexes that formed before the
/// attach cannot get holders (nothing in memory names them, and the uprobes were not
/// there to see the acquisitions). It must not be made up, and a note must say why it
/// cannot be reported.
#[test]
fn musl_abba_formed_before_attach_is_a_note_not_a_guess() {
    require_root();
    let bin = build_musl("late_abba", &[]);
    let target = Target::spawn(bin.path(), &["0"]);
    target.wait_in_futex(
        &[target.tid("late_a"), target.tid("late_b")],
        Duration::from_secs(5),
    );
    let out = run_tracer(&as_strs(&json_attach_args(target.pid(), 2, &[])));
    assert_success(&out);
    let values = json_lines(&out.stdout);
    assert!(deadlocks(&values).is_empty(), "{}", describe(&out));
    let s = summary(&values);
    let addrs: Vec<u64> = locks(s).iter().map(|l| addr_of(&l["addr"])).collect();
    for lock in ["first_lock", "second_lock"] {
        assert!(
            addrs.contains(&target.lock(lock)),
            "{lock} waited on, at its own address: {s:#}"
        );
    }
    let notes = notes_of(&values);
    assert!(
        notes.contains("2 thread(s) waited, from before the attach")
            && notes.contains("keep no owner"),
        "the limit must be named: {notes}"
    );
}

/// Guards holders read from musl's lock words: recursive (like errorcheck and robust)
/// musl mutexes keep the owner's TID in the word, so an ABBA deadlock on them that
/// formed before the attach is found from memory, with its holders.
#[test]
fn musl_recursive_abba_formed_before_attach_is_found_from_memory() {
    require_root();
    let bin = build_musl("late_abba", &[]);
    let target = Target::spawn(bin.path(), &["0", "recursive"]);
    target.wait_in_futex(
        &[target.tid("late_a"), target.tid("late_b")],
        Duration::from_secs(5),
    );
    let out = run_tracer(&as_strs(&json_attach_args(target.pid(), 2, &[])));
    assert_success(&out);
    let values = json_lines(&out.stdout);
    let found = deadlocks(&values);
    assert_eq!(
        found.len(),
        1,
        "expected exactly one deadlock\n{}",
        describe(&out)
    );
    assert_cycle(&target, found[0], &LATE_ABBA, Names::Symbols);
    for entry in found[0]["cycle"].as_array().expect("cycle array") {
        assert_eq!(entry["blocked_before_attach"], true, "{entry:#}");
    }
}

/// Guards `tracer serve`'s lean waits on musl: such a wait reaches userspace with no lock
/// memory, only its futex word, so the reader must place it with musl's layout (the word
/// 4 bytes into a mutex) and read the lock's owner from the target while the wait sleeps.
/// An ABBA deadlock on recursive musl mutexes (which keep the owner's TID), formed after
/// the attach with every wait sent lean, must come out on stdout as the one cycle: the
/// workers' TIDs, and the held and awaited locks at the addresses the target prints.
#[test]
fn serve_reports_a_musl_deadlock_among_lean_waits() {
    require_root();
    let baseline = our_prog_ids();
    let bin = build_musl("late_abba", &[]);
    // The locks are taken 3 s after the start: after the attach.
    let target = Target::spawn(bin.path(), &["3000", "recursive"]);
    let pid = target.pid().to_string();
    let (mut tracer, _) = serve_attached(&pid, &["--all-waits-lean"]);
    let line = tracer
        .wait_for_line(Duration::from_secs(20), |l| {
            l.contains("\"kind\":\"deadlock\"") && l.contains(&format!("\"pid\":{pid}"))
        })
        .unwrap_or_else(|| panic!("no deadlock line for target {pid}"));
    let deadlock: Value = serde_json::from_str(&line).expect("JSON");
    assert_cycle(&target, &deadlock, &LATE_ABBA, Names::Symbols);
    drop(target);
    stop_serve(tracer, &baseline);
}

/// Guards musl rwlocks: readers blocked behind a writer sleep on the rwlock's first word
/// expecting `0xffffffff`; the lock must show up at `rw_lock`'s address as an rwlock
/// with its 3 waiters, whether they blocked before the attach (`None`) or after it
/// (`Some(delay)`), and the semaphore the target also waits on must not count as a lock.
fn check_musl_rwlock(readers_delay_ms: Option<u64>, duration_secs: u64) {
    let bin = build_musl("rwlock_writer", &[]);
    let delay = readers_delay_ms.map(|d| d.to_string());
    let args: Vec<&str> = delay.iter().map(String::as_str).collect();
    let target = Target::spawn(bin.path(), &args);
    if readers_delay_ms.is_none() {
        let readers: Vec<u64> = (0..3).map(|i| target.tid(&format!("reader_{i}"))).collect();
        target.wait_in_futex(&readers, Duration::from_secs(5));
    }
    let rw = target.lock("rw_lock");
    let out = run_tracer(&as_strs(&json_attach_args(
        target.pid(),
        duration_secs,
        &[],
    )));
    assert_success(&out);
    let values = json_lines(&out.stdout);
    assert!(deadlocks(&values).is_empty(), "{}", describe(&out));
    let s = summary(&values);
    let inside: Vec<&Value> = locks(s)
        .iter()
        .filter(|l| (rw..rw + PTHREAD_RWLOCK_SIZE).contains(&addr_of(&l["addr"])))
        .collect();
    assert_eq!(inside.len(), 1, "one entry for rw_lock ({rw:#x}): {s:#}");
    let l = inside[0];
    assert_eq!(addr_of(&l["addr"]), rw, "{l:#}");
    assert_eq!(name_of(l), Some("rw_lock"), "{l:#}");
    assert_eq!(l["type"].as_str(), Some("rwlock"), "{l:#}");
    assert!(u64_field(l, "max_waiters") >= 3, "{l:#}");
    assert_eq!(locks(s).len(), 1, "nothing else is a contended lock: {s:#}");
}

/// Guards musl rwlock waits found blocked at attach (from `/proc` and memory).
#[test]
fn musl_blocked_readers_show_up_on_rwlock() {
    require_root();
    check_musl_rwlock(None, 2);
}

/// Guards musl rwlock waits that begin while attached (live futex events).
#[test]
fn musl_readers_blocking_while_attached_show_up_on_rwlock() {
    require_root();
    check_musl_rwlock(Some(2000), 4);
}

/// Guards musl condition variables counted as locks: musl's condvar waiters sleep on a
/// node in their own stack frame expecting 2 (like a `lowlevellock`), which showed up as
/// thousands of `futex` "locks" at stack addresses. Only `queue_lock` may be reported, a
/// mutex, and its hold times must not include the condvar waits (the condvar wait takes
/// the mutex again through `pthread_mutex_lock`, a nested call of the probed
/// `pthread_cond_wait`).
#[test]
fn musl_condvars_are_not_locks() {
    require_root();
    let bin = build_musl("condvar", &[]);
    let target = Target::spawn(bin.path(), &["6"]);
    let queue_lock = target.lock("queue_lock");
    let out = run_tracer(&as_strs(&json_attach_args(target.pid(), 3, &[])));
    assert_success(&out);
    let values = json_lines(&out.stdout);
    assert!(deadlocks(&values).is_empty(), "{}", describe(&out));
    let s = summary(&values);
    for l in locks(s) {
        assert_eq!(
            addr_of(&l["addr"]),
            queue_lock,
            "only queue_lock is a lock: {l:#}"
        );
        assert_eq!(l["type"].as_str(), Some("mutex"), "{l:#}");
        let hold = &l["hold_ns"];
        assert!(u64_field(hold, "count") > 0, "{l:#}");
        assert!(
            u64_field(hold, "p90") < 200_000,
            "queue_lock's hold p90 includes condvar waits: {l:#}"
        );
    }
    let notes = notes_of(&values);
    assert!(
        !notes.contains("returned without their entry"),
        "nested lock calls lost acquisitions: {notes}"
    );
}
