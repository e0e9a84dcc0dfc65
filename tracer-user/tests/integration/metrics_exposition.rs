//! The Prometheus exposition (`tracer_user::metrics`) checked by Prometheus's own linter:
//! a realistic scrape of several targets (C++ lock names with quotes and backslashes,
//! locks that share a location, `other` aggregates, Go locks with hold times, a detached
//! target) rendered and fed to Debian's `promtool check metrics`, which parses the text
//! format and applies Prometheus's naming conventions. No root needed.

use std::{fs::File, io::Write as _, process::Command};

use tracer_user::{
    metrics::{TracerState, render},
    model::{
        LockKind, LockRef,
        live::{BUCKET_BOUNDS_NS, Buckets, LiveLock, OtherLiveLocks, TargetSnapshot},
    },
};

use crate::tools;

/// Where Debian's `prometheus` package puts the linter.
const PROMTOOL: &str = "/usr/bin/promtool";

/// `n` wait times spread over every bucket and past the last (from 500 ns to ~40 s), from
/// a fixed seed so the scrape is the same on every run.
fn durations(n: usize, seed: u64) -> Buckets {
    let mut state = seed;
    let mut buckets = Buckets::default();
    for _ in 0..n {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        // A power of ten from 10^2 to 10^10 ns, times 1..=4: every decade is hit.
        let exponent = u32::try_from(2 + (state >> 33) % 9).expect("an exponent below 11");
        let value = 10u64.pow(exponent) * (1 + (state >> 13) % 4) + (state >> 50);
        for (count, bound) in buckets.le.iter_mut().zip(BUCKET_BOUNDS_NS) {
            *count += u64::from(value <= bound);
        }
        buckets.count += 1;
        buckets.sum_ns += u128::from(value);
    }
    buckets
}

fn lock(name: Option<&str>, location: Option<&str>, addr: u64) -> LockRef {
    LockRef {
        addr,
        name: name.map(str::to_owned),
        location: location.map(str::to_owned),
        name_source: None,
    }
}

fn live(lock: LockRef, kind: LockKind, waits: usize, holds: bool) -> LiveLock {
    let seed = lock.addr;
    LiveLock {
        lock,
        kind,
        contentions: waits as u64 * 2,
        wait: durations(waits, seed),
        hold: holds.then(|| durations(waits * 3, seed ^ 0xff)),
    }
}

fn other(kind: LockKind, locks: u64, waits: usize, holds: bool) -> OtherLiveLocks {
    OtherLiveLocks {
        kind,
        locks,
        contentions: waits as u64 * 5,
        wait: durations(waits, locks),
        hold: holds.then(|| durations(waits, locks + 1)),
    }
}

