//! Findings and lock statistics as the analyses know them: lock addresses, thread and
//! goroutine ids, `CLOCK_MONOTONIC` timestamps, and where a stack can be found. No names:
//! `crate::assemble` resolves those when it turns these into the report's values.

use super::{HoldMode, HolderEvidence, HolderState, LockKind, Quantiles};
use crate::event::StackWindow;

/// Where a stack can be found, as the analyses know it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RawStack {
    /// A native stack: a copied stack window unwound by CFI, continued by the kernel's
    /// frame-pointer chain (by stack id). `waiter` is the waiting thread when the
    /// stack is a wait's (with `--holds` its window may hold the uretprobe trampoline in
    /// place of the lock call's return address).
    Native {
        stack_id: Option<u32>,
        window: Box<StackWindow>,
        waiter: Option<u32>,
    },
    /// A native wait's stack read from the blocked thread when a deadlock was reported
    /// (deeper than the kernel's window, and the only stack of a wait sent without one):
    /// the wait's `ip` and `sp` and the stack words from `sp` upwards, unwound like a
    /// window, then the kernel's chain when the wait came with one.
    NativeRead {
        stack_id: Option<u32>,
        ip: u64,
        sp: u64,
        words: Vec<u64>,
        waiter: u32,
    },
    /// A Go stack: the probe site's `pc`, the `caller` of an entry site (which the
    /// frame-pointer walk skips there; 0 when none), then the kernel's walk by stack id
    /// (negative when none was taken).
    Go { pc: u64, caller: u64, stack_id: i32 },
    /// A Go stack unwound from a parked goroutine's saved context: its program counter,
    /// then the return addresses of its callers.
    GoUnwound(Vec<u64>),
    /// No stack is known.
    None,
}

/// One thread (or goroutine) of a wait-for cycle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawCycleEntry {
    /// The goroutine, for a Go cycle.
    pub goid: Option<u64>,
    /// The thread (for a goroutine, the one it last ran on).
    pub tid: u32,
    /// The lock it holds that the previous entry waits for.
    pub holds: u64,
    /// The lock it waits for, held by the next entry.
    pub waits_for: u64,
    /// Its stack while waiting.
    pub waiting: RawStack,
    /// When the wait began; `None` when it was already waiting at attach.
    pub waiting_since_ns: Option<u64>,
    /// Whether it was already waiting when the tracer attached.
    pub blocked_before_attach: bool,
    /// Whether its wait has a timeout (gives up by itself).
    pub timed: bool,
    /// When its wait gives up (`CLOCK_MONOTONIC`), for a timed wait whose timeout is
    /// known.
    pub gives_up_at_ns: Option<u64>,
    /// When it took `holds`, when known.
    pub holding_since_ns: Option<u64>,
    /// How a goroutine is known to hold `holds` (`None` for native threads).
    pub holder_evidence: Option<HolderEvidence>,
    /// Where it took `holds`.
    pub acquired: RawStack,
}

/// The holder of a stuck lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawHolder {
    pub goid: u64,
    pub state: HolderState,
    pub evidence: HolderEvidence,
    /// Where it took the lock.
    pub acquired: RawStack,
}

/// A lock with waiters and no release for longer than the threshold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawStuckLock {
    pub addr: u64,
    pub mode: HoldMode,
    pub held_ns: u64,
    /// Every goroutine known to hold it (several readers may); empty when unknown.
    pub holders: Vec<RawHolder>,
    pub waiters: usize,
    pub readers_waiting: usize,
    pub writers_waiting: usize,
}

/// One edge of a lock-order inversion: `tid` (or goroutine `goid`) took `to` holding
/// `from`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawOrderEdge {
    pub from: u64,
    pub to: u64,
    pub tid: u32,
    pub goid: Option<u64>,
    /// Where it took `from`.
    pub from_stack: RawStack,
    /// Where it then took `to`.
    pub to_stack: RawStack,
}

/// A cycle in the order locks are taken in (see `crate::lock_order`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawInversion {
    /// In cycle order: each edge's `to` is the next edge's `from` (or a lock of its class).
    pub edges: Vec<RawOrderEdge>,
    /// The lock every edge was taken under, if any: then the cycle cannot deadlock.
    pub gate: Option<u64>,
}

/// A finding as an analysis reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RawFinding {
    /// A wait-for cycle, its entries in wait order.
    Deadlock(Vec<RawCycleEntry>),
    StuckLock(RawStuckLock),
    LockOrderInversion(RawInversion),
}

/// One lock's statistics at the end of a trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawLockStats {
    pub addr: u64,
    pub kind: LockKind,
    pub contentions: u64,
    pub max_waiters: u32,
    pub wait_ns: Quantiles,
    pub hold_ns: Option<Quantiles>,
}
