//! Root integration tests: Go lock trouble that formed *before* `tracer attach`, the way
//! an operator meets it (the service hangs, then someone attaches). The target
//! `tests/go_targets/go_parked` forms a deadlock or a held lock at once, waits until every
//! goroutine involved is parked, prints its facts and `ready`; only then does the tracer
//! attach. No probe sees any of it happen: the tracer must read it from the Go runtime's
//! goroutines and their stacks. Each scenario runs against Go 1.19 and Go 1.25 builds,
//! normal and stripped.

use serde_json::Value;

use crate::{
    common::{Target, addr_of, require_root},
    go_attach::{
        assert_frames_in_order, go_builds, go_deadlocks, go_summary, goid, strs, stuck_locks, trace,
    },
    go_toolchain::GoBuild,
};

/// Seconds each trace runs: long enough for the stuck-lock threshold (1 s by default)
/// counted from the attach when the runtime recorded no park time.
const TRACE_SECS: u64 = 3;

fn build_and_run(mode: &str) -> Vec<(Target, Vec<Value>, String, GoBuild)> {
    let (dir, builds) = go_builds("go_parked", false);
    let runs = builds
        .into_iter()
        .map(|build| {
            let target = Target::spawn(&build.path, &[mode]);
            let (values, what) = trace(&target, TRACE_SECS, &[], &build);
            (target, values, what, build)
        })
        .collect();
    drop(dir);
    runs
}

/// The stuck lock at `addr`: exactly one report.
fn one_stuck<'a>(values: &'a [Value], addr: u64, what: &str) -> &'a Value {
    let found = stuck_locks(values, addr, what);
    assert_eq!(
        found.len(),
        1,
        "expected one stuck_lock for {addr:#x}\n{what}"
    );
    found[0]
}

/// Asserts that `holder` is goroutine `goid`, parked, known by its pending deferred
/// unlock, with `frame` on its stack.
fn assert_deferred_holder(holder: &Value, goid: u64, frame: &str, what: &str) {
    assert_eq!(
        holder["goid"].as_u64(),
        Some(goid),
        "holder goid: {holder}\n{what}"
    );
    assert_eq!(
        holder["holder_evidence"].as_str(),
        Some("deferred_unlock"),
        "holder evidence: {holder}\n{what}"
    );
    assert_eq!(
        holder["state"].as_str(),
        Some("blocked"),
        "holder state: {holder}\n{what}"
    );
    assert!(
        strs(&holder["stack"]).contains(&frame),
        "holder stack should contain {frame}: {holder}\n{what}"
    );
}

/// Guards against the alerting incident attached late: two goroutines deadlocked (each
/// holds, by `mu.Lock(); defer mu.Unlock()`, the mutex the other waits for) before the
/// tracer attached. Reported as `0 deadlocks` and `no contended locks observed` before:
/// goroutines parked before the attach sent no event. Must be one deadlock over the two
/// goroutine ids, each holding and waiting for the right lock, both marked as blocked
/// before the attach, holders known by their deferred unlocks, with their stacks.
#[test]
fn go_deadlock_formed_before_the_attach_is_reported() {
    require_root();
    for (target, values, what, _build) in build_and_run("abba") {
        let found = go_deadlocks(&values, &what);
        assert_eq!(found.len(), 1, "expected exactly one deadlock\n{what}");
        let cycle = found[0]["cycle"].as_array().expect("cycle array");
        assert_eq!(cycle.len(), 2, "two goroutines\n{what}");
        for (g, held, wanted, frames) in [
            (
                "writer",
                "provider",
                "store",
                ["main.(*Store).put", "main.(*Provider).Refresh"],
            ),
            (
                "gc",
                "store",
                "provider",
                ["main.(*Provider).evict", "main.(*Store).GC"],
            ),
        ] {
            let id = goid(&target, g);
            let entry = cycle
                .iter()
                .find(|e| e["goid"].as_u64() == Some(id))
                .unwrap_or_else(|| panic!("no entry for goroutine {g} ({id})\n{what}"));
            assert_eq!(
                addr_of(&entry["holds"]["addr"]),
                target.lock(held),
                "{g} holds\n{what}"
            );
            assert_eq!(
                addr_of(&entry["waits_for"]["addr"]),
                target.lock(wanted),
                "{g} waits for\n{what}"
            );
            assert_eq!(
                entry["blocked_before_attach"],
                Value::Bool(true),
                "{entry}\n{what}"
            );
            assert_eq!(
                entry["holder_evidence"].as_str(),
                Some("deferred_unlock"),
                "{entry}\n{what}"
            );
            assert_frames_in_order(&strs(&entry["stack"]), &frames, g, &what);
        }
        let summary = go_summary(&values, &target, &what);
        assert_eq!(
            summary["deadlocks"].as_u64(),
            Some(1),
            "summary deadlocks\n{what}"
        );
    }
}

