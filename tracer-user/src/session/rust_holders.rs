//! Holders of Rust `std` mutexes, from evidence in the process. `std`'s mutex keeps no
//! owner (only 0/1/2 in its word), so a deadlock among them has no holder in any event.
//! A thread that holds one keeps its `MutexGuard` (a `&Mutex<T>`, the address of the
//! mutex's state word) live in its frames while it waits for another: when threads have
//! waited for such mutexes a while, each blocked one's stack, from its stack pointer up
//! (bounded), is scanned for the address of a mutex another blocked thread waits for.
//! A thread never counts as holding the mutex it waits for itself (its own lock call's
//! frames hold that address), and the mutex must be locked.
//!
//! Found holders go into the wait-for graph as holders; a cycle they close is confirmed
//! like any other, the guard read again from the stack ([`guard_still`]).
use rustc_hash::FxHashSet as HashSet;

use crate::{
    model::LockKind,
    native::{analysis::Analysis, rust_lock},
    target::TargetProcess,
};

/// Waits shorter than this are left alone: a lock wait of a live program ends within
/// microseconds to milliseconds, and only lasting ones can be a deadlock.
pub(super) const MIN_WAIT_NS: u64 = 100_000_000;

/// At most this many waiting threads are scanned per search (each costs one read of up
/// to [`rust_lock::GUARD_SCAN_BYTES`]).
const MAX_SCANNED: usize = 64;

/// The threads among `tids` that wait, since before `now_ns - MIN_WAIT_NS`, for a Rust
/// `std` mutex, with that mutex and their stack pointer at the wait.
fn long_std_waits(analysis: &Analysis, tids: &[u32], now_ns: u64) -> Vec<(u32, u64, u64)> {
    tids.iter()
        .filter_map(|&tid| {
            let wait = analysis.active_wait(tid)?;
            let lock = wait.lock?;
            let sp = analysis.window(wait).sp;
            (analysis.lock_kind(lock) == LockKind::RustMutex
                && sp != 0
                && now_ns.saturating_sub(wait.start_ns) >= MIN_WAIT_NS)
                .then_some((tid, lock, sp))
        })
        .take(MAX_SCANNED)
        .collect()
}

/// Up to [`rust_lock::GUARD_SCAN_BYTES`] of the stack above `sp` (less where the mapping
/// ends).
fn read_stack(target: &dyn TargetProcess, sp: u64) -> Vec<u8> {
    let mut stack = vec![0u8; rust_lock::GUARD_SCAN_BYTES];
    let n = target.read_memory(sp, &mut stack).unwrap_or(0);
    stack.truncate(n);
    stack
}

/// Whether the `std` mutex at `lock` is locked now.
fn locked(target: &dyn TargetProcess, lock: u64) -> bool {
    target.read_u32(lock).is_some_and(|word| word != 0)
}

/// Finds the holders of the `std` mutexes the target's threads (`tids`) wait for, from
/// the guards on the stacks of the other waiting threads, and gives them to `analysis`
/// (replacing those found before). Does nothing for a program that is not Rust, or
/// while fewer than two threads wait long enough for a cycle.
pub(super) fn find_guard_holders(
    target: &dyn TargetProcess,
    analysis: &mut Analysis,
    tids: &[u32],
    now_ns: u64,
) {
    if !analysis.rust_std() {
        return;
    }
    let waits = long_std_waits(analysis, tids, now_ns);
    let mut found = HashSet::default();
    if waits.len() >= 2 {
        let waited: HashSet<u64> = waits.iter().map(|&(_, lock, _)| lock).collect();
        for &(tid, own, sp) in &waits {
            let stack = read_stack(target, sp);
            for &lock in waited.iter().filter(|&&lock| lock != own) {
                if rust_lock::stack_holds_guard(&stack, lock) && locked(target, lock) {
                    found.insert((tid, lock));
                }
            }
        }
    }
    analysis.set_found_holders(found);
}

/// Whether `tid` still shows the evidence that it holds the `std` mutex `lock`: still
/// in its wait for another lock, the guard still on its stack, the mutex still locked.
pub(super) fn guard_still(
    target: &dyn TargetProcess,
    analysis: &Analysis,
    tid: u32,
    lock: u64,
) -> bool {
    let Some(wait) = analysis.active_wait(tid) else {
        return false;
    };
    let sp = analysis.window(wait).sp;
    analysis.found_holder(tid, lock)
        && wait.lock != Some(lock)
        && sp != 0
        && locked(target, lock)
        && rust_lock::stack_holds_guard(&read_stack(target, sp), lock)
}
