//! The live state of a traced process, as `tracer serve` publishes it for metrics: per-lock
//! counters and wait/hold distributions in fixed buckets, cumulative since the attach; and,
//! for `tracer top`, the waits going on now ([`TopSnapshot`]).
//!
//! A snapshot is taken by the session that traces the process (it knows the locks) and
//! read by the metrics output (it knows the exposition format). Label cardinality is
//! bounded here, where the snapshot is made: a process's locks with the most wait time get
//! their own series ([`TargetSnapshot::locks`]), the rest are summed per lock kind
//! ([`TargetSnapshot::other`]), so a target with 100 000 locks exports a few dozen series.

use serde::Serialize;

use super::{LockKind, LockRef};

/// Upper bounds of the distributions' buckets, in nanoseconds: 1-2.5-5 steps from 1 µs to
/// 10 s (Prometheus's `le` in seconds: `1e-06` … `10`), then `+Inf`.
///
/// Why these: lock waits range from a microsecond (a handover) to seconds (a stuck lock);
/// three buckets per decade keep `histogram_quantile` within about a factor 2.5 at any
/// scale, with 22 series per lock.
pub const BUCKET_BOUNDS_NS: [u64; 22] = [
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// A distribution of durations in [`BUCKET_BOUNDS_NS`] buckets, cumulative as Prometheus
/// histograms are: `le[i]` counts the values `<= BUCKET_BOUNDS_NS[i]`; `count` is the
/// `+Inf` bucket.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Buckets {
    /// Cumulative counts, one per bound of [`BUCKET_BOUNDS_NS`].
    pub le: [u64; BUCKET_BOUNDS_NS.len()],
    /// Number of values.
    pub count: u64,
    /// Sum of the values, in nanoseconds.
    pub sum_ns: u128,
}

impl Buckets {
    /// Adds `other`'s values to these.
    pub fn absorb(&mut self, other: &Self) {
        for (mine, theirs) in self.le.iter_mut().zip(other.le) {
            *mine = mine.saturating_add(theirs);
        }
        self.count = self.count.saturating_add(other.count);
        self.sum_ns = self.sum_ns.saturating_add(other.sum_ns);
    }
}

/// One lock's counters, cumulative since the attach.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LiveLock {
    /// The lock, named.
    pub lock: LockRef,
    /// Its kind.
    pub kind: LockKind,
    /// Waits that began on it (brief ones included).
    pub contentions: u64,
    /// Its measured waits.
    pub wait: Buckets,
    /// Its hold times, when they are traced.
    pub hold: Option<Buckets>,
}

/// The locks of one kind summed together: those beyond a target's `top` locks, and the
/// ones folded to bound the tracer's memory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OtherLiveLocks {
    /// Their kind.
    pub kind: LockKind,
    /// How many locks.
    pub locks: u64,
    /// Their waits, added up.
    pub contentions: u64,
    /// Their measured waits, together.
    pub wait: Buckets,
    /// Their hold times, together, when traced.
    pub hold: Option<Buckets>,
}

/// What one traced process looks like now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TargetSnapshot {
    /// Host PID.
    pub pid: u32,
    /// Process name (`comm`).
    pub comm: String,
    /// Whether the tracer still traces it (false: it exited or was detached, and its
    /// series are kept for a grace period).
    pub attached: bool,
    /// The locks with their own series: the most waited on, at most `top` of them, most
    /// waited on first.
    pub locks: Vec<LiveLock>,
    /// The rest, one aggregate per kind (no entry for a kind with none).
    pub other: Vec<OtherLiveLocks>,
    /// Deadlocks (and cycles of timed waits not included) reported so far.
    pub deadlocks: u64,
    /// Lock-order inversions (potential deadlocks, not harmless ones) reported so far.
    pub lock_order_inversions: u64,
    /// Locks reported stuck that are still held with waiters now.
    pub stuck_locks: u64,
    /// Records received from the kernel.
    pub events: u64,
    /// Records the kernel dropped (ring buffer full).
    pub dropped: u64,
    /// The kernel traces one sleeping futex wait in this many, each counting for as many
    /// (1: every one; `tracer serve --max-sleeps-per-second`).
    pub sleep_sample_period: u32,
}

/// What `tracer top` shows beyond the counters: a [`TargetSnapshot`] and the waits
/// going on right now, named (who waits for which lock, held by whom), and on request one
/// lock's stacks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopSnapshot {
    /// The counters, as `tracer serve` gets them.
    pub target: TargetSnapshot,
    /// Native threads waiting for a lock now, longest waiting first, at most
    /// [`MAX_LIVE_WAITS`].
    pub waits: Vec<LiveWait>,
    /// Waits beyond [`MAX_LIVE_WAITS`], left out.
    pub waits_left_out: usize,
    /// The stacks of the lock asked for, when one was.
    pub stacks: Option<LockStacks>,
    /// A holder now of each lock of `target.locks` the tracer knows one of (all held
    /// locks with `--holds`; otherwise mostly those with waiters), by address.
    pub holders: Vec<(u64, LiveThread)>,
}

/// Waits a [`TopSnapshot`] names at most: a screen shows a few dozen, and naming costs
/// thread-name reads.
pub const MAX_LIVE_WAITS: usize = 256;

/// A thread, by kernel id and name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveThread {
    /// Kernel thread id (for a goroutine, the thread it ran on when it began to wait or
    /// took the lock).
    pub tid: u32,
    /// Its name (`comm`), empty when unknown.
    pub name: String,
    /// The goroutine, when this is one (a Go program's `sync` lock waits and holds).
    pub goid: Option<u64>,
}