/// Three targets as `tracer serve` would hold them: a C++ service on glibc, a Go service
/// traced with hold times, and a batch job that exited (kept for the grace period).
#[expect(
    clippy::too_many_lines,
    reason = "three literal snapshots, one per kind of target, read best whole"
)]
fn scrape() -> Vec<TargetSnapshot> {
    let cpp = TargetSnapshot {
        pid: 4242,
        comm: "order-svc".to_owned(),
        attached: true,
        locks: vec![
            live(
                lock(
                    Some(r#"OrderBook<Fixed<"EUR">>::book_mutex_"#),
                    None,
                    0x5555_0000_1040,
                ),
                LockKind::Mutex,
                400,
                false,
            ),
            live(
                lock(Some(r"paths::lock_for(C:\orders\)"), None, 0x5555_0000_1080),
                LockKind::RwLock,
                250,
                false,
            ),
            live(
                lock(None, Some("libfeed.so+0x1c40"), 0x7f00_0001_1c40),
                LockKind::PiMutex,
                90,
                false,
            ),
            live(
                lock(None, Some("[stack]"), 0x7ffd_1000_0010),
                LockKind::Mutex,
                30,
                false,
            ),
            live(
                lock(None, Some("[stack]"), 0x7ffd_1000_0090),
                LockKind::Mutex,
                20,
                false,
            ),
            live(
                lock(None, None, 0x5555_7777_2000),
                LockKind::Futex,
                10,
                false,
            ),
        ],
        other: vec![
            other(LockKind::Mutex, 1_200, 900, false),
            other(LockKind::RwLock, 40, 60, false),
        ],
        deadlocks: 1,
        lock_order_inversions: 0,
        stuck_locks: 0,
        events: 1_824_112,
        dropped: 17,
        sleep_sample_period: 1,
    };
    let go = TargetSnapshot {
        pid: 977,
        comm: "prometheus".to_owned(),
        attached: true,
        locks: vec![
            live(
                lock(
                    Some("github.com/prometheus/tsdb.(*Head).mtx"),
                    None,
                    0xc000_1230,
                ),
                LockKind::GoRwMutex,
                700,
                true,
            ),
            live(
                lock(Some("main.shards[3].mu"), None, 0xc000_4560),
                LockKind::GoMutex,
                120,
                true,
            ),
        ],
        other: vec![other(LockKind::GoMutex, 300, 2_000, true)],
        deadlocks: 0,
        lock_order_inversions: 0,
        stuck_locks: 2,
        events: 93_001,
        dropped: 0,
        sleep_sample_period: 1,
    };
    let exited = TargetSnapshot {
        pid: 31_337,
        comm: "batch \"nightly\" job".to_owned(),
        attached: false,
        locks: vec![live(
            lock(Some("queue_lock"), None, 0x4040),
            LockKind::Mutex,
            5,
            false,
        )],
        other: vec![],
        deadlocks: 3,
        lock_order_inversions: 0,
        stuck_locks: 0,
        events: 120,
        dropped: 0,
        sleep_sample_period: 1,
    };
    vec![cpp, go, exited]
}

/// Guards the exposition against what Prometheus accepts: a text-format mistake (an
/// unescaped quote, a histogram whose buckets or `_count` disagree, a type the 0.0.4
/// format does not have, as the client's `OpenMetrics` encoder writes for info metrics) or
/// a naming one (a counter without `_total`, a unit not in base units, a missing HELP)
/// makes `promtool check metrics` exit non-zero or print the problem.
#[test]
fn promtool_accepts_a_multi_target_scrape() {
    let tracer = TracerState {
        targets_attached: 2,
        cpu_seconds: 73.42,
        resident_bytes: 61_440_000,
        version: env!("CARGO_PKG_VERSION"),
        targets_refused_total: 1,
        attaches_total: 3,
        sched_switch_duty_factor: 4,
    };
    let text = render(&scrape(), &tracer).unwrap();
    // What the linter must see, so that its silence means something.
    for expected in [
        "tracer_lock_wait_seconds_bucket{",
        "tracer_lock_hold_seconds_bucket{",
        r#"lock="OrderBook<Fixed<\"EUR\">>::book_mutex_""#,
        r#"lock="paths::lock_for(C:\\orders\\)""#,
        r#"lock="[stack] (0x7ffd10000010)""#,
        r#"lock="other",type="go_mutex""#,
        r#"comm="batch \"nightly\" job""#,
        "tracer_target_attached{pid=\"31337\"",
        "process_cpu_seconds_total 73.42",
        "tracer_sched_switch_duty_factor 4",
    ] {
        assert!(text.contains(expected), "no {expected} in:\n{text}");
    }

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scrape.prom");
    File::create(&path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    if !std::path::Path::new(PROMTOOL).exists() {
        tools::missing(PROMTOOL, "Debian package prometheus");
    }
    // promtool reads the exposition from its standard input.
    let out = tools::output(
        Command::new(PROMTOOL)
            .args(["check", "metrics"])
            .stdin(File::open(&path).unwrap()),
        "prometheus",
    );
    let lint = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && lint.is_empty(),
        "promtool check metrics: {} with:\n{lint}\non:\n{text}",
        out.status
    );
}
