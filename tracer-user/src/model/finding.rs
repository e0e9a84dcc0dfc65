//! Findings: deadlocks and stuck locks, as every output sees them.

use serde::Serialize;

use super::{HoldMode, LockRef};

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
    /// Whether this thread's wait has a timeout (`pthread_mutex_timedlock`,
    /// `pthread_mutex_clocklock`, `pthread_rwlock_timed*`: the futex call's timeout
    /// argument): it gives up by itself.
    pub timed: bool,
    /// For a timed wait: the time left, when the cycle was reported, until the wait gives
    /// up (`ETIMEDOUT`). `None` for an untimed wait, or a timed one whose timeout could
    /// not be read. For a relative timeout (`FUTEX_WAIT`) of a wait already in progress
    /// at the attach, an upper bound.
    pub timeout_ns: Option<u64>,
    /// How long this thread has held `holds` (known with `--holds`).
    pub held_ns: Option<u64>,
    /// How the tracer knows this goroutine holds `holds`; for a native thread only
    /// `stack_guard` (a Rust `std` mutex), else omitted (the lock's owner field says).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holder_evidence: Option<HolderEvidence>,
    /// Where this thread took `holds`: function names, innermost first, starting at the
    /// lock call's site (known with `--holds`; empty otherwise).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub acquired_at: Vec<String>,
    /// The same frames with `file:line`, for the text report only.
    #[serde(skip)]
    pub acquired_at_detail: Vec<String>,
}

/// A wait-for cycle: the threads are deadlocked, unless every wait of the cycle has a
/// timeout (`will_time_out`): then the cycle resolves itself when the first wait gives up.
///
/// JSON: `{"kind":"deadlock","cycle":[…],"will_time_out":…,"detected_after_ns":…}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename = "deadlock")]
pub struct Deadlock {
    /// The threads in wait order: each waits for a lock held by the next, the last waits for
    /// one held by the first.
    pub cycle: Vec<DeadlockEntry>,
    /// Every wait of the cycle has a timeout: no permanent deadlock, the cycle breaks
    /// when the first of them gives up.
    pub will_time_out: bool,
    /// How long after the wait that closed the cycle began the tracer detected it, if known.
    pub detected_after_ns: Option<u64>,
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

impl HolderState {
    /// The state's name, as JSON writes it.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Blocked => "blocked",
            Self::Exited => "exited",
            Self::Unknown => "unknown",
        }
    }
}

/// How the tracer knows a goroutine holds a lock: always from evidence in the process,
/// never by guessing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HolderEvidence {
    /// Its stack holds a pending deferred `Unlock`/`RUnlock` of the lock.
    DeferredUnlock,
    /// A frame between an acquisition of the lock and its release holds the lock's
    /// address in a variable.
    FrameVariable,
    /// A probe saw it acquire the lock (`--holds`, or the slow path's return).
    TracedAcquire,
    /// A blocked thread's stack holds a live guard of the lock (a Rust `MutexGuard`'s
    /// reference to a locked `std` mutex) while it waits for another lock.
    StackGuard,
}

/// The goroutine holding a stuck lock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StuckHolder {
    /// Goroutine id, `None` when the holder is unknown (it took the lock before the
    /// tracer attached, or at a site that could not be probed).
    pub goid: Option<u64>,
    /// What it is doing now.
    pub state: HolderState,
    /// How the tracer knows it holds the lock; `None` when the holder is unknown.
    #[serde(rename = "holder_evidence")]
    pub evidence: Option<HolderEvidence>,
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
/// "holders":[…],"waiters":…,"readers_waiting":…,"writers_waiting":…}`.
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
    /// Who holds it (the first of `holders`, or an unknown holder).
    pub holder: StuckHolder,
    /// Every goroutine known to hold it: several readers may hold an `RWMutex`.
    pub holders: Vec<StuckHolder>,
    /// Goroutines waiting for it now.
    pub waiters: usize,
    /// Of those, waiting to read.
    pub readers_waiting: usize,
    /// Of those, waiting to write.
    pub writers_waiting: usize,
}

/// One edge of a lock-order inversion: a thread (or goroutine) took `to` while it held
/// `from`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OrderEdge {
    /// The lock held.
    pub from: LockRef,
    /// The lock taken while holding it.
    pub to: LockRef,
    /// Kernel thread id; for a goroutine, the thread it ran on then.
    pub tid: u32,
    /// Goroutine id, for a goroutine; omitted from JSON for native threads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub goid: Option<u64>,
    /// Thread name (`comm`), empty when unknown or for a goroutine.
    pub thread: String,
    /// Where it took `from`: function names, innermost first.
    pub from_stack: Vec<String>,
    /// The same frames with `file:line`, for the text report only.
    #[serde(skip)]
    pub from_stack_detail: Vec<String>,
    /// Where it then took `to`.
    pub to_stack: Vec<String>,
    /// The same frames with `file:line`, for the text report only.
    #[serde(skip)]
    pub to_stack_detail: Vec<String>,
}

/// Locks taken in orders that form a cycle: a potential deadlock, seen before it happens
/// (the first edge occurrences of each order, which need never have overlapped).
///
/// JSON: `{"kind":"lock_order_inversion","locks":[…],"edges":[…],"harmless":…,"gate":…}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename = "lock_order_inversion")]
pub struct LockOrderInversion {
    /// The locks of the cycle, in order: each edge goes from one to the next.
    pub locks: Vec<LockRef>,
    /// The orders seen, one per lock: `edges[i]` takes `locks[i + 1]` holding `locks[i]`.
    pub edges: Vec<OrderEdge>,
    /// Every edge was taken under one common lock (`gate`): the orders cannot meet.
    pub harmless: bool,
    /// That common lock, when `harmless`.
    pub gate: Option<LockRef>,
}

/// Something the tracer found, reported the moment it is confirmed.
///
/// Each kind serializes with its own `"kind"` tag (`"deadlock"`, `"stuck_lock"`,
/// `"lock_order_inversion"`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Finding {
    /// A wait-for cycle.
    Deadlock(Deadlock),
    /// A lock with waiters and no release for longer than the threshold (Go targets).
    StuckLock(StuckLock),
    /// Locks taken in orders that can deadlock.
    LockOrderInversion(LockOrderInversion),
}