impl LiveThread {
    /// A native thread.
    #[must_use]
    pub fn native(tid: u32, name: String) -> Self {
        Self {
            tid,
            name,
            goid: None,
        }
    }

    /// What tells it apart from every other thread and goroutine of the snapshot.
    #[must_use]
    pub fn key(&self) -> u64 {
        self.goid
            .map_or(u64::from(self.tid), |goid| (1 << 63) | goid)
    }
}

/// A thread waiting for a lock now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveWait {
    /// Who waits.
    pub waiter: LiveThread,
    /// For which lock.
    pub lock: LockRef,
    /// For how long so far, in nanoseconds.
    pub waited_ns: u64,
    /// The threads holding that lock now, as far as the tracer knows (empty: unknown).
    pub holders: Vec<LiveThread>,
}

/// One lock's stacks, for `tracer top`'s detail pane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockStacks {
    /// The lock's address.
    pub addr: u64,
    /// The stacks that waited on it most often, most frequent first, as function names.
    pub waiters: Vec<Vec<String>>,
    /// Its holders now, each with the stack it took the lock from (known with
    /// `--holds`; empty otherwise).
    pub holders: Vec<(LiveThread, Vec<String>)>,
}

/// A lock as the snapshot sees it before it is named: the session's view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnnamedLiveLock {
    /// The lock's address.
    pub addr: u64,
    /// Its kind.
    pub kind: LockKind,
    /// Waits begun on it.
    pub contentions: u64,
    /// Its measured waits.
    pub wait: Buckets,
    /// Its hold times, when traced.
    pub hold: Option<Buckets>,
    /// How many locks this entry stands for (1, or more for an aggregate of folded locks,
    /// which always goes to `other`).
    pub locks: u64,
}

/// Splits `locks` into the `top` most waited on (by total wait time, then contentions,
/// then address, so the choice is deterministic), most waited on first, and the rest
/// summed per kind, in the order of [`LockKind`]'s first appearance. Entries standing for
/// several locks (folded aggregates) always go to the rest.
///
/// Counters stay monotonic across snapshots whichever locks are chosen: a lock that
/// leaves the top moves its counts into `other`, which only grows.
#[must_use]
pub fn split_top(
    mut locks: Vec<UnnamedLiveLock>,
    top: usize,
) -> (Vec<UnnamedLiveLock>, Vec<OtherLiveLocks>) {
    locks.sort_by(|a, b| {
        (b.locks == 1)
            .cmp(&(a.locks == 1))
            .then(b.wait.sum_ns.cmp(&a.wait.sum_ns))
            .then(b.contentions.cmp(&a.contentions))
            .then(a.addr.cmp(&b.addr))
    });
    let singles = locks.iter().take(top).take_while(|l| l.locks == 1).count();
    let rest = locks.split_off(singles);
    let mut other: Vec<OtherLiveLocks> = Vec::new();
    for lock in rest {
        if lock.locks == 0 {
            continue;
        }
        let index = other
            .iter()
            .position(|o| o.kind == lock.kind)
            .unwrap_or_else(|| {
                other.push(OtherLiveLocks {
                    kind: lock.kind,
                    locks: 0,
                    contentions: 0,
                    wait: Buckets::default(),
                    hold: None,
                });
                other.len() - 1
            });
        let entry = &mut other[index];
        entry.locks += lock.locks;
        entry.contentions = entry.contentions.saturating_add(lock.contentions);
        entry.wait.absorb(&lock.wait);
        if let Some(hold) = &lock.hold {
            entry.hold.get_or_insert_with(Buckets::default).absorb(hold);
        }
    }
    (locks, other)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock(addr: u64, kind: LockKind, wait_sum: u128, locks: u64) -> UnnamedLiveLock {
        let mut wait = Buckets {
            count: 2,
            sum_ns: wait_sum,
            ..Buckets::default()
        };
        wait.le[0] = 1;
        UnnamedLiveLock {
            addr,
            kind,
            contentions: 3,
            wait,
            hold: None,
            locks,
        }
    }

    /// Guards the bounded label set: only the `top` most waited-on single locks keep
    /// their own series, folded aggregates never do, and the rest are summed per kind
    /// without losing a count.
    #[test]
    fn top_locks_keep_their_series_and_the_rest_are_summed_per_kind() {
        let locks = vec![
            lock(0x10, LockKind::Mutex, 5, 1),
            lock(0x20, LockKind::Mutex, 50, 1),
            lock(0x30, LockKind::RwLock, 7, 1),
            lock(0x40, LockKind::Mutex, 1, 1),
            lock(0, LockKind::Mutex, 1_000, 40),
        ];
        let (top, other) = split_top(locks, 2);
        let addrs: Vec<u64> = top.iter().map(|l| l.addr).collect();
        assert_eq!(addrs, vec![0x20, 0x30]);
        assert_eq!(other.len(), 1, "{other:?}");
        let mutexes = &other[0];
        assert_eq!(mutexes.kind, LockKind::Mutex);
        assert_eq!(mutexes.locks, 42);
        assert_eq!(mutexes.contentions, 9);
        assert_eq!(mutexes.wait.sum_ns, 1_006);
        assert_eq!(mutexes.wait.count, 6);
        assert_eq!(mutexes.wait.le[0], 3);
    }

    /// Guards the case of fewer locks than `top`: all keep their series, nothing is summed.
    #[test]
    fn fewer_locks_than_top_are_all_kept() {
        let (top, other) = split_top(vec![lock(0x10, LockKind::GoMutex, 5, 1)], 20);
        assert_eq!(top.len(), 1);
        assert!(other.is_empty());
    }
}