/// Guards against the ingestion incident attached late: a `sync.RWMutex` write-held
/// (with a deferred unlock) by a goroutine blocked inside its critical section, 300
/// readers and a writer parked behind it before the attach. Must be one stuck lock with
/// every waiter counted (they predate the attach), the holder named with its evidence
/// and state, and no deadlock.
#[test]
fn go_lock_held_before_the_attach_is_stuck_with_its_holder() {
    require_root();
    for (target, values, what, _build) in build_and_run("held") {
        let readers: usize = target.fact("readers").parse().expect("readers fact");
        let stuck = one_stuck(&values, target.lock("registry"), &what);
        assert_eq!(stuck["mode"].as_str(), Some("write"), "{stuck}\n{what}");
        assert_eq!(
            stuck["readers_waiting"].as_u64(),
            Some(readers as u64),
            "{stuck}\n{what}"
        );
        assert_eq!(
            stuck["writers_waiting"].as_u64(),
            Some(1),
            "{stuck}\n{what}"
        );
        assert_deferred_holder(
            &stuck["holder"],
            goid(&target, "holder"),
            "main.(*Registry).Hold",
            &what,
        );
        assert!(
            go_deadlocks(&values, &what).is_empty(),
            "no deadlock\n{what}"
        );
    }
}

/// Guards the naming of a goroutine that holds two locks through two deferred unlocks
/// (a `Mutex` and an `RWMutex` held for writing): each lock's stuck report names it,
/// with the waiters of each lock counted apart.
#[test]
fn go_two_locks_held_by_defers_name_the_same_holder() {
    require_root();
    for (target, values, what, _build) in build_and_run("twolocks") {
        let holder = goid(&target, "holder");
        let a = one_stuck(&values, target.lock("a"), &what);
        assert_eq!(a["writers_waiting"].as_u64(), Some(3), "{a}\n{what}");
        assert_deferred_holder(&a["holder"], holder, "main.(*Pair).HoldBoth", &what);
        let b = one_stuck(&values, target.lock("b"), &what);
        assert_eq!(b["readers_waiting"].as_u64(), Some(3), "{b}\n{what}");
        assert_deferred_holder(&b["holder"], holder, "main.(*Pair).HoldBoth", &what);
    }
}

/// Guards against false findings when attaching to a healthy program: the corrected
/// lock order, with defers, under contention: no deadlock and no stuck lock.
#[test]
fn go_corrected_order_attached_late_has_no_findings() {
    require_root();
    for (target, values, what, _build) in build_and_run("ordered") {
        assert!(
            go_deadlocks(&values, &what).is_empty(),
            "no deadlock\n{what}"
        );
        for lock in ["provider", "store"] {
            assert!(
                stuck_locks(&values, target.lock(lock), &what).is_empty(),
                "no stuck {lock}\n{what}"
            );
        }
        go_summary(&values, &target, &what);
    }
}

