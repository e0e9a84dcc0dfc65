//! The tracer's vocabulary: locks, the threads and goroutines that wait for and hold them,
//! findings (deadlocks, stuck locks) and per-lock statistics, as every output sees them.
//!
//! It sits below everything that uses it: the native and Go analyses produce these types
//! (through `crate::assemble`, which resolves stacks and names), and the sinks in
//! `crate::sinks` (text, JSON, and any later output) consume them. Nothing here reads the
//! target or knows an output format, except that the serde field names are the JSON
//! contract that other tools read: fields may be added; existing ones keep their names and
//! shapes.

use std::fmt;

use serde::{Serialize, Serializer};

/// A lock as the report names it. JSON: `{"addr":"0x7f12ab","name":"lock_a"}` (`name` null
/// when unknown).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LockRef {
    /// Address of the lock word in the target; JSON as a lowercase `"0x…"` string, because
    /// JSON numbers lose precision above 2^53 in many readers.
    #[serde(serialize_with = "hex")]
    pub addr: u64,
    /// Symbol name of the lock (e.g. a static's name), when known.
    pub name: Option<String>,
    /// Where the lock lies when it has no name: `object+offset` for a lock inside a
    /// mapped file's image (a stripped binary's static), `[heap]+offset`, ... Omitted
    /// from JSON when unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

/// Serializes an address as a lowercase `0x…` string.
#[allow(clippy::trivially_copy_pass_by_ref)] // serde's `serialize_with` passes a reference.
fn hex<S: Serializer>(addr: &u64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&format_args!("{addr:#x}"))
}

impl fmt::Display for LockRef {
    /// `lock_a (0x55d0c0ffee10)` when the name is known, else `0x55d0c0ffee10`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name.as_ref().or(self.location.as_ref()) {
            Some(name) => write!(f, "{name} ({:#x})", self.addr),
            None => write!(f, "{:#x}", self.addr),
        }
    }
}

impl LockRef {
    /// The short label for tables: the name when known, else the location, else the
    /// address.
    #[must_use]
    pub fn label(&self) -> String {
        self.name
            .clone()
            .or_else(|| self.location.clone())
            .unwrap_or_else(|| format!("{:#x}", self.addr))
    }
}

/// One thread (or goroutine) of a deadlock cycle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeadlockEntry {
    /// Goroutine id (as in the runtime's own goroutine dump), for a goroutine; omitted
    /// from JSON for native threads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub goid: Option<u64>,
    /// Kernel thread id; for a goroutine, the thread it last ran on.
    pub tid: u32,
    /// Thread name (`comm`), empty when unknown.
    pub thread: String,
    /// The lock this thread holds that the previous thread of the cycle waits for.
    pub holds: LockRef,
    /// The lock this thread waits for, held by the next thread of the cycle.
    pub waits_for: LockRef,
    /// Function names of the waiting thread's stack, innermost first.
    pub stack: Vec<String>,
    /// The same frames with `file:line`, for the text report only.
    #[serde(skip)]
    pub stack_detail: Vec<String>,
    /// How long this thread had been waiting when the deadlock was reported; `None` when
    /// it was already waiting when the tracer attached (the start is then unknown).
    pub waited_ns: Option<u64>,
    /// Whether the thread was already blocked when the tracer attached.
    pub blocked_before_attach: bool,
    /// How long this thread has held `holds` (known with `--holds`).
    pub held_ns: Option<u64>,
    /// Where this thread took `holds`: function names, innermost first, starting at the
    /// lock call's site (known with `--holds`; empty otherwise).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub acquired_at: Vec<String>,
    /// The same frames with `file:line`, for the text report only.
    #[serde(skip)]
    pub acquired_at_detail: Vec<String>,
}

/// A wait-for cycle: the threads are deadlocked.
///
/// JSON: `{"kind":"deadlock","cycle":[…],"detected_after_ns":…}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename = "deadlock")]
pub struct Deadlock {
    /// The threads in wait order: each waits for a lock held by the next, the last waits for
    /// one held by the first.
    pub cycle: Vec<DeadlockEntry>,
    /// How long after the wait that closed the cycle began the tracer detected it, if known.
    pub detected_after_ns: Option<u64>,
}

