//! musl's pthread locks: which lock a futex wait of a musl program is about, and whether
//! a deadlock's lock is still held. Pure: works on the snapshot of target memory the
//! kernel copied when the wait began (and, for the confirmation, on a reader given by the
//! caller).
//!
//! musl (1.2, x86-64) layouts this relies on (`src/internal/pthread_impl.h`):
//! - `pthread_mutex_t` (40 bytes): `_m_type` at 0 (kind in the low 2 bits: 0 normal, 1
//!   recursive, 2 errorcheck; 4 robust, 8 priority inheritance, 128 process-shared),
//!   `_m_lock` (the futex word) at 4, `_m_waiters` at 8, 12 and 16 unused (zero),
//!   `_m_count` at 20, `_m_prev` at 24, `_m_next` at 32. A normal mutex's lock word is
//!   `EBUSY` (16) while held and holds no owner; the other kinds keep the owner's TID in
//!   its low 30 bits. Either way a contended locker sets the top bit and sleeps with
//!   `FUTEX_WAIT` on the lock word (the mutex + 4), expecting the word it read with that
//!   bit set; a PI mutex's lockers use `FUTEX_LOCK_PI` on the same word.
//! - `pthread_rwlock_t` (56 bytes): `_rw_lock` (the futex word) at 0: `0x7fffffff` while
//!   write-locked, else the number of readers, top bit set when someone waits;
//!   `_rw_waiters` at 4, `_rw_shared` at 8 (128 when process-shared), the rest zero.
//!   Readers and writers sleep with `FUTEX_WAIT` on the word. No owner is kept.
//! - Semaphores (musl ≤ 1.2.3) also sleep on a word expecting `0xffffffff` with a waiter
//!   count after it, but their third word is 128 when private, where a private rwlock
//!   has 0: only private rwlocks are recognised from memory; a process-shared one only
//!   once the lock uprobes saw it.
//!
//! So the holder of a normal mutex or of an rwlock never comes from memory: it comes from
//! the lock uprobes, which the session turns on for musl programs.
use tracer_common::{FUTEX_TID_MASK, futex_cmd};

use super::futex_lock::{self, FutexWaitClass, KnownLocks};
use crate::{event::Snapshot, model::LockKind};

/// Offset of `_m_lock`, the futex word, in musl's `pthread_mutex_t`.
pub const MUTEX_LOCK_OFFSET: u64 = 4;
/// The bit a waiter sets in a lock word before it sleeps.
const WAITERS_BIT: u32 = 0x8000_0000;
/// The owner TID bits of an owner-keeping mutex's lock word.
const OWNER_MASK: u32 = 0x3fff_ffff;
/// A normal mutex's lock word while held: `EBUSY`.
const NORMAL_LOCKED: u32 = 16;
/// `_m_type` bits: the kind (normal, recursive, errorcheck), robust, priority inheritance.
const TYPE_KIND_MASK: u32 = 3;
const TYPE_ROBUST: u32 = 4;
const TYPE_PI: u32 = 8;
/// `_m_type` bits that exist (the kind bits, robust, PI, and 128 for process-shared).
const TYPE_VALID_BITS: u32 = 0x8f;
/// An rwlock's words after `_rw_shared` that the snapshot checks are zero (up to 48
/// bytes past the word, where the kernel's copy ends).
const RWLOCK_ZERO_WORDS: std::ops::Range<u64> = 3..12;

/// How far above its stack pointer a futex word is taken for one in the waiting
/// thread's own frames.
const OWN_FRAME_BYTES: u64 = 4096;

/// Whether the futex word at `addr` lies in the frames of the thread waiting on it (its
/// stack pointer is `sp`). musl's condition variable waiters sleep on a node in their own
/// frame (its `barrier` word, expecting 2, like a `lowlevellock`) until a signal lets them
/// go: a condvar wait, never a lock another thread holds. (A lock in a thread's own
/// frame that the thread itself waits for is missed: a rare design.)
#[must_use]
pub fn in_own_frame(addr: u64, sp: u64) -> bool {
    addr >= sp && addr - sp < OWN_FRAME_BYTES
}

