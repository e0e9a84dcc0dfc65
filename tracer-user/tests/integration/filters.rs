//! Root integration tests: the summary's filters (`--lock NAME|ADDR`, `--type`,
//! `--min-wait`) on `two_locks`, a target with a fast mutex, a slow mutex and a slow
//! rwlock that times its own contended acquisitions and prints what it saw.

use std::time::Duration;

use serde_json::Value;

use crate::common::{
    Target, addr_of, as_strs, assert_success, build_target, describe, json_attach_args, json_lines,
    locks, run_tracer, summary, u64_field,
};

/// What a filtered run saw: the target's own facts and the tracer's summary.
struct FilteredRun {
    target: Target,
    summary: Value,
    what: String,
}

impl FilteredRun {
    /// The target's printout after the run: `KEY.lock=N`.
    fn later_fact(&mut self, key: &str) -> u64 {
        let prefix = format!("{key}=");
        self.target
            .later_lines()
            .iter()
            .find_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
            .unwrap_or_else(|| panic!("the target printed no {key}"))
            .parse()
            .unwrap_or_else(|e| panic!("{key}: {e}"))
    }

    /// Addresses of the locks in the table.
    fn table(&self) -> Vec<u64> {
        locks(&self.summary)
            .iter()
            .map(|l| addr_of(&l["addr"]))
            .collect()
    }

    fn filtered_out(&self) -> &Value {
        let out = &self.summary["filtered_out"];
        assert!(
            out.is_object(),
            "no filtered_out in the summary\n{}",
            self.what
        );
        out
    }
}

/// Runs `two_locks` for 4 s and traces 3 s of it with `filters`; waits for the target's
/// own printout.
fn run_two_locks(filters: &[&str]) -> FilteredRun {
    let bin = build_target("two_locks", &[]);
    let mut target = Target::spawn(bin.path(), &["4"]);
    let out = run_tracer(&as_strs(&json_attach_args(target.pid(), 3, filters)));
    assert_success(&out);
    assert!(
        target.wait_exit(Duration::from_secs(10)).is_some(),
        "two_locks did not finish"
    );
    let values = json_lines(&out.stdout);
    let what = format!("[facts {:?}]\n{}", target.facts(), describe(&out));
    let summary = summary(&values).clone();
    FilteredRun {
        target,
        summary,
        what,
    }
}

/// Guards against: `--lock` not selecting by name or by address, letting other locks
/// into the table, or dropping the others' waits without counting them.
#[test]
fn lock_by_name_and_address_shows_only_those() {
    crate::common::require_root();
    let bin = build_target("two_locks", &[]);
    let mut target = Target::spawn(bin.path(), &["4"]);
    let (fast, slow, rw) = (
        target.lock("fast_lock"),
        target.lock("slow_lock"),
        target.lock("slow_rw"),
    );
    let rw_arg = format!("{rw:#x}");
    let out = run_tracer(&as_strs(&json_attach_args(
        target.pid(),
        3,
        &["--lock", "fast_lock", "--lock", &rw_arg],
    )));
    assert_success(&out);
    assert!(target.wait_exit(Duration::from_secs(10)).is_some());
    let values = json_lines(&out.stdout);
    let s = summary(&values);
    let what = describe(&out);
    let mut table: Vec<u64> = locks(s).iter().map(|l| addr_of(&l["addr"])).collect();
    table.sort_unstable();
    let mut expected = vec![fast, rw];
    expected.sort_unstable();
    assert_eq!(
        table, expected,
        "only fast_lock (by name) and slow_rw (by address) in the table\n{what}"
    );
    let filtered = &s["filtered_out"];
    assert!(
        u64_field(filtered, "locks") >= 1,
        "slow_lock ({slow:#x}) counted as left out: {filtered}\n{what}"
    );
    // The target's own count of slow_lock's contended acquisitions.
    let slow_contended = target
        .later_lines()
        .iter()
        .find_map(|l| l.strip_prefix("contended.slow_lock=").map(str::to_owned))
        .expect("contended.slow_lock")
        .parse::<u64>()
        .expect("a count");
    let left_out = u64_field(filtered, "contentions");
    assert!(
        left_out > 0 && slow_contended > 0,
        "slow_lock's waits (the target had {slow_contended}) are counted, not dropped\n{what}"
    );
}