/// What kind of lock the tracer saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum LockKind {
    /// A plain mutex (e.g. `pthread_mutex_t`).
    #[serde(rename = "mutex")]
    Mutex,
    /// A priority-inheritance mutex (`FUTEX_LOCK_PI`).
    #[serde(rename = "pi_mutex")]
    PiMutex,
    /// A reader-writer lock.
    #[serde(rename = "rwlock")]
    RwLock,
    /// A futex word not recognised as any of the above.
    #[serde(rename = "futex")]
    Futex,
    /// A Go `sync.Mutex`.
    #[serde(rename = "go_mutex")]
    GoMutex,
    /// A Go `sync.RWMutex`.
    #[serde(rename = "go_rwmutex")]
    GoRwMutex,
}

impl LockKind {
    /// The name used in both JSON and text.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mutex => "mutex",
            Self::PiMutex => "pi_mutex",
            Self::RwLock => "rwlock",
            Self::Futex => "futex",
            Self::GoMutex => "go_mutex",
            Self::GoRwMutex => "go_rwmutex",
        }
    }
}

impl fmt::Display for LockKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a stuck lock is held.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HoldMode {
    /// Exclusively (a mutex, or an `RWMutex`'s write side).
    Write,
    /// Shared (an `RWMutex`'s readers).
    Read,
}

/// What the goroutine holding a stuck lock is doing now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HolderState {
    /// Runnable, running or in a system call.
    Running,
    /// Parked (on a lock, a channel, a timer, I/O, …).
    Blocked,
    /// The goroutine has exited: the lock can never be released by it.
    Exited,
    /// The holder is not known, or its state could not be read.
    Unknown,
}

/// The goroutine holding a stuck lock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StuckHolder {
    /// Goroutine id, `None` when the holder is unknown (it took the lock before the
    /// tracer attached, or at a site that could not be probed).
    pub goid: Option<u64>,
    /// What it is doing now.
    pub state: HolderState,
    /// Where it took the lock: the first frame outside the `sync` package, with
    /// `file:line`; `None` when unknown.
    pub acquired_at: Option<String>,
    /// Its stack when it took the lock, function names innermost first.
    pub stack: Vec<String>,
    /// The same frames with `file:line`, for the text report only.
    #[serde(skip)]
    pub stack_detail: Vec<String>,
}

/// A lock with waiters and no release for longer than the threshold.
///
/// JSON: `{"kind":"stuck_lock","lock":{…},"mode":"write"|"read","held_ns":…,"holder":{…},
/// "waiters":…,"readers_waiting":…,"writers_waiting":…}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename = "stuck_lock")]
pub struct StuckLock {
    /// The lock.
    pub lock: LockRef,
    /// How it is held.
    pub mode: HoldMode,
    /// How long it has been held: since the holder took it when known, else at least
    /// since the last release the tracer saw.
    pub held_ns: u64,
    /// Who holds it.
    pub holder: StuckHolder,
    /// Goroutines waiting for it now.
    pub waiters: usize,
    /// Of those, waiting to read.
    pub readers_waiting: usize,
    /// Of those, waiting to write.
    pub writers_waiting: usize,
}

/// Contention summary of one lock.
///
/// JSON: `{"addr":"0x…","name":…,"type":"mutex","contentions":…,"max_waiters":…,
/// "wait_ns":{…},"hold_ns":{…}|null,"top_waiter_stack":[…]}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LockSummary {
    /// The lock; flattened into `addr` and `name` in JSON.
    #[serde(flatten)]
    pub lock: LockRef,
    /// Lock kind, JSON field `type`.
    #[serde(rename = "type")]
    pub kind: LockKind,
    /// Number of waits that began on this lock.
    pub contentions: u64,
    /// Largest number of simultaneous waiters.
    pub max_waiters: u32,
    /// Wait time distribution.
    pub wait_ns: Quantiles,
    /// Hold time distribution, when hold times were measured.
    pub hold_ns: Option<Quantiles>,
    /// Function names of the stack that waited longest in total, innermost first.
    pub top_waiter_stack: Vec<String>,
}