/// Whether a mutex of this `_m_type` keeps its owner's TID in the lock word.
fn keeps_owner(mutex_type: u32) -> bool {
    mutex_type & (TYPE_KIND_MASK | TYPE_ROBUST | TYPE_PI) != 0
}

/// Classifies a futex wait of a musl program: musl's mutex and rwlock waits first, then
/// whatever glibc's rules recognise (the `lowlevellock` protocol of other code in the
/// program, e.g. Rust's `std` mutex). `host_tid` is as for [`futex_lock::classify`].
#[must_use]
pub fn classify(
    addr: u64,
    cmd: u32,
    val: u32,
    snapshot: &Snapshot,
    known: &KnownLocks,
    host_tid: &dyn Fn(u32) -> Option<u32>,
) -> FutexWaitClass {
    let musl = match cmd {
        futex_cmd::LOCK_PI | futex_cmd::LOCK_PI2 => pi_wait(addr, snapshot, known, host_tid),
        futex_cmd::WAIT | futex_cmd::WAIT_BITSET | futex_cmd::WAIT2 => {
            lock_word_wait(addr, val, snapshot, known, host_tid)
        }
        _ => None,
    };
    musl.unwrap_or_else(|| futex_lock::classify(addr, cmd, val, snapshot, known, host_tid))
}

/// A `FUTEX_LOCK_PI` on the lock word of a musl PI mutex: the owner is in the word.
fn pi_wait(
    addr: u64,
    snapshot: &Snapshot,
    known: &KnownLocks,
    host_tid: &dyn Fn(u32) -> Option<u32>,
) -> Option<FutexWaitClass> {
    let base = addr.checked_sub(MUTEX_LOCK_OFFSET)?;
    let is_pi_mutex = known.get(base) == Some(LockKind::Mutex)
        || snapshot
            .u32_at(base)
            .is_some_and(|t| t & !TYPE_VALID_BITS == 0 && t & TYPE_PI != 0);
    if !is_pi_mutex {
        return None;
    }
    let owner = snapshot.u32_at(addr).map(|word| word & FUTEX_TID_MASK);
    Some(FutexWaitClass::Lock {
        lock: base,
        kind: LockKind::PiMutex,
        holder: owner.filter(|&t| t != 0).and_then(host_tid),
        unowned: owner == Some(0),
        reader: false,
    })
}

/// A `FUTEX_WAIT` on the lock word of a musl mutex (the mutex + 4) or rwlock (the
/// rwlock itself): the expected value has the waiters bit.
fn lock_word_wait(
    addr: u64,
    val: u32,
    snapshot: &Snapshot,
    known: &KnownLocks,
    host_tid: &dyn Fn(u32) -> Option<u32>,
) -> Option<FutexWaitClass> {
    if val & WAITERS_BIT == 0 {
        return None;
    }
    let mutex = addr.checked_sub(MUTEX_LOCK_OFFSET)?;
    // What the uprobes saw passed to pthread_mutex_* / pthread_rwlock_* beats the layout.
    if known.get(addr) == Some(LockKind::RwLock) {
        return Some(rwlock_class(addr, snapshot));
    }
    let known_mutex = known.get(mutex) == Some(LockKind::Mutex);
    let mutex_type = snapshot.u32_at(mutex);
    if known_mutex || mutex_type.is_some_and(|t| plausible_mutex(t, mutex, snapshot)) {
        return Some(mutex_class(mutex, val, mutex_type, snapshot, host_tid));
    }
    if snapshot.len == 0 {
        // No memory (a wait that never slept, counted by the kernel): only the value a
        // normal mutex's waiters expect is specific enough to go by.
        return (val == WAITERS_BIT | NORMAL_LOCKED).then_some(FutexWaitClass::Lock {
            lock: mutex,
            kind: LockKind::Mutex,
            holder: None,
            unowned: false,
            reader: false,
        });
    }
    let held = val & !WAITERS_BIT;
    (held != 0 && plausible_private_rwlock(addr, snapshot)).then(|| rwlock_class(addr, snapshot))
}