/// Waits (up to 15 s) until `go_rwleak` says all its readers have started, then half a
/// second more for the last ones to park; returns how many it started.
fn wait_for_all_readers(target: &mut Target) -> u64 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let started = target
            .later_lines()
            .iter()
            .filter_map(|l| l.strip_prefix("readers="))
            .filter_map(|n| n.parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        if started >= 4000 {
            std::thread::sleep(std::time::Duration::from_millis(500));
            return started;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "go_rwleak started only {started} readers in 15 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Guards against the ingestion incident met as an operator meets it: the write lock
/// leaked on an error path (no defer), 4000 readers parked behind it, all before the
/// attach. Must be one stuck lock counting every parked reader, and a holder left
/// `unknown` (the leaking goroutine exited, or lives on blocked elsewhere with nothing
/// on its stack naming the lock): never a guessed goroutine.
#[test]
fn go_rwmutex_leaked_before_the_attach_counts_every_parked_reader() {
    require_root();
    let (_dir, builds) = go_builds("go_rwleak", false);
    for build in &builds {
        for holder in ["exits", "lives"] {
            let mut target = Target::spawn(&build.path, &[holder, "0"]);
            let readers = wait_for_all_readers(&mut target);
            let (values, what) = trace(&target, TRACE_SECS, &[], build);
            let what = format!("[holder {holder}] {what}");
            let stuck = one_stuck(&values, target.lock("registry"), &what);
            assert_eq!(
                stuck["readers_waiting"].as_u64(),
                Some(readers),
                "{stuck}\n{what}"
            );
            assert_eq!(
                stuck["writers_waiting"].as_u64(),
                Some(0),
                "{stuck}\n{what}"
            );
            assert!(
                stuck["holder"]["goid"].is_null(),
                "no evidence, no holder: {stuck}\n{what}"
            );
            assert_eq!(
                stuck["holder"]["state"].as_str(),
                Some("unknown"),
                "{stuck}\n{what}"
            );
            assert!(
                go_deadlocks(&values, &what).is_empty(),
                "no deadlock\n{what}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Holders named by their frames' lock variables (`go::frame_holds`): go_abba attached
// after its deadlock formed, no defer on either path.
// ---------------------------------------------------------------------------------------

/// Starts `go_abba MODE 0` (the paths start as soon as it is ready), gives the goroutines
/// time to park, then traces it.
fn run_go_abba_late(mode: &str) -> Vec<(Target, Vec<Value>, String, GoBuild)> {
    let (dir, builds) = go_builds("go_abba", false);
    let runs = builds
        .into_iter()
        .map(|build| {
            let target = Target::spawn(&build.path, &[mode, "0"]);
            std::thread::sleep(std::time::Duration::from_millis(300));
            let (values, what) = trace(&target, TRACE_SECS, &[], &build);
            (target, values, what, build)
        })
        .collect();
    drop(dir);
    runs
}

/// Guards against the alerting incident attached late when the locks are held without
/// `defer` (`p.mu.Lock(); ...; p.store.Put(); p.mu.Unlock()`): before, nothing on the
/// stacks named a holder, so the deadlock that formed before the attach went unreported.
/// Must be exactly one deadlock over `goid.writer` and `goid.gc`, each holding and waiting
/// for the lock the target printed, the holders known by the lock variables of their
/// `Refresh`/`GC` frames, for globals and heap objects, normal and stripped builds.
#[test]
fn go_abba_deadlock_before_the_attach_holders_from_frame_variables() {
    require_root();
    for mode in ["deadlock", "heap"] {
        for (target, values, what, _build) in run_go_abba_late(mode) {
            let found = go_deadlocks(&values, &what);
            assert_eq!(
                found.len(),
                1,
                "{mode}: expected exactly one deadlock\n{what}"
            );
            let cycle = found[0]["cycle"].as_array().expect("cycle array");
            assert_eq!(cycle.len(), 2, "{mode}: two goroutines\n{what}");
            for (g, held, wanted) in [("writer", "provider", "store"), ("gc", "store", "provider")]
            {
                let id = goid(&target, g);
                let entry = cycle
                    .iter()
                    .find(|e| e["goid"].as_u64() == Some(id))
                    .unwrap_or_else(|| panic!("{mode}: no entry for {g} ({id})\n{what}"));
                assert_eq!(
                    addr_of(&entry["holds"]["addr"]),
                    target.lock(held),
                    "{mode}: {g} holds\n{what}"
                );
                assert_eq!(
                    addr_of(&entry["waits_for"]["addr"]),
                    target.lock(wanted),
                    "{mode}: {g} waits for\n{what}"
                );
                assert_eq!(
                    entry["holder_evidence"].as_str(),
                    Some("frame_variable"),
                    "{mode}: {entry}\n{what}"
                );
                assert_eq!(
                    entry["blocked_before_attach"],
                    Value::Bool(true),
                    "{mode}: {entry}\n{what}"
                );
            }
            let summary = go_summary(&values, &target, &what);
            assert_eq!(summary["deadlocks"].as_u64(), Some(1), "{mode}\n{what}");
        }
    }
}

/// Guards against false holders from frame variables: `go_abba ordered` attached while
/// both paths take the locks in the same order under contention (frames stopped inside
/// `lockSlow` wait for their lock, they do not hold it). No deadlock, no stuck lock.
#[test]
fn go_abba_ordered_attached_late_has_no_findings() {
    require_root();
    for (target, values, what, _build) in run_go_abba_late("ordered") {
        assert!(
            go_deadlocks(&values, &what).is_empty(),
            "no deadlock\n{what}"
        );
        for lock in ["provider", "store"] {
            assert!(
                stuck_locks(&values, target.lock(lock), &what).is_empty(),
                "no stuck {lock}\n{what}"
            );
        }
        go_summary(&values, &target, &what);
    }
}

/// Guards the read side of an `RWMutex` held before the attach: three readers hold it
/// (deferred `RUnlock`s) and block inside; a writer waits for them to leave (draining)
/// and five readers wait behind the writer. Must be one stuck lock held for reading,
/// naming all three readers with their evidence, and counting the draining writer and
/// the readers behind it; no deadlock (nobody waits for the waiters).
#[test]
fn go_rwmutex_read_held_before_the_attach_names_every_reader() {
    require_root();
    for (target, values, what, _build) in build_and_run("readheld") {
        let stuck = one_stuck(&values, target.lock("registry"), &what);
        assert_eq!(stuck["mode"].as_str(), Some("read"), "{stuck}\n{what}");
        assert_eq!(
            stuck["readers_waiting"].as_u64(),
            Some(5),
            "{stuck}\n{what}"
        );
        assert_eq!(
            stuck["writers_waiting"].as_u64(),
            Some(1),
            "{stuck}\n{what}"
        );
        let holders = stuck["holders"].as_array().expect("holders array");
        let mut goids: Vec<u64> = holders.iter().filter_map(|h| h["goid"].as_u64()).collect();
        goids.sort_unstable();
        let mut expected: Vec<u64> = (1..=3)
            .map(|i| goid(&target, &format!("reader{i}")))
            .collect();
        expected.sort_unstable();
        assert_eq!(goids, expected, "every reader holding it: {stuck}\n{what}");
        for h in holders {
            let id = h["goid"].as_u64().unwrap_or_default();
            assert_deferred_holder(h, id, "main.(*Registry).HoldRead", &what);
        }
        assert!(
            go_deadlocks(&values, &what).is_empty(),
            "no deadlock\n{what}"
        );
    }
}
