//! Goroutines read from a live Go process's runtime data (`go::goroutines`), without the
//! tracer: the library reads the target as the tracer would at attach, and what it finds
//! is checked against the goroutine ids and lock addresses the target prints itself. Every
//! Go toolchain we install, normal and stripped builds.
use std::{
    thread,
    time::{Duration, Instant},
};

use tracer_user::{
    go::{
        goroutines::{
            AllgsSource, GoroutineReader, GoroutineSnapshot, GoroutineStatus, ParkedLockKind,
        },
        lock_model::GoLockMode,
        sym::{GoTable, go_build_info},
    },
    target::LiveProcess,
};

use crate::{
    common::{Target, require_root},
    go_toolchain::{GoBuild, build_all},
};

/// A reader for `target` (a non-PIE build: load bias 0) and one snapshot.
fn snapshot(build: &GoBuild, target: &Target) -> GoroutineSnapshot {
    let data = std::fs::read(&build.path).expect("read the binary");
    let table = GoTable::from_elf(&data).expect("pclntab");
    let version = go_build_info(&data).expect("build info").go_version;
    let process = LiveProcess::new(target.pid());
    let reader = GoroutineReader::new(&data, &table, &version, 0, &process)
        .unwrap_or_else(|e| panic!("{}: {e}", build.label));
    let expected = if build.stripped {
        AllgsSource::Disassembly
    } else {
        AllgsSource::Symtab
    };
    assert_eq!(reader.location().source, expected, "{}", build.label);
    reader
        .snapshot(&table, &process)
        .unwrap_or_else(|e| panic!("{}: {e}", build.label))
}

/// The goroutine `goid` of `snap`.
fn goroutine(
    snap: &GoroutineSnapshot,
    goid: u64,
    label: &str,
) -> tracer_user::go::goroutines::GoroutineInfo {
    snap.goroutines
        .iter()
        .find(|g| g.goid == goid)
        .unwrap_or_else(|| panic!("{label}: goroutine {goid} not found"))
        .clone()
}

/// Guards against: goroutines deadlocked on `sync.Mutex`es before any probe could see
/// them being invisible (issue 15), or attributed to the wrong lock. Both goroutines of
/// `go_abba`'s ABBA deadlock must be found parked, each waiting (write mode) for the mutex
/// the other holds, at the addresses the target prints, in normal and stripped builds
/// (stripped ones find `allgs` from code, the layout from the table).
#[test]
fn parked_mutex_waiters_of_a_deadlock() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    for build in build_all("go_abba", dir.path(), false) {
        let label = &build.label;
        let target = Target::spawn(&build.path, &["deadlock", "0"]);
        let fact = |k: &str| -> u64 { target.fact(k).parse().expect("a number") };
        let (writer, gc) = (fact("goid.writer"), fact("goid.gc"));
        let (provider, store) = (target.lock("provider"), target.lock("store"));
        // Both goroutines park on their second lock right after `ready`: poll until both
        // are seen parked on a lock (a few ms in practice), for at most 5 s.
        let deadline = Instant::now() + Duration::from_secs(5);
        let snap = loop {
            let snap = snapshot(&build, &target);
            let parked = [writer, gc].iter().all(|&id| {
                snap.goroutines
                    .iter()
                    .any(|g| g.goid == id && g.lock_wait.is_some())
            });
            if parked || Instant::now() > deadline {
                break snap;
            }
            thread::sleep(Duration::from_millis(50));
        };
        assert!(!snap.truncated && snap.unreadable == 0, "{label}: {snap:?}");
        for (goid, waits_for) in [(writer, store), (gc, provider)] {
            let g = goroutine(&snap, goid, label);
            assert_eq!(g.status, GoroutineStatus::Waiting, "{label}: {g:?}");
            let wait = g
                .lock_wait
                .unwrap_or_else(|| panic!("{label}: goroutine {goid} has no lock wait: {g:?}"));
            assert_eq!(
                (wait.lock, wait.kind, wait.mode, wait.drains_readers),
                (waits_for, ParkedLockKind::Mutex, GoLockMode::Write, false),
                "{label}: goroutine {goid}"
            );
            assert!(wait.lock_memory_agrees, "{label}: {wait:?}");
        }
        // Nothing else waits on a lock: main sleeps, the runtime's goroutines park
        // elsewhere.
        let lock_waiters = snap
            .goroutines
            .iter()
            .filter(|g| g.lock_wait.is_some())
            .count();
        assert_eq!(lock_waiters, 2, "{label}: {snap:?}");
    }
}

/// Guards against: readers piled up on a leaked `RWMutex` write lock being missed or
/// taken for writers (`RLock` waits on `readerSem`, 12 bytes into the lock). `go_rwleak`
/// leaks `lock.registry` and starts readers that all block in `RLock`; the holder then
/// parks on a channel, which is no lock wait.
#[test]
fn parked_rlock_waiters_of_a_leaked_rwmutex() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    for build in build_all("go_rwleak", dir.path(), false) {
        let label = &build.label;
        let mut target = Target::spawn(&build.path, &["lives", "0"]);
        let leaker: u64 = target.fact("goid.leaker").parse().expect("a number");
        let registry = target.lock("registry");
        // Wait until the target says it started at least 200 readers.
        let deadline = Instant::now() + Duration::from_secs(20);
        let started = loop {
            let started = target
                .later_lines()
                .iter()
                .filter_map(|l| l.strip_prefix("readers=")?.parse::<usize>().ok())
                .max()
                .unwrap_or(0);
            assert!(Instant::now() < deadline, "{label}: only {started} readers");
            if started >= 200 {
                break started;
            }
            thread::sleep(Duration::from_millis(100));
        };
        let snap = snapshot(&build, &target);
        let readers: Vec<_> = snap.goroutines.iter().filter_map(|g| g.lock_wait).collect();
        assert!(
            readers.len() >= started,
            "{label}: {} lock waiters, {started} readers started",
            readers.len()
        );
        for wait in &readers {
            assert_eq!(
                (wait.lock, wait.kind, wait.mode, wait.drains_readers),
                (registry, ParkedLockKind::RwMutex, GoLockMode::Read, false),
                "{label}"
            );
            assert!(wait.lock_memory_agrees, "{label}: {wait:?}");
        }
        let holder = goroutine(&snap, leaker, label);
        assert_eq!(holder.status, GoroutineStatus::Waiting, "{label}");
        assert_eq!(holder.lock_wait, None, "{label}: {holder:?}");
    }
}
