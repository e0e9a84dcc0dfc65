//! What lock, if any, a futex wait is about, and who holds it. Pure: works on the
//! snapshot of target memory the kernel copied when the wait began.
//!
//! glibc (2.25 and later, x86-64) layouts this relies on:
//! - `pthread_mutex_t`: `int __lock` (the futex word) at 0, `int __owner` (holder TID)
//!   at 8. Contended lockers sleep with `FUTEX_WAIT` and expected value 2 (lowlevellock
//!   "locked, with waiters"); PI mutexes use `FUTEX_LOCK_PI`, the word holding the TID.
//! - `pthread_rwlock_t`: `__readers` 0, `__writers` 4, `__wrphase_futex` 8,
//!   `__writers_futex` 12, `__pad3` 16, `__pad4` 20, `__cur_writer` (TID) 24, `__shared`
//!   28, `__rwelision` + `__pad1[7]` 32, `__pad2` 40, `__flags` 48. Readers sleep on
//!   `__wrphase_futex` (expected 3), writers on `__writers_futex` (3) or on
//!   `__wrphase_futex` (2), always with `FUTEX_WAIT_BITSET`.
//! - condition variables, semaphores, barriers and `pthread_join` also sleep with
//!   `FUTEX_WAIT_BITSET` but on other words and values: those are not lock waits and must
//!   never become contention or a wait-for edge.
use rustc_hash::FxHashMap as HashMap;
use tracer_common::{FUTEX_TID_MASK, futex_cmd};

use crate::{event::Snapshot, model::LockKind};

/// Byte offset of `__owner` in `pthread_mutex_t`.
pub const MUTEX_OWNER_OFFSET: u64 = 8;
/// Byte offset of `__cur_writer` in `pthread_rwlock_t`.
pub const RWLOCK_WRITER_OFFSET: u64 = 24;
/// Size of glibc's `pthread_rwlock_t` on x86-64.
pub const RWLOCK_SIZE: u64 = 56;

/// What a futex wait is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FutexWaitClass {
    /// A wait for a lock: `lock` is the lock object's address (not always the futex word).
    Lock {
        lock: u64,
        kind: LockKind,
        holder: Option<u32>,
        /// The owner field was read and names nobody: the lock had no owner at that
        /// moment, so in particular the waiter itself did not hold it.
        unowned: bool,
        reader: bool,
    },
    /// A condition variable, semaphore, join, barrier or unknown futex: not a lock.
    NotALock,
}

/// Locks whose identity is known for certain (from `--holds` uprobes: the address was
/// passed to `pthread_mutex_*` or `pthread_rwlock_*`), which beats layout heuristics.
#[derive(Debug, Default)]
pub struct KnownLocks {
    kinds: HashMap<u64, LockKind>,
}

impl KnownLocks {
    pub fn insert(&mut self, addr: u64, kind: LockKind) {
        self.kinds.insert(addr, kind);
    }

    #[must_use]
    pub fn get(&self, addr: u64) -> Option<LockKind> {
        self.kinds.get(&addr).copied()
    }

    /// Forgets a lock (folded out of the tracked locks, so this map stays bounded too).
    pub fn remove(&mut self, addr: u64) {
        self.kinds.remove(&addr);
    }
}

/// Classifies a futex wait. `host_tid` maps a TID as the target's memory holds it (in
/// the target's PID namespace) to the host TID of that thread of the target, or `None`
/// when no thread of the target has it, so a word that merely sits where an owner field
/// would be is not taken for a holder. Holders are host TIDs.
#[must_use]
pub fn classify(
    addr: u64,
    cmd: u32,
    val: u32,
    snapshot: &Snapshot,
    known: &KnownLocks,
    host_tid: &dyn Fn(u32) -> Option<u32>,
) -> FutexWaitClass {
    let tid = |raw: Option<i32>| {
        raw.and_then(|t| u32::try_from(t).ok())
            .filter(|&t| t != 0)
            .and_then(host_tid)
    };
    match cmd {
        futex_cmd::LOCK_PI | futex_cmd::LOCK_PI2 => {
            let owner = snapshot.u32_at(addr).map(|word| word & FUTEX_TID_MASK);
            let holder = owner.filter(|&t| t != 0).and_then(host_tid);
            FutexWaitClass::Lock {
                lock: addr,
                kind: LockKind::PiMutex,
                holder,
                unowned: owner == Some(0),
                reader: false,
            }
        }
        futex_cmd::WAIT | futex_cmd::WAIT_BITSET | futex_cmd::WAIT2 => {
            if let Some(class) = rwlock_wait(addr, cmd, val, snapshot, known, &tid) {
                return class;
            }
            let known_kind = known.get(addr);
            if known_kind == Some(LockKind::Mutex) || (val == 2 && known_kind.is_none()) {
                // lowlevellock protocol (glibc mutexes and internal locks, Rust's std
                // Mutex...): 2 = locked with waiters. Only a glibc mutex has an owner field,
                // and only a real TID there makes it one.
                let owner = snapshot.i32_at(addr + MUTEX_OWNER_OFFSET);
                let holder = tid(owner);
                let kind = if holder.is_some() || known_kind == Some(LockKind::Mutex) {
                    LockKind::Mutex
                } else {
                    LockKind::Futex
                };
                return FutexWaitClass::Lock {
                    lock: addr,
                    kind,
                    holder,
                    unowned: owner == Some(0),
                    reader: false,
                };
            }
            FutexWaitClass::NotALock
        }
        // WAIT_REQUEUE_PI is a condition-variable wait (later requeued to a PI mutex);
        // futex_waitv is used for event waits (Wine, game engines), not pthread locks.
        _ => FutexWaitClass::NotALock,
    }
}