/// Guards against: `--type rwlock` keeping mutexes, or missing the rwlock.
#[test]
fn type_rwlock_shows_only_the_rwlock() {
    crate::common::require_root();
    let run = run_two_locks(&["--type", "rwlock"]);
    let rw = run.target.lock("slow_rw");
    for lock in locks(&run.summary) {
        assert_eq!(lock["type"], "rwlock", "{lock}\n{}", run.what);
    }
    assert!(
        run.table().contains(&rw),
        "slow_rw ({rw:#x}) in the table\n{}",
        run.what
    );
    // fast_lock and slow_lock, both contended mutexes, are counted.
    assert!(u64_field(run.filtered_out(), "locks") >= 2, "{}", run.what);
}

/// Guards against: `--min-wait` listing a lock whose waits were all shorter, hiding a
/// lock with long waits, or losing the short waits instead of counting them. Checked
/// against the target's own longest waits: the tracer times only the part of a wait
/// spent asleep in the kernel, which is no longer than what the target measured.
#[test]
fn min_wait_counts_short_waits_without_listing_them() {
    const MIN_WAIT_NS: u64 = 150_000_000;
    crate::common::require_root();
    let mut run = run_two_locks(&["--min-wait", "150ms"]);
    let (fast, slow, rw) = (
        run.target.lock("fast_lock"),
        run.target.lock("slow_lock"),
        run.target.lock("slow_rw"),
    );
    let fast_max = run.later_fact("max_wait_ns.fast_lock");
    let fast_contended = run.later_fact("contended.fast_lock");
    let table = run.table();
    for lock in locks(&run.summary) {
        assert!(
            u64_field(&lock["wait_ns"], "max") >= MIN_WAIT_NS,
            "a lock with no wait of 150 ms listed: {lock}\n{}",
            run.what
        );
    }
    // Each is held 400 ms at a time by one thread while another waits for it.
    assert!(table.contains(&slow), "slow_lock listed\n{}", run.what);
    assert!(table.contains(&rw), "slow_rw listed\n{}", run.what);
    if fast_max < MIN_WAIT_NS {
        assert!(
            !table.contains(&fast),
            "fast_lock's waits were all < 150 ms (the target's longest: {fast_max} ns), yet it is listed\n{}",
            run.what
        );
        let filtered = run.filtered_out();
        assert!(u64_field(filtered, "locks") >= 1, "{}", run.what);
        let counted = u64_field(filtered, "contentions");
        // A contended acquisition may sleep more than once (woken, the lock taken again
        // by another thread): up to a few futex waits each.
        assert!(
            counted > 0 && counted <= 4 * fast_contended + 64,
            "fast_lock's waits counted as left out: {counted}, the target had {fast_contended} contended acquisitions\n{}",
            run.what
        );
    } else {
        eprintln!(
            "note: fast_lock waited {fast_max} ns once (a loaded machine): only the listing rule is checked"
        );
    }
}

/// Guards against: a mistyped filter (an unknown type, a duration without a unit, a bad
/// address) being ignored, so the run silently reports something else, or panicking:
/// each is one usage error naming the flag and the value, exit status 2, before any
/// attach.
#[test]
fn bad_filter_values_are_usage_errors() {
    for (flag, value, says) in [
        ("--type", "spinlock", "one of mutex, pi_mutex, rwlock"),
        ("--min-wait", "5", "a number and a unit"),
        ("--min-wait", "2min", "a number and a unit"),
        ("--lock", "0xnothex", "not a hexadecimal address"),
    ] {
        let out = std::process::Command::new(crate::common::tracer_bin())
            .args(["attach", "--pid", "1", flag, value])
            .output()
            .expect("run the tracer");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {stderr}");
        assert!(
            stderr.contains(flag) && stderr.contains(value) && stderr.contains(says),
            "{flag} {value}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(out.stdout.is_empty(), "{flag} {value}");
    }
}