/// The end-of-run summary.
///
/// JSON: `{"kind":"summary","pid":…,"duration_ns":…,"events":…,"dropped":…,"futex_wakes":…,
/// "futex_waits":…,"brief_lock_waits":…,"deadlocks":…,"locks":[…],"notes":[…]}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename = "summary")]
pub struct Summary {
    /// The traced process.
    pub pid: u32,
    /// How long it was traced.
    pub duration_ns: u64,
    /// Events received from the kernel.
    pub events: u64,
    /// Events lost before reaching user space; nonzero means the results are incomplete.
    pub dropped: u64,
    /// Futex wake calls seen.
    pub futex_wakes: u64,
    /// Futex wait calls seen (lock waits and others, such as condition variables).
    pub futex_waits: u64,
    /// Of the lock waits, those that returned without sleeping (the lock was released
    /// while the waiter entered the kernel). The kernel adds these up instead of sending
    /// each; they are included in the locks' `contentions` and `wait_ns`.
    pub brief_lock_waits: u64,
    /// Number of deadlocks reported during the run.
    pub deadlocks: usize,
    /// Contended locks, in report order (see [`Summary::sort_locks`]).
    pub locks: Vec<LockSummary>,
    /// Remarks for the reader (limits hit, probes that could not attach, …).
    pub notes: Vec<String>,
}

impl Summary {
    /// Sorts the locks by total wait time, largest first; ties by address, so the order is
    /// deterministic.
    pub fn sort_locks(&mut self) {
        self.locks.sort_by(|a, b| {
            b.wait_ns
                .total
                .cmp(&a.wait_ns.total)
                .then(a.lock.addr.cmp(&b.lock.addr))
        });
    }
}

/// Summary of a distribution of durations, all in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Quantiles {
    /// Number of recorded values.
    pub count: u64,
    /// Median (within 1%: the histograms keep 2 significant digits).
    pub p50: u64,
    /// 90th percentile (within 1%: the histograms keep 2 significant digits).
    pub p90: u64,
    /// 99th percentile (within 1%: the histograms keep 2 significant digits).
    pub p99: u64,
    /// Largest value, exact.
    pub max: u64,
    /// Sum of all values, exact, saturating at `u64::MAX` (584 years).
    pub total: u64,
}

/// Something the tracer found, reported the moment it is confirmed.
///
/// Each kind serializes with its own `"kind"` tag (`"deadlock"`, `"stuck_lock"`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Finding {
    /// A wait-for cycle.
    Deadlock(Deadlock),
    /// A lock with waiters and no release for longer than the threshold (Go targets).
    StuckLock(StuckLock),
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Report values shared by the model's and the sinks' tests.
    use super::*;

    pub(crate) fn lock(addr: u64, name: Option<&str>) -> LockRef {
        LockRef {
            location: None,
            addr,
            name: name.map(str::to_owned),
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
                    held_ns: Some(2_000_000_000),
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
                    held_ns: None,
                    acquired_at: Vec::new(),
                    acquired_at_detail: Vec::new(),
                },
            ],
            detected_after_ns: Some(1_500_000),
        }
    }

    pub(crate) fn summary() -> Summary {
        Summary {
            pid: 4242,
            duration_ns: 12_300_000_000,
            events: 45_600,
            dropped: 0,
            futex_wakes: 17,
            futex_waits: 30,
            brief_lock_waits: 20,
            deadlocks: 1,
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
}

#[cfg(test)]
mod tests {
    use super::{fixtures::summary, *};

    #[test]
    fn lock_kind_names() {
        for (kind, name) in [
            (LockKind::Mutex, "mutex"),
            (LockKind::PiMutex, "pi_mutex"),
            (LockKind::RwLock, "rwlock"),
            (LockKind::Futex, "futex"),
        ] {
            assert_eq!(serde_json::to_value(kind).expect("serializes"), name);
            assert_eq!(kind.to_string(), name);
        }
    }

    #[test]
    fn sort_by_total_wait_then_addr() {
        let mut s = summary();
        s.sort_locks();
        let addrs: Vec<u64> = s.locks.iter().map(|l| l.lock.addr).collect();
        // 0x7f12ab00 waited longest; 0x10 and 0x20 tie on total, so by address.
        assert_eq!(addrs, vec![0x7f12_ab00, 0x10, 0x20]);
    }
}