// glibc's `__readers` state bits.
const WRPHASE: u32 = 1;
const WRLOCKED: u32 = 2;
const READER_SHIFT: u32 = 3;

/// How a kind of rwlock waiter sleeps: (offset of the futex word in the lock, expected
/// value, reader?, whether the `__readers` state fits that waiter).
type RwlockWaitShape = (u64, u32, bool, fn(u32) -> bool);

/// A wait on one of the two futex words inside a glibc rwlock, mapped back to the lock.
fn rwlock_wait(
    addr: u64,
    cmd: u32,
    val: u32,
    snapshot: &Snapshot,
    known: &KnownLocks,
    tid: &dyn Fn(Option<i32>) -> Option<u32>,
) -> Option<FutexWaitClass> {
    if cmd == futex_cmd::WAIT {
        return None;
    }
    // (offset of the futex word in the lock, expected value, reader?, state the lock must
    // be in for that kind of waiter to sleep there)
    let candidates: [RwlockWaitShape; 3] = [
        // A reader sleeps on __wrphase_futex while a writer holds the lock: write phase,
        // and the reader has registered itself.
        (8, 3, true, |readers| {
            readers & WRPHASE != 0 && readers >> READER_SHIFT >= 1
        }),
        // A writer sleeps on __wrphase_futex waiting for the read phase to end.
        (8, 2, false, |readers| readers & WRLOCKED != 0),
        // A writer sleeps on __writers_futex while another writer holds the lock.
        (12, 3, false, |readers| readers & WRLOCKED != 0),
    ];
    for (offset, expected, reader, state_fits) in candidates {
        let Some(base) = addr.checked_sub(offset) else {
            continue;
        };
        if val != expected {
            continue;
        }
        let known_rwlock = known.get(base) == Some(LockKind::RwLock);
        let fits =
            || plausible_rwlock(base, snapshot) && snapshot.u32_at(base).is_some_and(state_fits);
        if !known_rwlock && !fits() {
            continue;
        }
        let writer = snapshot.i32_at(base + RWLOCK_WRITER_OFFSET);
        return Some(FutexWaitClass::Lock {
            lock: base,
            kind: LockKind::RwLock,
            holder: tid(writer),
            unowned: writer == Some(0),
            reader,
        });
    }
    None
}

/// Whether the words at `base` look like a glibc rwlock: padding fields zero, flags and
/// shared-ness in range. Condition variables and semaphores fail this (their neighbouring
/// memory is not laid out so), which is what keeps them out of lock contention.
fn plausible_rwlock(base: u64, snap: &Snapshot) -> bool {
    let word = |off: u64| snap.u32_at(base + off);
    let (Some(pad3), Some(pad4), Some(shared), Some(elision), Some(pad1), Some(pad2), Some(flags)) = (
        word(16),
        word(20),
        word(28),
        word(32),
        word(36),
        snap.u64_at(base + 40),
        word(48),
    ) else {
        return false;
    };
    // `__rwelision` is one byte followed by seven bytes of padding.
    pad3 == 0
        && pad4 == 0
        && shared <= 1
        && elision & !0xff == 0
        && pad1 == 0
        && pad2 == 0
        && flags <= 2
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]
mod tests {
    use tracer_common::{SNAPSHOT_LEAD_BYTES, SNAPSHOT_WORDS};

    use super::*;

    const TARGET_TIDS: [u32; 3] = [100, 101, 102];

    /// The target's threads, in the tracer's own PID namespace.
    fn host_tid(tid: u32) -> Option<u32> {
        TARGET_TIDS.contains(&tid).then_some(tid)
    }

