//! The one place where findings and lock statistics become report values.
//!
//! The native analysis and the Go tracker describe what they found in raw terms (lock
//! addresses, thread and goroutine ids, timestamps, where a stack can be found: the
//! `crate::model::raw`); this module turns those into `crate::model` values, asking a
//! [`Naming`] for every name: locks, threads, stack frames. Naming is the only part that
//! looks at the target (its symbols, its memory); assembly itself is pure, so it is
//! tested here with a fake naming.

mod naming;

use rustc_hash::{FxHashMap, FxHashSet};

pub use self::naming::{GoNames, Namer, StackSource};
use crate::{
    model::{
        Deadlock, DeadlockEntry, HolderState, LockKind, LockOrderInversion, LockRef, LockSummary,
        OrderEdge, StuckHolder, StuckLock,
        profile::ProfileFrame,
        raw::{RawCycleEntry, RawFinding, RawInversion, RawLockStats, RawStack, RawStuckLock},
    },
    native::go_runtime::{self, GoFutexVerdict, GoFutexWait},
};

/// A stack as the report shows it: function names innermost first, and the same frames
/// with `file:line` where known.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stack {
    pub names: Vec<String>,
    pub detail: Vec<String>,
    /// The same frames, structured (function, file, line, object, address), for
    /// profiles; may be empty where a naming has no such detail (tests).
    pub frames: Vec<ProfileFrame>,
}

/// Everything that names what the analyses found.
pub trait Naming {
    /// The lock at `addr`.
    fn lock(&mut self, addr: u64) -> LockRef;
    /// The frames of `stack`.
    fn stack(&mut self, stack: &RawStack) -> Stack;
    /// The name (`comm`) of thread `tid`, empty when unknown.
    fn thread_name(&mut self, tid: u32) -> String;
    /// Whether `function` is part of a lock's implementation (skipped when telling where
    /// a lock was taken).
    fn is_lock_internal(&self, function: &str) -> bool;
}

/// Locks in the summary that get their top waiting stack named: naming a stack costs
/// symbol lookups, and nobody reads the stacks of the 1000th lock.
pub const STACKS_IN_SUMMARY: usize = 20;

/// The report's value of `finding`, at `now_ns` (`CLOCK_MONOTONIC`, like the raw times).
pub fn finding(
    finding: &RawFinding,
    now_ns: u64,
    naming: &mut dyn Naming,
) -> crate::model::Finding {
    match finding {
        RawFinding::Deadlock(entries) => {
            crate::model::Finding::Deadlock(deadlock(entries, now_ns, naming))
        }
        RawFinding::StuckLock(stuck) => crate::model::Finding::StuckLock(stuck_lock(stuck, naming)),
        RawFinding::LockOrderInversion(inversion) => {
            crate::model::Finding::LockOrderInversion(lock_order_inversion(inversion, naming))
        }
    }
}

/// The report's value of a lock-order inversion.
pub fn lock_order_inversion(
    inversion: &RawInversion,
    naming: &mut dyn Naming,
) -> LockOrderInversion {
    let edges: Vec<OrderEdge> = inversion
        .edges
        .iter()
        .map(|e| {
            let from_stack = naming.stack(&e.from_stack);
            let to_stack = naming.stack(&e.to_stack);
            OrderEdge {
                from: naming.lock(e.from),
                to: naming.lock(e.to),
                tid: e.tid,
                goid: e.goid,
                thread: if e.goid.is_some() {
                    String::new()
                } else {
                    naming.thread_name(e.tid)
                },
                from_stack: from_stack.names,
                from_stack_detail: from_stack.detail,
                to_stack: to_stack.names,
                to_stack_detail: to_stack.detail,
            }
        })
        .collect();
    LockOrderInversion {
        locks: edges.iter().map(|e| e.from.clone()).collect(),
        edges,
        harmless: inversion.gate.is_some(),
        gate: inversion.gate.map(|addr| naming.lock(addr)),
    }
}

