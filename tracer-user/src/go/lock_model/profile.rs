//! The goroutine lock waits of a time window, by lock and waiting stack: the Go side of a
//! contention profile (`tracer serve`'s `/debug/pprof/contention?seconds=N`), the
//! counterpart of `crate::native::wait_profile` for `sync.Mutex`/`RWMutex` parks.
//!
//! A window exists only while someone asked for a profile, so an unprofiled trace pays
//! one emptiness check per wait end. Each wait is measured (its end event arrived) and
//! carries the stack the probe took at its start, so nothing has to be sampled or spread.
//! Memory is bounded: at most [`MAX_GO_PROFILE_ENTRIES`] (lock, stack) pairs of a few
//! dozen bytes each; waits beyond that are counted, not kept.

use rustc_hash::FxHashMap as HashMap;

use super::GoLockKind;

/// (lock, stack) pairs a window keeps at most.
pub const MAX_GO_PROFILE_ENTRIES: usize = 8192;

/// The stack of a goroutine's wait as the probe saw it at the wait's start: what names
/// it (`crate::model::raw::RawStack::Go`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GoWaitStack {
    /// The site where the wait began.
    pub pc: u64,
    /// The return address at that site when it is a function entry, else 0.
    pub caller: u64,
    /// The kernel's user stack id, negative when it took none.
    pub stack_id: i32,
}

/// The waits of one (lock, stack) pair in the window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GoProfileEntry {
    /// The lock.
    pub lock: u64,
    /// Its kind, `RwMutex` if any of its waits said so.
    pub kind: GoLockKind,
    /// Where the waits began.
    pub stack: GoWaitStack,
    /// Waits.
    pub count: u64,
    /// Their total time, in nanoseconds.
    pub delay_ns: u64,
}

/// The waits of one window.
#[derive(Clone, Debug, Default)]
pub struct GoWaitProfile {
    /// (kind, count, delay) by (lock, stack).
    entries: HashMap<(u64, GoWaitStack), (GoLockKind, u64, u64)>,
    /// Waits not kept: the window had [`MAX_GO_PROFILE_ENTRIES`] pairs already.
    pub overflowed: u64,
}

impl GoWaitProfile {
    /// Records a wait of `ns` nanoseconds on `lock` (of `kind`) that began at `stack`.
    pub fn record(&mut self, lock: u64, kind: GoLockKind, stack: GoWaitStack, ns: u64) {
        let len = self.entries.len();
        match self.entries.get_mut(&(lock, stack)) {
            Some((known, count, delay)) => {
                if kind == GoLockKind::RwMutex {
                    *known = kind;
                }
                *count += 1;
                *delay = delay.saturating_add(ns);
            }
            None if len < MAX_GO_PROFILE_ENTRIES => {
                self.entries.insert((lock, stack), (kind, 1, ns));
            }
            None => self.overflowed += 1,
        }
    }

    /// The window's (lock, stack) pairs, in no particular order.
    #[must_use]
    pub fn into_entries(self) -> Vec<GoProfileEntry> {
        self.entries
            .into_iter()
            .map(|((lock, stack), (kind, count, delay_ns))| GoProfileEntry {
                lock,
                kind,
                stack,
                count,
                delay_ns,
            })
            .collect()
    }
}