/// The wait of a musl mutex at `mutex` whose waiter expected `val`.
fn mutex_class(
    mutex: u64,
    val: u32,
    mutex_type: Option<u32>,
    snapshot: &Snapshot,
    host_tid: &dyn Fn(u32) -> Option<u32>,
) -> FutexWaitClass {
    let word = snapshot.u32_at(mutex + MUTEX_LOCK_OFFSET);
    match mutex_type {
        Some(t) if keeps_owner(t) => {
            // The lock word as copied when the thread went to sleep, else the one the
            // waiter read just before.
            let owner = word.unwrap_or(val) & OWNER_MASK;
            FutexWaitClass::Lock {
                lock: mutex,
                kind: LockKind::Mutex,
                holder: (owner != 0).then(|| host_tid(owner)).flatten(),
                unowned: word.is_some() && owner == 0,
                reader: false,
            }
        }
        // A normal mutex (or one known from the uprobes whose memory was not copied):
        // held or not, but by whom only the uprobes know.
        _ => FutexWaitClass::Lock {
            lock: mutex,
            kind: LockKind::Mutex,
            holder: None,
            unowned: word.is_some_and(|w| w & !WAITERS_BIT == 0),
            reader: false,
        },
    }
}

/// Whether the memory around a lock word looks like a musl mutex of type `mutex_type`:
/// a type musl has, the unused words zero, and for a normal mutex its only held value.
fn plausible_mutex(mutex_type: u32, mutex: u64, snapshot: &Snapshot) -> bool {
    let unused_zero = [8, 12]
        .iter()
        .all(|&off| snapshot.u32_at(mutex + MUTEX_LOCK_OFFSET + off) == Some(0));
    if mutex_type & !TYPE_VALID_BITS != 0 || mutex_type & TYPE_PI != 0 || !unused_zero {
        return false;
    }
    // A normal mutex's waiters expect exactly EBUSY with the waiters bit; the owner
    // kinds expect an owner TID.
    let word = snapshot.u32_at(mutex + MUTEX_LOCK_OFFSET);
    if keeps_owner(mutex_type) {
        true
    } else {
        word.is_none_or(|w| w & !WAITERS_BIT == NORMAL_LOCKED || w == 0)
    }
}

/// Whether the words at `rwlock` look like a private musl rwlock: `_rw_shared` zero and
/// the unused words after it zero.
fn plausible_private_rwlock(rwlock: u64, snapshot: &Snapshot) -> bool {
    RWLOCK_ZERO_WORDS
        .chain([2])
        .all(|index| snapshot.u32_at(rwlock + 4 * index) == Some(0))
}

/// A wait on the lock word of the rwlock at `rwlock` (no owner is kept in it).
fn rwlock_class(rwlock: u64, snapshot: &Snapshot) -> FutexWaitClass {
    let word = snapshot.u32_at(rwlock);
    FutexWaitClass::Lock {
        lock: rwlock,
        kind: LockKind::RwLock,
        holder: None,
        unowned: word.is_some_and(|w| w & !WAITERS_BIT == 0),
        // A waiter on a write-locked rwlock may be a reader or a writer; without a
        // holder the side changes nothing in the graph.
        reader: false,
    }
}