/// The report's value of a wait-for cycle.
pub fn deadlock(entries: &[RawCycleEntry], now_ns: u64, naming: &mut dyn Naming) -> Deadlock {
    let ago = |since: Option<u64>| since.map(|t| now_ns.saturating_sub(t));
    // The cycle closed when its last wait began; waits that predate the attach have no
    // known start and say nothing about it.
    let closed_at = entries
        .iter()
        .filter_map(|e| e.waiting_since_ns)
        .max()
        .unwrap_or(0);
    let cycle = entries
        .iter()
        .map(|e| {
            let waiting = naming.stack(&e.waiting);
            let acquired = naming.stack(&e.acquired);
            DeadlockEntry {
                goid: e.goid,
                tid: e.tid,
                // A goroutine moves between threads: the name of the one it last ran on
                // says nothing about it.
                thread: if e.goid.is_some() {
                    String::new()
                } else {
                    naming.thread_name(e.tid)
                },
                holds: naming.lock(e.holds),
                waits_for: naming.lock(e.waits_for),
                stack: waiting.names,
                stack_detail: waiting.detail,
                waited_ns: ago(e.waiting_since_ns),
                blocked_before_attach: e.blocked_before_attach,
                timed: e.timed,
                timeout_ns: e.gives_up_at_ns.map(|at| at.saturating_sub(now_ns)),
                held_ns: ago(e.holding_since_ns),
                holder_evidence: e.holder_evidence,
                acquired_at: acquired.names,
                acquired_at_detail: acquired.detail,
            }
        })
        .collect::<Vec<DeadlockEntry>>();
    Deadlock {
        will_time_out: !cycle.is_empty() && cycle.iter().all(|e| e.timed),
        cycle,
        detected_after_ns: (closed_at > 0).then(|| now_ns.saturating_sub(closed_at)),
    }
}

/// The report's value of a stuck lock.
pub fn stuck_lock(stuck: &RawStuckLock, naming: &mut dyn Naming) -> StuckLock {
    let holders: Vec<StuckHolder> = stuck
        .holders
        .iter()
        .map(|h| {
            let acquired = naming.stack(&h.acquired);
            StuckHolder {
                goid: Some(h.goid),
                state: h.state,
                evidence: Some(h.evidence),
                acquired_at: acquisition_site(&acquired, naming),
                stack: acquired.names,
                stack_detail: acquired.detail,
            }
        })
        .collect();
    let holder = holders.first().cloned().unwrap_or(StuckHolder {
        goid: None,
        state: HolderState::Unknown,
        evidence: None,
        acquired_at: None,
        stack: Vec::new(),
        stack_detail: Vec::new(),
    });
    StuckLock {
        lock: naming.lock(stuck.addr),
        mode: stuck.mode,
        held_ns: stuck.held_ns,
        holder,
        holders,
        waiters: stuck.waiters,
        readers_waiting: stuck.readers_waiting,
        writers_waiting: stuck.writers_waiting,
    }
}

/// Where a lock was taken: the first frame of the acquisition stack outside the lock
/// implementation (the probe site itself may be inside an out-of-line `RWMutex.Lock`),
/// as `function (file:line)`.
fn acquisition_site(stack: &Stack, naming: &dyn Naming) -> Option<String> {
    stack
        .names
        .iter()
        .position(|n| !naming.is_lock_internal(n))
        .and_then(|i| stack.detail.get(i))
        .or_else(|| stack.detail.last())
        .cloned()
}