    /// A snapshot as the kernel takes it: starting 16 bytes before the futex word, with
    /// `(offset from the word, value)` pairs filled in.
    fn snap(word: u64, fields: &[(i64, u32)]) -> Snapshot {
        let addr = word - SNAPSHOT_LEAD_BYTES;
        let mut words = [0; SNAPSHOT_WORDS];
        for &(off, value) in fields {
            let index =
                usize::try_from((i64::try_from(SNAPSHOT_LEAD_BYTES).unwrap() + off) / 4).unwrap();
            words[index] = value;
        }
        Snapshot {
            addr,
            len: 64,
            words,
        }
    }

    fn classify_plain(addr: u64, cmd: u32, val: u32, snapshot: &Snapshot) -> FutexWaitClass {
        classify(addr, cmd, val, snapshot, &KnownLocks::default(), &host_tid)
    }

    #[test]
    fn glibc_mutex_wait_names_the_owner() {
        let s = snap(0x5000, &[(0, 2), (8, 101), (12, 1)]);
        assert_eq!(
            classify_plain(0x5000, futex_cmd::WAIT, 2, &s),
            FutexWaitClass::Lock {
                lock: 0x5000,
                kind: LockKind::Mutex,
                holder: Some(101),
                unowned: false,
                reader: false
            }
        );
    }

    /// Guards against false self-deadlocks on a busy mutex: a waiter that reads the
    /// owner field as zero must say so (the analysis then drops stale snapshots naming the
    /// waiter as holder), while an unreadable owner field says nothing.
    #[test]
    fn a_free_owner_field_is_told_apart_from_an_unread_one() {
        let free = snap(0x5000, &[(0, 2), (8, 0)]);
        assert_eq!(
            classify_plain(0x5000, futex_cmd::WAIT, 2, &free),
            FutexWaitClass::Lock {
                lock: 0x5000,
                kind: LockKind::Futex,
                holder: None,
                unowned: true,
                reader: false
            }
        );
        let unread = Snapshot { len: 0, ..free };
        assert!(matches!(
            classify_plain(0x5000, futex_cmd::WAIT, 2, &unread),
            FutexWaitClass::Lock { unowned: false, .. }
        ));
        let pi_free = snap(0x6000, &[(0, 0)]);
        assert!(matches!(
            classify_plain(0x6000, futex_cmd::LOCK_PI, 0, &pi_free),
            FutexWaitClass::Lock { unowned: true, .. }
        ));
    }

    #[test]
    fn owner_field_that_is_not_a_target_thread_is_not_a_holder() {
        let s = snap(0x5000, &[(0, 2), (8, 31337)]);
        assert_eq!(
            classify_plain(0x5000, futex_cmd::WAIT, 2, &s),
            FutexWaitClass::Lock {
                lock: 0x5000,
                kind: LockKind::Futex,
                holder: None,
                unowned: false,
                reader: false
            }
        );
    }

    /// Guards targets in a PID namespace (containers): the owner fields hold the TID
    /// inside the namespace, and the holder must come out as the host TID the kernel's
    /// events carry (and the lock as a mutex, not an ownerless futex word).
    #[test]
    fn owner_tids_are_translated_from_the_target_namespace() {
        let in_namespace = |ns: u32| match ns {
            3 => Some(4243),
            4 => Some(4244),
            _ => None,
        };
        let known = KnownLocks::default();
        let s = snap(0x1000, &[(0, 2), (8, 3)]);
        match classify(0x1000, futex_cmd::WAIT, 2, &s, &known, &in_namespace) {
            FutexWaitClass::Lock { kind, holder, .. } => {
                assert_eq!((kind, holder), (LockKind::Mutex, Some(4243)));
            }
            FutexWaitClass::NotALock => panic!("a mutex wait"),
        }
        let pi = snap(0x2000, &[(0, 4 | 0x8000_0000)]);
        match classify(0x2000, futex_cmd::LOCK_PI, 0, &pi, &known, &in_namespace) {
            FutexWaitClass::Lock { holder, .. } => assert_eq!(holder, Some(4244)),
            FutexWaitClass::NotALock => panic!("a PI mutex wait"),
        }
        // The host TID itself is no thread inside the namespace.
        let host = snap(0x1000, &[(0, 2), (8, 4243)]);
        match classify(0x1000, futex_cmd::WAIT, 2, &host, &known, &in_namespace) {
            FutexWaitClass::Lock { kind, holder, .. } => {
                assert_eq!((kind, holder), (LockKind::Futex, None));
            }
            FutexWaitClass::NotALock => panic!("a lock wait"),
        }
    }