/// Whether a lock of a deadlock candidate, of kind `kind`, is still held by the thread
/// whose TID (in the target's PID namespace) is `ns_tid`, read now through `read_u32`.
/// `held_by_probes` says whether the lock uprobes saw that thread take it and not
/// release it: the only evidence there is for the locks that keep no owner.
#[must_use]
pub fn still_held(
    kind: LockKind,
    lock: u64,
    ns_tid: Option<u32>,
    held_by_probes: bool,
    read_u32: &dyn Fn(u64) -> Option<u32>,
) -> bool {
    match kind {
        LockKind::Mutex => {
            let (Some(mutex_type), Some(word)) =
                (read_u32(lock), read_u32(lock + MUTEX_LOCK_OFFSET))
            else {
                return false;
            };
            if keeps_owner(mutex_type) {
                ns_tid.is_some_and(|t| word & OWNER_MASK == t)
            } else {
                word & !WAITERS_BIT != 0 && held_by_probes
            }
        }
        LockKind::PiMutex => ns_tid.is_some_and(|t| {
            read_u32(lock + MUTEX_LOCK_OFFSET).is_some_and(|w| w & FUTEX_TID_MASK == t)
        }),
        LockKind::RwLock => read_u32(lock).is_some_and(|w| w & !WAITERS_BIT != 0) && held_by_probes,
        LockKind::Futex
        | LockKind::GoMutex
        | LockKind::GoRwMutex
        | LockKind::RustMutex
        | LockKind::RustRwLock
        | LockKind::ParkingLotMutex
        | LockKind::ParkingLotRwLock => held_by_probes,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]
mod tests {
    use tracer_common::{SNAPSHOT_LEAD_BYTES, SNAPSHOT_WORDS};

    use super::*;

    const TARGET_TIDS: [u32; 3] = [100, 101, 102];

    fn host_tid(tid: u32) -> Option<u32> {
        TARGET_TIDS.contains(&tid).then_some(tid)
    }

    /// A snapshot as the kernel takes it: starting 16 bytes before the futex word, with
    /// `(offset from the word, value)` pairs filled in, the rest zero.
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

    /// A lock word (or TID) with the waiters bit set.
    fn with_waiters(word: u32) -> u32 {
        word | WAITERS_BIT
    }

    /// An owner TID with a robust mutex's owner-died bit.
    fn owner_died(tid: u32) -> u32 {
        tid | 0x4000_0000
    }

    const MUTEX: u64 = 0x5000;
    const WORD: u64 = MUTEX + MUTEX_LOCK_OFFSET;

    /// Guards musl contention being lost (`"locks": []`): a normal musl mutex's waiter
    /// sleeps on the mutex + 4 expecting `EBUSY | 0x80000000`, and must be counted on the
    /// mutex's own address, with no holder (the word keeps none) and no false "free".
    #[test]
    fn normal_mutex_wait_names_the_mutex_without_a_holder() {
        let s = snap(WORD, &[(-4, 0), (0, 0x8000_0010), (4, 1)]);
        assert_eq!(
            classify_plain(WORD, futex_cmd::WAIT, 0x8000_0010, &s),
            FutexWaitClass::Lock {
                lock: MUTEX,
                kind: LockKind::Mutex,
                holder: None,
                unowned: false,
                reader: false
            }
        );
        // Released between the waiter's read and its sleep: the word reads free.
        let free = snap(WORD, &[(-4, 0), (0, 0), (4, 1)]);
        assert!(matches!(
            classify_plain(WORD, futex_cmd::WAIT, 0x8000_0010, &free),
            FutexWaitClass::Lock {
                lock: MUTEX,
                unowned: true,
                ..
            }
        ));
        // A process-shared normal mutex (type 128) is one too.
        let shared = snap(WORD, &[(-4, 128), (0, 0x8000_0010), (4, 1)]);
        assert!(matches!(
            classify_plain(WORD, futex_cmd::WAIT, 0x8000_0010, &shared),
            FutexWaitClass::Lock {
                lock: MUTEX,
                kind: LockKind::Mutex,
                ..
            }
        ));
    }

    /// Guards holders of musl's owner-keeping mutexes (recursive, errorcheck, robust):
    /// the owner TID is in the lock word's low 30 bits, and must come out as the holder
    /// (so a deadlock that formed before the attach is found from memory).
    #[test]
    fn recursive_and_errorcheck_mutex_waits_name_the_owner() {
        for mutex_type in [1, 2, 4, 1 | 128] {
            let s = snap(WORD, &[(-4, mutex_type), (0, with_waiters(101)), (4, 1)]);
            assert_eq!(
                classify_plain(WORD, futex_cmd::WAIT, with_waiters(101), &s),
                FutexWaitClass::Lock {
                    lock: MUTEX,
                    kind: LockKind::Mutex,
                    holder: Some(101),
                    unowned: false,
                    reader: false
                },
                "type {mutex_type}"
            );
        }
        // A robust mutex whose owner died keeps 0x40000000 in the word: still the TID.
        let died = snap(WORD, &[(-4, 4), (0, with_waiters(owner_died(102))), (4, 1)]);
        assert!(matches!(
            classify_plain(WORD, futex_cmd::WAIT, with_waiters(owner_died(102)), &died),
            FutexWaitClass::Lock {
                holder: Some(102),
                ..
            }
        ));
        // An owner that is no thread of the target is no holder.
        let stranger = snap(WORD, &[(-4, 1), (0, with_waiters(31337)), (4, 1)]);
        assert!(matches!(
            classify_plain(WORD, futex_cmd::WAIT, with_waiters(31337), &stranger),
            FutexWaitClass::Lock {
                holder: None,
                unowned: false,
                ..
            }
        ));
    }

    /// Guards musl rwlocks: readers and writers sleep on the rwlock's own first word
    /// expecting it write-locked (`0xffffffff`) or, for a writer, the reader count with
    /// the waiters bit; the lock is the rwlock's address.
    #[test]
    fn rwlock_waits_name_the_rwlock() {
        let rw = 0x7000;
        let write_locked = snap(rw, &[(-4, 0xdead_beef), (0, u32::MAX), (4, 2)]);
        assert_eq!(
            classify_plain(rw, futex_cmd::WAIT, u32::MAX, &write_locked),
            FutexWaitClass::Lock {
                lock: rw,
                kind: LockKind::RwLock,
                holder: None,
                unowned: false,
                reader: false
            }
        );
        // A writer waiting for three readers.
        let readers = snap(rw, &[(-4, 0xdead_beef), (0, 0x8000_0003), (4, 1)]);
        assert!(matches!(
            classify_plain(rw, futex_cmd::WAIT, 0x8000_0003, &readers),
            FutexWaitClass::Lock {
                lock: 0x7000,
                kind: LockKind::RwLock,
                ..
            }
        ));
    }

    /// Guards against semaphores and condition variables counted as locks: a musl 1.2.3
    /// semaphore waits like a write-locked rwlock but its third word is 128 (private);
    /// newer semaphores expect `0x80000000`; condvar waits expect small values.
    #[test]
    fn semaphores_and_condvars_are_not_locks() {
        let sem = 0x9000;
        let old_sem = snap(sem, &[(-4, 0xdead_beef), (0, u32::MAX), (4, 1), (8, 128)]);
        assert_eq!(
            classify_plain(sem, futex_cmd::WAIT, u32::MAX, &old_sem),
            FutexWaitClass::NotALock
        );
        let new_sem = snap(
            sem,
            &[(-4, 0xdead_beef), (0, 0x8000_0000), (4, 1), (8, 128)],
        );
        assert_eq!(
            classify_plain(sem, futex_cmd::WAIT, 0x8000_0000, &new_sem),
            FutexWaitClass::NotALock
        );
        // A condvar waiter's node state (a value without the waiters bit).
        let cond = snap(sem, &[(-4, 7), (0, 0), (4, 0x7fff_1234)]);
        assert_eq!(
            classify_plain(sem, futex_cmd::WAIT, 0, &cond),
            FutexWaitClass::NotALock
        );
        // Words that only look like a normal mutex's wait but have garbage where musl
        // keeps zeros are not one.
        let garbage = snap(
            WORD,
            &[(-4, 0), (0, 0x8000_0010), (4, 1), (8, 0x55), (12, 9)],
        );
        assert_eq!(
            classify_plain(WORD, futex_cmd::WAIT, 0x8000_0010, &garbage),
            FutexWaitClass::NotALock
        );
    }

    /// Guards musl PI mutexes: the futex word is the mutex + 4, so the lock is 4 bytes
    /// below it, and the owner is in the word.
    #[test]
    fn pi_mutex_wait_is_the_mutex_below_the_word() {
        let s = snap(WORD, &[(-4, 8), (0, with_waiters(100))]);
        assert_eq!(
            classify_plain(WORD, futex_cmd::LOCK_PI, 0, &s),
            FutexWaitClass::Lock {
                lock: MUTEX,
                kind: LockKind::PiMutex,
                holder: Some(100),
                unowned: false,
                reader: false
            }
        );
    }

    /// Guards the uprobes' knowledge winning over memory (a process-shared rwlock looks
    /// like a semaphore) and waits that never slept (no memory copied) still counting on
    /// the right lock.
    #[test]
    fn known_locks_and_waits_without_memory() {
        let mut known = KnownLocks::default();
        let rw = 0x7000;
        known.insert(rw, LockKind::RwLock);
        let shared = snap(rw, &[(0, u32::MAX), (4, 1), (8, 128)]);
        assert!(matches!(
            classify(rw, futex_cmd::WAIT, u32::MAX, &shared, &known, &host_tid),
            FutexWaitClass::Lock {
                lock: 0x7000,
                kind: LockKind::RwLock,
                ..
            }
        ));
        let empty = Snapshot::EMPTY;
        assert!(matches!(
            classify(rw, futex_cmd::WAIT, u32::MAX, &empty, &known, &host_tid),
            FutexWaitClass::Lock {
                lock: 0x7000,
                kind: LockKind::RwLock,
                ..
            }
        ));
        assert!(matches!(
            classify_plain(WORD, futex_cmd::WAIT, 0x8000_0010, &empty),
            FutexWaitClass::Lock {
                lock: MUTEX,
                kind: LockKind::Mutex,
                ..
            }
        ));
        assert_eq!(
            classify_plain(0x9000, futex_cmd::WAIT, u32::MAX, &empty),
            FutexWaitClass::NotALock
        );
        // The lowlevellock protocol of other code (Rust's std mutex) still counts.
        assert!(matches!(
            classify_plain(0x9000, futex_cmd::WAIT, 2, &snap(0x9000, &[(0, 2)])),
            FutexWaitClass::Lock {
                kind: LockKind::Futex,
                ..
            }
        ));
    }

    /// Guards the confirmation of musl deadlocks: a normal mutex is still held only while
    /// its word says locked and the uprobes saw the thread take it; an owner-keeping one
    /// by its word alone.
    #[test]
    fn still_held_reads_each_kind_its_own_way() {
        let memory = |words: Vec<(u64, u32)>| {
            move |addr: u64| words.iter().find(|&&(a, _)| a == addr).map(|&(_, w)| w)
        };
        let normal_locked = memory(vec![(MUTEX, 0), (WORD, 0x8000_0010)]);
        assert!(still_held(
            LockKind::Mutex,
            MUTEX,
            Some(7),
            true,
            &normal_locked
        ));
        assert!(!still_held(
            LockKind::Mutex,
            MUTEX,
            Some(7),
            false,
            &normal_locked
        ));
        let normal_free = memory(vec![(MUTEX, 0), (WORD, 0)]);
        assert!(!still_held(
            LockKind::Mutex,
            MUTEX,
            Some(7),
            true,
            &normal_free
        ));
        let recursive = memory(vec![(MUTEX, 1), (WORD, 0x8000_0007)]);
        assert!(still_held(
            LockKind::Mutex,
            MUTEX,
            Some(7),
            false,
            &recursive
        ));
        assert!(!still_held(
            LockKind::Mutex,
            MUTEX,
            Some(8),
            true,
            &recursive
        ));
        let rw = memory(vec![(0x7000, u32::MAX)]);
        assert!(still_held(LockKind::RwLock, 0x7000, Some(7), true, &rw));
        assert!(!still_held(LockKind::RwLock, 0x7000, Some(7), false, &rw));
    }
}