/// The summary's lock table: every lock named, sorted by total wait time (largest first,
/// ties by address), the first [`STACKS_IN_SUMMARY`] with their top waiter stack, which
/// `top_waiter` finds (asked for those locks only: finding it may take a scan).
pub fn lock_summaries(
    locks: &[RawLockStats],
    top_waiter: &dyn Fn(u64) -> RawStack,
    naming: &mut dyn Naming,
) -> Vec<LockSummary> {
    let mut order: Vec<&RawLockStats> = locks.iter().collect();
    order.sort_by(|a, b| {
        b.wait_ns
            .total
            .cmp(&a.wait_ns.total)
            .then(a.addr.cmp(&b.addr))
    });
    order
        .into_iter()
        .enumerate()
        .map(|(i, raw)| LockSummary {
            lock: naming.lock(raw.addr),
            kind: raw.kind,
            contentions: raw.contentions,
            max_waiters: raw.max_waiters,
            wait_ns: raw.wait_ns,
            hold_ns: raw.hold_ns,
            top_waiter_stack: if i < STACKS_IN_SUMMARY {
                naming.stack(&top_waiter(raw.addr)).detail
            } else {
                Vec::new()
            },
        })
        .collect()
}

/// Stacks per futex word looked at to tell a Go runtime lock from an idle sleep: the most
/// frequent ones; each costs a stack naming.
pub const STACKS_PER_GO_FUTEX: usize = 16;

/// What the frames of a Go program's futex waits say of the futex words the native
/// analysis counted as locks (see `crate::native::go_runtime`).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct GoRuntimeFutexes {
    /// Words where every wait with a stack was an idle sleep: not locks.
    pub idle: FxHashSet<u64>,
    /// Names of the runtime locks, by address (`channel lock (runtime.chanrecv)`).
    pub names: FxHashMap<u64, String>,
}

impl GoRuntimeFutexes {
    /// Names the runtime locks among `summaries` that have no name of their own (a
    /// symbol or field path is more precise than what the frames say).
    pub fn name(&self, summaries: &mut [LockSummary]) {
        for summary in summaries {
            self.name_lock(&mut summary.lock);
        }
    }

    /// Names `lock` if it is one of the runtime locks and has no name of its own: the
    /// summary, the profile and the metrics call a lock the same.
    pub fn name_lock(&self, lock: &mut LockRef) {
        if lock.name.is_none()
            && let Some(name) = self.names.get(&lock.addr)
        {
            lock.name = Some(name.clone());
        }
    }
}

/// Classifies the bare futex words (`LockKind::Futex`) among `locks` of a Go program from
/// the frames of the waits on them, which `stacks_of` lists (most frequent first).
pub fn go_runtime_futexes(
    locks: &[RawLockStats],
    stacks_of: &dyn Fn(u64) -> Vec<RawStack>,
    naming: &mut dyn Naming,
) -> GoRuntimeFutexes {
    let words = locks
        .iter()
        .filter(|l| l.kind == LockKind::Futex)
        .map(|l| l.addr);
    go_runtime_futex_words(words, stacks_of, naming)
}