    #[test]
    fn pi_mutex_holder_comes_from_the_word() {
        let s = snap(0x6000, &[(0, 0x8000_0000 | 0x66)]);
        assert_eq!(
            classify_plain(0x6000, futex_cmd::LOCK_PI, 0, &s),
            FutexWaitClass::Lock {
                lock: 0x6000,
                kind: LockKind::PiMutex,
                holder: Some(102),
                unowned: false,
                reader: false
            }
        );
    }

    #[test]
    fn rwlock_reader_wait_maps_back_to_the_lock_and_its_writer() {
        // Reader sleeps on __wrphase_futex (lock + 8), expected 3; writer TID at lock + 24.
        let lock = 0x7000;
        let word = lock + 8;
        let s = snap(word, &[(-8, 0b1011), (0, 3), (16, 100)]);
        assert_eq!(
            classify_plain(word, futex_cmd::WAIT_BITSET, 3, &s),
            FutexWaitClass::Lock {
                lock,
                kind: LockKind::RwLock,
                holder: Some(100),
                unowned: false,
                reader: true
            }
        );
    }

    #[test]
    fn rwlock_writer_wait_on_writers_futex() {
        let lock = 0x7000;
        let word = lock + 12;
        // __readers = WRLOCKED: another writer holds it.
        let s = snap(word, &[(-12, 2), (0, 3), (12, 101)]);
        assert_eq!(
            classify_plain(word, futex_cmd::WAIT_BITSET, 3, &s),
            FutexWaitClass::Lock {
                lock,
                kind: LockKind::RwLock,
                holder: Some(101),
                unowned: false,
                reader: false
            }
        );
        // The same words without the write-locked state are not an rwlock wait.
        let s = snap(word, &[(0, 3), (12, 101)]);
        assert_eq!(
            classify_plain(word, futex_cmd::WAIT_BITSET, 3, &s),
            FutexWaitClass::NotALock
        );
    }

    #[test]
    fn condvar_wait_is_not_a_lock() {
        // pthread_cond_t (48 bytes): waiters sleep on __g_signals[g] at +40/+44 with an
        // arbitrary expected value; the words after it belong to other objects.
        let cond = 0x8000_u64;
        let word = cond + 40;
        let s = snap(
            word,
            &[
                (-16, 17),
                (-8, 4),
                (-4, 8),
                (0, 0),
                (8, 0xdead),
                (16, 0xbeef),
            ],
        );
        assert_eq!(
            classify_plain(word, futex_cmd::WAIT_BITSET, 0, &s),
            FutexWaitClass::NotALock
        );
        // Even an expected value that looks like a lock's does not pass the layout check
        // when the neighbouring memory is not an rwlock.
        assert_eq!(
            classify_plain(word, futex_cmd::WAIT_BITSET, 3, &s),
            FutexWaitClass::NotALock
        );
    }

    #[test]
    fn semaphore_and_requeue_pi_and_waitv_are_not_locks() {
        let s = snap(0x9000, &[(0, 0)]);
        assert_eq!(
            classify_plain(0x9000, futex_cmd::WAIT_BITSET, 0, &s),
            FutexWaitClass::NotALock
        );
        assert_eq!(
            classify_plain(0x9000, futex_cmd::WAIT_REQUEUE_PI, 0, &s),
            FutexWaitClass::NotALock
        );
        assert_eq!(
            classify_plain(0x9000, futex_cmd::WAITV, 2, &s),
            FutexWaitClass::NotALock
        );
        assert_eq!(
            classify_plain(0x9000, futex_cmd::WAIT, 0, &s),
            FutexWaitClass::NotALock
        );
    }

    #[test]
    fn known_locks_override_the_heuristics() {
        let mut known = KnownLocks::default();
        known.insert(0xa000, LockKind::RwLock);
        // Non-zero padding would fail the layout check, but the uprobes saw this rwlock.
        let s = snap(0xa00c, &[(4, 9), (12, 101)]);
        assert_eq!(
            classify(0xa00c, futex_cmd::WAIT_BITSET, 3, &s, &known, &host_tid),
            FutexWaitClass::Lock {
                lock: 0xa000,
                kind: LockKind::RwLock,
                holder: Some(101),
                unowned: false,
                reader: false
            }
        );
        known.insert(0xb000, LockKind::Mutex);
        let s = snap(0xb000, &[(0, 1), (8, 100)]);
        assert_eq!(
            classify(0xb000, futex_cmd::WAIT, 1, &s, &known, &host_tid),
            FutexWaitClass::Lock {
                lock: 0xb000,
                kind: LockKind::Mutex,
                holder: Some(100),
                unowned: false,
                reader: false
            }
        );
    }
}
