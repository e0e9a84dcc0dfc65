//! Stuck locks: locks that goroutines wait for while nothing releases them. The scan
//! visits only locks with a waiter and yields [`StuckCandidate`]s, the model's view of
//! each; the tracker checks them against the live process and turns them into the
//! report's [`StuckLock`](crate::model::StuckLock).
//!
//! A lock's stuck episode starts at the later of its last release and its oldest current
//! waiter's start, and ends at a release or when its last waiter leaves; within an
//! episode a lock is reported when first due, then each time its waiter count doubles.
use serde::Serialize;

use super::{GoHold, GoLockKind, GoLockMode, GoLockModel, state::kind_of};

/// A lock that goroutines wait for while nothing releases it, as the model sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StuckCandidate {
    /// The lock.
    pub addr: u64,
    /// Mutex or `RWMutex`.
    pub kind: GoLockKind,
    /// How it is held: `Read` when readers are known (even with a writer that waits for
    /// them, see `draining_writer`), `Write` when only a writer is known; with no known
    /// holder, `Write` (readers only ever block on a writer, and writers on either, so
    /// `Write` is the one mode consistent with any waiter).
    pub mode: GoLockMode,
    /// The writer, else the reader that has held it longest; `None` when nobody is known
    /// to hold it (its acquisition predates the trace, or its event was lost).
    pub holder: Option<GoHold>,
    /// Every known reader (its first hold), oldest first.
    pub readers: Vec<GoHold>,
    /// A writer that took the write side but still waits for `readers` to leave (Go's
    /// `RWMutex.Lock` drains the readers that got in before it).
    pub draining_writer: Option<GoHold>,
    /// Start of the stuck period: the later of the last release and the oldest current
    /// waiter's start.
    pub since_ns: u64,
    /// How long the holder has held it, or for an unknown holder how long it is stuck.
    pub held_ns: u64,
    /// Goroutines waiting for it now.
    pub waiters: usize,
    /// Of those, waiting to read.
    pub readers_waiting: usize,
    /// Of those, waiting to write.
    pub writers_waiting: usize,
}

impl GoLockModel {
    /// Stuck-lock findings due at `now_ns`, by lock address: a lock with a waiter and no
    /// release for `stuck_after_ns` (counted from the later of its last release and its
    /// oldest waiter's start). A lock is reported when first found stuck, then again each
    /// time its waiter count reaches double the count last reported; a release (or the
    /// last waiter leaving) ends the episode.
    pub fn due_stuck_locks(&mut self, now_ns: u64) -> Vec<StuckCandidate> {
        let mut out = Vec::new();
        for &addr in &self.waited_locks {
            let Some(lock) = self.locks.get_mut(&addr) else {
                continue;
            };
            let Some(&(oldest, _)) = lock.waiting.first() else {
                continue;
            };
            let since = lock.last_release_ns.map_or(oldest, |r| r.max(oldest));
            if now_ns.saturating_sub(since) < self.stuck_after_ns {
                continue;
            }
            let waiters = lock.waiting.len();
            if lock.reported_waiters != 0 && waiters < lock.reported_waiters.saturating_mul(2) {
                continue;
            }
            lock.reported_waiters = waiters;
            let readers = lock.reader_holds();
            let (mode, holder, draining_writer) = match (lock.writer, readers.first()) {
                (writer, Some(&oldest_reader)) => (GoLockMode::Read, Some(oldest_reader), writer),
                (Some(writer), None) => (GoLockMode::Write, Some(writer), None),
                (None, None) => (GoLockMode::Write, None, None),
            };
            let kind = kind_of(Some(&*lock), &self.stats, &self.kinds, addr);
            out.push(StuckCandidate {
                addr,
                kind,
                mode,
                holder,
                readers,
                draining_writer,
                since_ns: since,
                held_ns: now_ns.saturating_sub(holder.map_or(since, |h| h.since_ns)),
                waiters,
                readers_waiting: lock.read_waiters,
                writers_waiting: lock.write_waiters,
            });
        }
        out
    }
}