/// [`go_runtime_futexes`] for futex words already known to be bare ones.
pub fn go_runtime_futex_words(
    words: impl IntoIterator<Item = u64>,
    stacks_of: &dyn Fn(u64) -> Vec<RawStack>,
    naming: &mut dyn Naming,
) -> GoRuntimeFutexes {
    let mut out = GoRuntimeFutexes::default();
    for addr in words {
        let waits: Vec<GoFutexWait> = stacks_of(addr)
            .iter()
            .map(|stack| naming.stack(stack))
            .filter(|stack| !stack.names.is_empty())
            .map(|stack| go_runtime::classify(&stack.names))
            .collect();
        match go_runtime::verdict(&waits) {
            GoFutexVerdict::Idle => {
                out.idle.insert(addr);
            }
            GoFutexVerdict::RuntimeLock(name) => {
                out.names.insert(addr, name);
            }
            GoFutexVerdict::Unknown => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        event::StackWindow,
        model::{HoldMode, HolderEvidence, Quantiles, raw::RawHolder},
    };

    /// Names locks `lock@ADDR`, threads `thread-TID`, and a stack by its stack id.
    #[derive(Default)]
    struct FakeNaming {
        stacks_named: usize,
    }

    impl Naming for FakeNaming {
        fn lock(&mut self, addr: u64) -> LockRef {
            LockRef {
                addr,
                name: Some(format!("lock@{addr:#x}")),
                location: None,
                name_source: None,
            }
        }

        fn stack(&mut self, stack: &RawStack) -> Stack {
            let id = match stack {
                RawStack::Native { stack_id, .. } | RawStack::NativeRead { stack_id, .. } => {
                    stack_id.map(i64::from)
                }
                RawStack::Go { stack_id, .. } => Some(i64::from(*stack_id)),
                RawStack::GoUnwound(pcs) => pcs.first().and_then(|&pc| i64::try_from(pc).ok()),
                RawStack::None => None,
            };
            let Some(id) = id else {
                return Stack::default();
            };
            self.stacks_named += 1;
            Stack {
                names: vec!["sync.(*Mutex).Lock".into(), format!("main.f{id}")],
                detail: vec![
                    "sync.(*Mutex).Lock (mutex.go:1)".into(),
                    format!("main.f{id} (main.go:{id})"),
                ],
                frames: Vec::new(),
            }
        }

        fn thread_name(&mut self, tid: u32) -> String {
            format!("thread-{tid}")
        }

        fn is_lock_internal(&self, function: &str) -> bool {
            function.starts_with("sync.")
        }
    }

    fn native(id: u32) -> RawStack {
        RawStack::Native {
            stack_id: Some(id),
            window: Box::new(StackWindow::EMPTY),
            waiter: None,
        }
    }

    fn entry(tid: u32, holds: u64, waits_for: u64, since: Option<u64>) -> RawCycleEntry {
        RawCycleEntry {
            goid: None,
            tid,
            holds,
            waits_for,
            waiting: native(tid),
            waiting_since_ns: since,
            blocked_before_attach: since.is_none(),
            timed: false,
            gives_up_at_ns: None,
            holding_since_ns: None,
            holder_evidence: None,
            acquired: RawStack::None,
        }
    }

    /// Guards "detected after": it counts from the latest wait start that is known, and a
    /// wait adopted at attach (start unknown) neither counts nor gets a waited time.
    #[test]
    fn a_deadlock_counts_from_its_last_known_wait() {
        let entries = [entry(10, 0xa, 0xb, Some(1_000)), entry(11, 0xb, 0xa, None)];
        let d = deadlock(&entries, 5_000, &mut FakeNaming::default());
        assert_eq!(d.detected_after_ns, Some(4_000));
        assert_eq!(d.cycle[0].waited_ns, Some(4_000));
        assert_eq!(d.cycle[1].waited_ns, None);
        assert!(d.cycle[1].blocked_before_attach);
        assert_eq!(d.cycle[1].thread, "thread-11");
        assert_eq!(d.cycle[0].holds.name.as_deref(), Some("lock@0xa"));
        assert_eq!(d.cycle[0].waits_for.name.as_deref(), Some("lock@0xb"));
        assert_eq!(d.cycle[0].stack, ["sync.(*Mutex).Lock", "main.f10"]);
        assert!(d.cycle[0].acquired_at.is_empty());

        let all_before = [entry(10, 0xa, 0xb, None), entry(11, 0xb, 0xa, None)];
        let d = deadlock(&all_before, 5_000, &mut FakeNaming::default());
        assert_eq!(d.detected_after_ns, None);
    }

    /// Guards the timeouts of a cycle's entries: a timed wait's `timeout_ns` is the time
    /// left until its deadline when the cycle is reported (0 once passed), an untimed
    /// one has none, and the cycle will time out only when every wait is timed.
    #[test]
    fn timed_entries_carry_the_time_left() {
        let timed = |mut e: RawCycleEntry, at: Option<u64>| {
            e.timed = true;
            e.gives_up_at_ns = at;
            e
        };
        let entries = [
            timed(entry(10, 0xa, 0xb, Some(1_000)), Some(205_000)),
            timed(entry(11, 0xb, 0xa, None), None),
        ];
        let d = deadlock(&entries, 5_000, &mut FakeNaming::default());
        assert!(d.will_time_out);
        assert_eq!(
            d.cycle
                .iter()
                .map(|e| (e.timed, e.timeout_ns))
                .collect::<Vec<_>>(),
            [(true, Some(200_000)), (true, None)]
        );
        let late = deadlock(&entries, 300_000, &mut FakeNaming::default());
        assert_eq!(late.cycle[0].timeout_ns, Some(0));
        let mixed = [entries[0].clone(), entry(11, 0xb, 0xa, None)];
        let d = deadlock(&mixed, 5_000, &mut FakeNaming::default());
        assert!(!d.will_time_out, "an untimed wait keeps it a deadlock");
        assert_eq!(d.cycle[0].timeout_ns, Some(200_000));
        assert_eq!((d.cycle[1].timed, d.cycle[1].timeout_ns), (false, None));
    }

    /// Guards the stuck-lock headline: the holder's acquisition site skips the lock's own
    /// frames, and an unknown holder is reported as such.
    #[test]
    fn a_stuck_lock_names_where_its_holder_took_it() {
        let mut stuck = RawStuckLock {
            addr: 0x40,
            mode: HoldMode::Write,
            held_ns: 7,
            holders: vec![
                RawHolder {
                    goid: 33,
                    state: HolderState::Blocked,
                    evidence: HolderEvidence::DeferredUnlock,
                    acquired: RawStack::Go {
                        pc: 1,
                        caller: 0,
                        stack_id: 5,
                    },
                },
                RawHolder {
                    goid: 34,
                    state: HolderState::Running,
                    evidence: HolderEvidence::TracedAcquire,
                    acquired: RawStack::GoUnwound(vec![6]),
                },
            ],
            waiters: 3,
            readers_waiting: 2,
            writers_waiting: 1,
        };
        let s = stuck_lock(&stuck, &mut FakeNaming::default());
        assert_eq!(s.holder.goid, Some(33));
        assert_eq!(s.holder.acquired_at.as_deref(), Some("main.f5 (main.go:5)"));
        assert_eq!(s.holder.evidence, Some(HolderEvidence::DeferredUnlock));
        assert_eq!(s.holders.len(), 2, "every holder is listed");
        assert_eq!(
            s.holders[1].acquired_at.as_deref(),
            Some("main.f6 (main.go:6)")
        );
        assert_eq!((s.waiters, s.readers_waiting, s.writers_waiting), (3, 2, 1));
        stuck.holders.clear();
        let s = stuck_lock(&stuck, &mut FakeNaming::default());
        assert_eq!(
            (s.holder.goid, s.holder.state),
            (None, HolderState::Unknown)
        );
        assert!(s.holder.stack.is_empty());
        assert_eq!(s.holder.evidence, None);
        assert!(s.holders.is_empty());
    }

    /// Names Go runtime stacks by stack id: 1 a sysmon note sleep, 2 sysmon taking the
    /// scheduler lock, 3 a channel receive's lock, anything else cgo code.
    struct GoRuntimeNaming;

    impl Naming for GoRuntimeNaming {
        fn lock(&mut self, addr: u64) -> LockRef {
            LockRef {
                addr,
                name: None,
                location: None,
                name_source: None,
            }
        }

        fn stack(&mut self, stack: &RawStack) -> Stack {
            let RawStack::Native {
                stack_id: Some(id), ..
            } = stack
            else {
                return Stack::default();
            };
            let names: &[&str] = match id {
                1 => &[
                    "runtime.futex",
                    "runtime.notetsleep_internal",
                    "runtime.sysmon",
                ],
                2 => &["runtime.futex", "runtime.lock2", "runtime.sysmon"],
                3 => &["runtime.futex", "runtime.lock2", "runtime.chanrecv"],
                _ => &["__lll_lock_wait", "pthread_mutex_lock", "c_work"],
            };
            Stack {
                names: names.iter().map(ToString::to_string).collect(),
                detail: Vec::new(),
                frames: Vec::new(),
            }
        }

        fn thread_name(&mut self, _: u32) -> String {
            String::new()
        }

        fn is_lock_internal(&self, _: &str) -> bool {
            false
        }
    }

    /// Guards issue 15 point 7's summary: a futex word of a Go program on which threads
    /// only slept idle leaves the table, a runtime lock gets the name its frames give
    /// (unless it has a name of its own), and words of other kinds or without stacks
    /// are left alone.
    #[test]
    fn go_runtime_futexes_leave_idle_sleeps_out_and_name_runtime_locks() {
        let raw = |addr: u64, kind: LockKind| RawLockStats {
            addr,
            kind,
            contentions: 1,
            max_waiters: 1,
            wait_ns: Quantiles::default(),
            hold_ns: None,
        };
        let locks = [
            raw(0x10, LockKind::Futex),
            raw(0x20, LockKind::Futex),
            raw(0x30, LockKind::Futex),
            raw(0x40, LockKind::Futex),
            raw(0x50, LockKind::Mutex),
            raw(0x60, LockKind::Futex),
        ];
        let stacks_of = |addr: u64| -> Vec<RawStack> {
            let ids: &[u32] = match addr {
                0x10 => &[1, 1],
                0x20 => &[1, 2],
                0x30 => &[3],
                0x40 | 0x50 => &[1],
                _ => &[],
            };
            ids.iter().map(|&id| native(id)).collect()
        };
        let go = go_runtime_futexes(&locks[..4], &stacks_of, &mut GoRuntimeNaming);
        assert_eq!(go.idle, [0x10, 0x40].into_iter().collect());
        assert_eq!(
            go.names.get(&0x20).map(String::as_str),
            Some("scheduler lock (runtime.sysmon)")
        );
        assert_eq!(
            go.names.get(&0x30).map(String::as_str),
            Some("channel lock (runtime.chanrecv)")
        );
        let all = go_runtime_futexes(&locks, &stacks_of, &mut GoRuntimeNaming);
        assert!(
            !all.idle.contains(&0x50) && !all.idle.contains(&0x60),
            "a glibc mutex and a word without stacks stay"
        );
        let mut summaries = lock_summaries(&locks, &|_| RawStack::None, &mut GoRuntimeNaming);
        summaries[1].lock.name = Some("runtime.sched.lock".into());
        let own = summaries[1].lock.addr;
        go.name(&mut summaries);
        let name = |addr| {
            summaries
                .iter()
                .find(|s| s.lock.addr == addr)
                .and_then(|s| s.lock.name.clone())
        };
        assert_eq!(
            name(0x30).as_deref(),
            Some("channel lock (runtime.chanrecv)")
        );
        assert_eq!(name(own).as_deref(), Some("runtime.sched.lock"));
    }

    /// Guards the summary table: sorted by total wait then address, and only the first
    /// [`STACKS_IN_SUMMARY`] locks pay for naming a stack.
    #[test]
    fn lock_summaries_sort_and_name_the_top_stacks_only() {
        let raw = |addr: u64, total: u64| RawLockStats {
            addr,
            kind: LockKind::Mutex,
            contentions: 1,
            max_waiters: 1,
            wait_ns: Quantiles {
                total,
                ..Quantiles::default()
            },
            hold_ns: None,
        };
        let mut locks: Vec<RawLockStats> = (0..30).map(|i| raw(0x100 + i, 10)).collect();
        locks.push(raw(0x1, 10));
        locks.push(raw(0x9999, 500));
        let mut naming = FakeNaming::default();
        let summaries = lock_summaries(&locks, &|_| native(1), &mut naming);
        let addrs: Vec<u64> = summaries.iter().take(3).map(|l| l.lock.addr).collect();
        assert_eq!(addrs, [0x9999, 0x1, 0x100]);
        assert_eq!(naming.stacks_named, STACKS_IN_SUMMARY);
        assert!(!summaries[STACKS_IN_SUMMARY - 1].top_waiter_stack.is_empty());
        assert!(summaries[STACKS_IN_SUMMARY].top_waiter_stack.is_empty());
        assert_eq!(summaries.len(), 32);
    }
}
