//! Report values shared by the model's and the sinks' tests.

use super::{
    Deadlock, DeadlockEntry, HoldMode, HolderEvidence, HolderState, LockKind, LockOrderInversion,
    LockRef, LockSummary, OrderEdge, Quantiles, StuckHolder, StuckLock, Summary,
};

pub(crate) fn lock(addr: u64, name: Option<&str>) -> LockRef {
    LockRef {
        location: None,
        name_source: None,
        addr,
        name: name.map(str::to_owned),
    }
}

/// The ingestion incident's lock: write-held for 2.5 s by goroutine 7, which exited,
/// 12 readers and 1 writer waiting.
pub(crate) fn stuck_lock() -> StuckLock {
    let holder = StuckHolder {
        goid: Some(7),
        state: HolderState::Exited,
        evidence: Some(HolderEvidence::TracedAcquire),
        acquired_at: Some("main.(*Registry).Update (main.go:42)".to_owned()),
        stack: vec!["main.(*Registry).Update".to_owned()],
        stack_detail: vec!["main.(*Registry).Update (main.go:42)".to_owned()],
    };
    StuckLock {
        lock: lock(0x40, Some("main.Registry.mu")),
        mode: HoldMode::Write,
        held_ns: 2_500_000_000,
        holder: holder.clone(),
        holders: vec![holder],
        waiters: 13,
        readers_waiting: 12,
        writers_waiting: 1,
    }
}

pub(crate) fn quantiles(p50: u64, total: u64) -> Quantiles {
    Quantiles {
        count: 10,
        p50,
        p90: p50 * 2,
        p99: p50 * 3,
        max: p50 * 4,
        total,
    }
}

pub(crate) fn deadlock() -> Deadlock {
    Deadlock {
        cycle: vec![
            DeadlockEntry {
                goid: None,
                tid: 1234,
                thread: "worker-a".into(),
                holds: lock(0x55d0_aa00, Some("lock_a")),
                waits_for: lock(0x55d0_bb00, Some("lock_b")),
                stack: vec!["pthread_mutex_lock".into(), "worker_a".into()],
                stack_detail: vec![
                    "pthread_mutex_lock".into(),
                    "worker_a (src/abba.c:12)".into(),
                ],
                waited_ns: Some(5_000),
                blocked_before_attach: false,
                timed: false,
                timeout_ns: None,
                held_ns: Some(2_000_000_000),
                holder_evidence: None,
                acquired_at: vec!["worker_a".into()],
                acquired_at_detail: vec!["worker_a+0x1c (src/abba.c:10)".into()],
            },
            DeadlockEntry {
                goid: None,
                tid: 1235,
                thread: "worker-b".into(),
                holds: lock(0x55d0_bb00, Some("lock_b")),
                waits_for: lock(0x55d0_aa00, Some("lock_a")),
                stack: vec!["pthread_mutex_lock".into(), "worker_b".into()],
                stack_detail: Vec::new(),
                waited_ns: None,
                blocked_before_attach: true,
                timed: false,
                timeout_ns: None,
                held_ns: None,
                holder_evidence: None,
                acquired_at: Vec::new(),
                acquired_at_detail: Vec::new(),
            },
        ],
        will_time_out: false,
        detected_after_ns: Some(1_500_000),
    }
}

/// `lock_a` → `lock_b` by thread 1234, `lock_b` → `lock_a` by thread 1235.
pub(crate) fn inversion() -> LockOrderInversion {
    let a = lock(0x55d0_aa00, Some("lock_a"));
    let b = lock(0x55d0_bb00, Some("lock_b"));
    let edge = |from: &LockRef, to: &LockRef, tid: u32, thread: &str, function: &str| OrderEdge {
        from: from.clone(),
        to: to.clone(),
        tid,
        goid: None,
        thread: thread.into(),
        from_stack: vec![function.into(), "start_thread".into()],
        from_stack_detail: vec![format!("{function} (src/order.c:10)")],
        to_stack: vec![function.into(), "start_thread".into()],
        to_stack_detail: Vec::new(),
    };
    LockOrderInversion {
        locks: vec![a.clone(), b.clone()],
        edges: vec![
            edge(&a, &b, 1234, "worker-a", "take_ab"),
            edge(&b, &a, 1235, "worker-b", "take_ba"),
        ],
        harmless: false,
        gate: None,
    }
}

pub(crate) fn summary() -> Summary {
    Summary {
        pid: 4242,
        ns_pid: None,
        duration_ns: 12_300_000_000,
        events: 45_600,
        dropped: 0,
        futex_wakes: 17,
        futex_waits: 30,
        brief_lock_waits: 20,
        deadlocks: 1,
        timed_cycles: 0,
        lock_order_inversions: 0,
        other_locks: None,
        filtered_out: None,
        locks: vec![
            LockSummary {
                lock: lock(0x20, Some("a_rather_long_lock_name")),
                kind: LockKind::RwLock,
                contentions: 5,
                max_waiters: 2,
                wait_ns: quantiles(1_000, 50_000),
                hold_ns: None,
                top_waiter_stack: vec!["rd".into(), "main".into()],
            },
            LockSummary {
                lock: lock(0x7f12_ab00, None),
                kind: LockKind::PiMutex,
                contentions: 12_345,
                max_waiters: 9,
                wait_ns: quantiles(2_500_000, 90_000_000_000),
                hold_ns: Some(quantiles(999, 9_990)),
                top_waiter_stack: Vec::new(),
            },
            LockSummary {
                lock: lock(0x10, Some("m")),
                kind: LockKind::Mutex,
                contentions: 1,
                max_waiters: 1,
                wait_ns: quantiles(850, 50_000),
                hold_ns: Some(quantiles(10, 100)),
                top_waiter_stack: Vec::new(),
            },
        ],
        notes: vec!["2 uprobes could not attach".into()],
    }
}
