//! Rust programs' locks: which futex waits are `std::sync::Mutex`/`RwLock` waits, which
//! functions are `parking_lot`'s slow paths, and the evidence on a blocked thread's stack
//! that it holds a `std` mutex. Pure: works on bytes and words handed in.
//!
//! Rust's `std` on Linux (`library/std/src/sys/sync/{mutex,rwlock}/futex.rs`, 1.62 and
//! later) keeps its locks in futex words of its own, always waited on with
//! `FUTEX_WAIT_BITSET` and a full bitset:
//! - `Mutex<T>`: the state word is the `Mutex`'s first word (0 unlocked, 1 locked,
//!   2 contended); a waiter sleeps expecting 2. No owner is kept anywhere.
//! - `RwLock<T>`: `state` (30-bit reader count or `0x3fff_ffff` for write-locked, bit 30
//!   readers waiting, bit 31 writers waiting) then `writer_notify` 4 bytes later, a
//!   counter writers sleep on. Readers sleep on `state` expecting it with bit 30 set.
//!
//! `std`'s other futex users are told apart by their values: `Condvar` sleeps on a
//! counter (which may be 2: a wait then looks like a mutex wait), `Once` on small state
//! values with its queued bit, `thread::park` expecting `u32::MAX`.
//!
//! `parking_lot` parks threads on a word of each thread's own, so a futex wait says
//! nothing of the lock: its slow paths are probed (see [`PARKING_LOT_SLOW_PATHS`]).
use std::sync::Arc;

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use tracer_common::{NativeSiteOp, futex_cmd};

use super::futex_lock::FutexWaitClass;
use crate::{event::Snapshot, model::LockKind};

/// A slow path entered for a `parking_lot` lock more than this long before the
/// thread's next futex wait is not that wait's lock: the slow path spins for
/// microseconds before it parks.
pub const SLOW_PATH_TO_PARK_NS: u64 = 100_000_000;

/// At most this many threads keep a `parking_lot` slow path in flight (one entry per
/// thread, removed when the thread exits; a cap against a thread churn that outruns it).
const MAX_SLOW_PATHS: usize = 65_536;

/// A thread's last `parking_lot` slow-path entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SlowPath {
    lock: u64,
    kind: LockKind,
    reader: bool,
    entered_ns: u64,
    /// The futex word and stack pointer of its first park, once it parked: the slow path
    /// parks again (woken, it lost the lock to another thread) on the same word from the
    /// same frame, with no new entry.
    parked_on: Option<(u64, u64)>,
}

/// What the analysis knows of a Rust program's locks beyond their futex words.
#[derive(Debug, Default)]
pub struct RustLocks {
    /// The target is a Rust program: `std`'s lock waits are classified as such.
    std_locks: bool,
    /// Each thread's last `parking_lot` slow path.
    slow_paths: HashMap<u32, SlowPath>,
    /// (thread, lock) pairs whose holder was found from a guard on the thread's stack.
    found_holders: HashSet<(u32, u64)>,
    /// `std` locks in heap objects named by their struct's type and field
    /// (`app::Store.hits`), learnt from their waiters' stacks.
    heap_names: HashMap<u64, Arc<str>>,
    /// Locks whose waiters' stacks were searched for a name (each is searched once).
    name_searched: HashSet<u64>,
}

/// At most this many heap lock names are kept (past it, new locks keep their address).
const MAX_HEAP_NAMES: usize = 65_536;

impl RustLocks {
    pub fn set_std_locks(&mut self, on: bool) {
        self.std_locks = on;
    }

    #[must_use]
    pub fn std_locks(&self) -> bool {
        self.std_locks
    }

    /// Thread `tid` entered a `parking_lot` slow path (`op`) for `lock` at `ts_ns`.
    pub fn on_slow_path(&mut self, tid: u32, ts_ns: u64, lock: u64, op: NativeSiteOp) {
        if self.slow_paths.len() >= MAX_SLOW_PATHS && !self.slow_paths.contains_key(&tid) {
            return;
        }
        let (kind, reader) = parking_lot_lock(op);
        self.slow_paths.insert(
            tid,
            SlowPath {
                lock,
                kind,
                reader,
                entered_ns: ts_ns,
                parked_on: None,
            },
        );
    }

    /// What thread `tid`'s futex wait on `futex` (begun at `ts_ns`, stack pointer `sp`)
    /// is, given the class its memory gave it: a wait that is no lock by its memory (a
    /// `parking_lot` thread's own word) is a wait for the lock of the thread's slow path
    /// when that slow path was entered just before and the thread has not parked since,
    /// or it parks again in the same slow path (same word, same frame).
    pub fn park_class(
        &mut self,
        tid: u32,
        (ts_ns, futex, sp): (u64, u64, Option<u64>),
        class: FutexWaitClass,
    ) -> FutexWaitClass {
        if class != FutexWaitClass::NotALock {
            return class;
        }
        let Some(slow) = self.slow_paths.get_mut(&tid) else {
            return class;
        };
        let fits = match slow.parked_on {
            None => ts_ns.saturating_sub(slow.entered_ns) <= SLOW_PATH_TO_PARK_NS,
            Some(parked) => sp.is_some_and(|sp| parked == (futex, sp)),
        };
        if !fits {
            return class;
        }
        if slow.parked_on.is_none() {
            match sp {
                Some(sp) => slow.parked_on = Some((futex, sp)),
                // No frame to recognise a second park by: this one only.
                None => slow.entered_ns = 0,
            }
        }
        FutexWaitClass::Lock {
            lock: slow.lock,
            kind: slow.kind,
            holder: None,
            unowned: false,
            reader: slow.reader,
        }
    }

    /// The names learnt of `std` locks in heap objects, by lock.
    #[must_use]
    pub fn heap_names(&self) -> &HashMap<u64, Arc<str>> {
        &self.heap_names
    }

    /// Whether a name for `lock` is still to be looked for in its waiters' stacks: it has
    /// none, was not searched yet, and there is room for it.
    #[must_use]
    pub fn needs_name_search(&self, lock: u64) -> bool {
        self.heap_names.len() < MAX_HEAP_NAMES
            && !self.heap_names.contains_key(&lock)
            && !self.name_searched.contains(&lock)
    }

    /// `lock` was taken by a call that names it (a C heap lock, `lock_names::c`): the
    /// latest such call names it (its memory may have been freed and reused by another
    /// struct since).
    pub fn heap_name_seen(&mut self, lock: u64, name: &Arc<str>) {
        let room = self.heap_names.len() < MAX_HEAP_NAMES;
        match self.heap_names.get_mut(&lock) {
            Some(known) if Arc::ptr_eq(known, name) => {}
            Some(known) => *known = Arc::clone(name),
            None if room => {
                self.heap_names.insert(lock, Arc::clone(name));
            }
            None => {}
        }
    }

    /// `lock`'s waiters' stacks were searched, and gave `name` if any.
    pub fn name_searched(&mut self, lock: u64, name: Option<Arc<str>>) {
        if self.name_searched.len() >= MAX_HEAP_NAMES {
            // Searched again later, if still unnamed: the set stays bounded.
            self.name_searched.clear();
        }
        self.name_searched.insert(lock);
        if let Some(name) = name
            && self.heap_names.len() < MAX_HEAP_NAMES
        {
            self.heap_names.insert(lock, name);
        }
    }

    /// Forgets what was found of thread `tid` (it exited).
    pub fn thread_exited(&mut self, tid: u32) {
        self.slow_paths.remove(&tid);
        self.found_holders.retain(|&(t, _)| t != tid);
    }

    /// Replaces the holders found from guards: the found holders of the last search are
    /// returned (to take out of the wait-for graph), `found` kept instead.
    pub fn replace_found_holders(&mut self, found: HashSet<(u32, u64)>) -> HashSet<(u32, u64)> {
        std::mem::replace(&mut self.found_holders, found)
    }

    /// Whether `tid` was found to hold `lock` by a guard on its stack.
    #[must_use]
    pub fn found_holder(&self, tid: u32, lock: u64) -> bool {
        self.found_holders.contains(&(tid, lock))
    }
}

/// `std`'s mutex state "locked, with waiters": what a waiting locker expects.
const MUTEX_CONTENDED: u32 = 2;
/// `std`'s rwlock state: the reader count mask (all ones: write-locked).
const RWLOCK_MASK: u32 = (1 << 30) - 1;
const RWLOCK_READERS_WAITING: u32 = 1 << 30;
const RWLOCK_WRITERS_WAITING: u32 = 1 << 31;
/// Offset of `writer_notify` from `state` in `std`'s rwlock.
const RWLOCK_WRITER_NOTIFY_OFFSET: u64 = 4;
/// `thread::park`'s "parked" state (`-1`), which a reader's expected value can equal.
const PARKER_PARKED: u32 = u32::MAX;

/// What a futex wait of a Rust program is as a `std` lock wait, if it is one. `None`
/// when the wait is not `std`'s (the C library's locks are classified as before).
#[must_use]
pub fn classify_std(addr: u64, cmd: u32, val: u32, snapshot: &Snapshot) -> Option<FutexWaitClass> {
    if cmd != futex_cmd::WAIT_BITSET {
        return None;
    }
    let lock = |lock, kind, reader| FutexWaitClass::Lock {
        lock,
        kind,
        holder: None,
        unowned: false,
        reader,
    };
    if val == MUTEX_CONTENDED {
        return Some(lock(addr, LockKind::RustMutex, false));
    }
    // A reader: it waits on `state` while the lock is write-locked or writers queue.
    if val != PARKER_PARKED && val & RWLOCK_READERS_WAITING != 0 && val & RWLOCK_MASK != 0 {
        return Some(lock(addr, LockKind::RustRwLock, true));
    }
    // A writer: it waits on `writer_notify`, with `state` just before it locked and its
    // writers-waiting bit set (read from the memory copied when the wait began; waits
    // that never slept have no copy and are not told apart from a condvar's).
    let state_addr = addr.checked_sub(RWLOCK_WRITER_NOTIFY_OFFSET)?;
    let state = snapshot.u32_at(state_addr)?;
    if snapshot.u32_at(addr) == Some(val)
        && state & RWLOCK_WRITERS_WAITING != 0
        && state & RWLOCK_MASK != 0
    {
        return Some(lock(state_addr, LockKind::RustRwLock, false));
    }
    None
}

/// Whether an ELF executable is a Rust program: its `std` names its source files in panic
/// locations (`…/library/std/src/…`, kept by stripped builds too), or its symbols name
/// Rust's panic entry.
#[must_use]
pub fn is_rust_program(exe: &[u8]) -> bool {
    const MARKERS: [&[u8]; 2] = [b"/library/std/src/", b"rust_begin_unwind"];
    MARKERS
        .iter()
        .any(|marker| exe.windows(marker.len()).any(|w| w == *marker))
}

/// `parking_lot`'s slow paths, probed at their entry (the lock is the first argument,
/// `rdi`): the thread is about to spin and then park for that lock. Demangled names as
/// the symbol table gives them, without the hash.
pub const PARKING_LOT_SLOW_PATHS: [(&str, NativeSiteOp); 3] = [
    (
        "parking_lot::raw_mutex::RawMutex::lock_slow",
        NativeSiteOp::ParkingLotLock,
    ),
    (
        "parking_lot::raw_rwlock::RawRwLock::lock_exclusive_slow",
        NativeSiteOp::ParkingLotWrite,
    ),
    (
        "parking_lot::raw_rwlock::RawRwLock::lock_shared_slow",
        NativeSiteOp::ParkingLotRead,
    ),
];

/// The slow path a demangled function name is, if any: the name without its hash suffix
/// (`::h0123…`) must be one of [`PARKING_LOT_SLOW_PATHS`].
#[must_use]
pub fn parking_lot_slow_path(demangled: &str) -> Option<NativeSiteOp> {
    let name = match demangled.rsplit_once("::h") {
        Some((head, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            head
        }
        _ => demangled,
    };
    PARKING_LOT_SLOW_PATHS
        .iter()
        .find(|(path, _)| *path == name)
        .map(|&(_, op)| op)
}

/// The `parking_lot` slow paths an ELF executable (`elf`'s bytes) defines in its symbol
/// table: (file offset of the function's entry, which slow path), as uprobes take them.
/// Empty when it has none (no `parking_lot`, or a stripped build: a note says so).
#[must_use]
pub fn parking_lot_sites(elf: &[u8]) -> Vec<(u64, NativeSiteOp)> {
    use object::{Object as _, ObjectKind, ObjectSection as _, ObjectSymbol as _, SymbolKind};
    let Ok(file) = object::read::elf::ElfFile64::<object::Endianness>::parse(elf) else {
        return Vec::new();
    };
    let mut sites: Vec<(u64, NativeSiteOp)> = file
        .symbols()
        .filter(|symbol| symbol.kind() == SymbolKind::Text && symbol.address() != 0)
        .filter_map(|symbol| {
            let name = symbol.name().ok()?;
            // Cheap test before demangling every symbol of the program.
            if !name.contains("parking_lot") {
                return None;
            }
            let demangled = addr2line::demangle_auto(std::borrow::Cow::Borrowed(name), None);
            let op = parking_lot_slow_path(&demangled)?;
            let offset = if matches!(file.kind(), ObjectKind::Dynamic | ObjectKind::Executable) {
                let section = file.section_by_index(symbol.section_index()?).ok()?;
                let (start, _) = section.file_range()?;
                symbol
                    .address()
                    .checked_sub(section.address())?
                    .checked_add(start)?
            } else {
                symbol.address()
            };
            Some((offset, op))
        })
        .collect();
    sites.sort_unstable_by_key(|&(offset, _)| offset);
    sites.dedup_by_key(|&mut (offset, _)| offset);
    sites
}

/// The lock kind and side of a `parking_lot` slow path.
#[must_use]
pub fn parking_lot_lock(op: NativeSiteOp) -> (LockKind, bool) {
    match op {
        NativeSiteOp::ParkingLotLock => (LockKind::ParkingLotMutex, false),
        NativeSiteOp::ParkingLotWrite => (LockKind::ParkingLotRwLock, false),
        NativeSiteOp::ParkingLotRead => (LockKind::ParkingLotRwLock, true),
    }
}

/// The most a blocked thread's stack is scanned for guards, from its stack pointer up.
pub const GUARD_SCAN_BYTES: usize = 64 * 1024;

/// Whether a blocked thread's stack words (from its stack pointer up, as read from the
/// process) hold a reference to the `std` mutex at `lock`: a live `MutexGuard` is a
/// `&Mutex<T>`, and the mutex's state word is its first word, so the guard's word is
/// `lock` itself. The caller makes sure the thread is not waiting for `lock` itself
/// (a waiter's frames hold the address too) and that the lock is locked.
#[must_use]
pub fn stack_holds_guard(stack: &[u8], lock: u64) -> bool {
    stack
        .chunks_exact(8)
        .any(|w| w.try_into().is_ok_and(|w| u64::from_ne_bytes(w) == lock))
}

#[cfg(test)]
mod tests {
    use tracer_common::{SNAPSHOT_LEAD_BYTES, SNAPSHOT_WORDS};

    use super::*;

    fn snap(word: u64, fields: &[(i64, u32)]) -> Snapshot {
        let addr = word - SNAPSHOT_LEAD_BYTES;
        let mut words = [0; SNAPSHOT_WORDS];
        for &(off, value) in fields {
            let lead = i64::try_from(SNAPSHOT_LEAD_BYTES).unwrap();
            words[usize::try_from((lead + off) / 4).unwrap()] = value;
        }
        Snapshot {
            addr,
            len: 64,
            words,
        }
    }

    fn lock(lock: u64, kind: LockKind, reader: bool) -> FutexWaitClass {
        FutexWaitClass::Lock {
            lock,
            kind,
            holder: None,
            unowned: false,
            reader,
        }
    }

    /// Guards the std mutex: a contended wait is a `rust_mutex` on the word itself, with
    /// no holder read from the words after it (they are the protected data: a counter
    /// there once passed for a glibc owner TID).
    #[test]
    fn a_std_mutex_wait_has_no_owner_field() {
        let s = snap(0x5000, &[(0, 2), (8, 4242)]);
        assert_eq!(
            classify_std(0x5000, futex_cmd::WAIT_BITSET, 2, &s),
            Some(lock(0x5000, LockKind::RustMutex, false))
        );
        // glibc's own mutexes sleep with FUTEX_WAIT: not std's.
        assert_eq!(classify_std(0x5000, futex_cmd::WAIT, 2, &s), None);
    }

    #[test]
    fn std_rwlock_readers_and_writers_map_to_the_state_word() {
        // A reader, while a writer holds the lock.
        let reader_val = RWLOCK_MASK | RWLOCK_READERS_WAITING;
        let s = snap(0x6000, &[(0, reader_val)]);
        assert_eq!(
            classify_std(0x6000, futex_cmd::WAIT_BITSET, reader_val, &s),
            Some(lock(0x6000, LockKind::RustRwLock, true))
        );
        // A writer on writer_notify (= 7), state write-locked with writers waiting.
        let s = snap(
            0x6004,
            &[(-4, RWLOCK_MASK | RWLOCK_WRITERS_WAITING), (0, 7)],
        );
        assert_eq!(
            classify_std(0x6004, futex_cmd::WAIT_BITSET, 7, &s),
            Some(lock(0x6000, LockKind::RustRwLock, false))
        );
        // The same counter with an unlocked word before it is a condvar, not a writer.
        let s = snap(0x6004, &[(-4, RWLOCK_WRITERS_WAITING), (0, 7)]);
        assert_eq!(classify_std(0x6004, futex_cmd::WAIT_BITSET, 7, &s), None);
    }

    /// Guards `thread::park` (channels, `JoinHandle`): its parked state has every bit
    /// set, which must not pass for an rwlock reader; `Once` waits are no locks either.
    #[test]
    fn park_and_once_waits_are_not_locks() {
        let s = snap(0x7000, &[(0, u32::MAX)]);
        assert_eq!(
            classify_std(0x7000, futex_cmd::WAIT_BITSET, u32::MAX, &s),
            None
        );
        let s = snap(0x7000, &[(0, 6)]);
        assert_eq!(classify_std(0x7000, futex_cmd::WAIT_BITSET, 6, &s), None);
        assert_eq!(
            classify_std(0x7000, futex_cmd::WAIT_BITSET, 0, &Snapshot::EMPTY),
            None
        );
    }

    #[test]
    fn rust_programs_are_told_by_std_paths_or_panic_symbols() {
        assert!(is_rust_program(
            b"\x7fELF...../rustc/abc/library/std/src/thread/mod.rs..."
        ));
        assert!(is_rust_program(b"\x7fELF...rust_begin_unwind\0"));
        assert!(!is_rust_program(b"\x7fELF...pthread_mutex_lock\0libstd"));
    }

    #[test]
    fn slow_paths_are_found_by_demangled_name_with_or_without_hash() {
        assert_eq!(
            parking_lot_slow_path("parking_lot::raw_mutex::RawMutex::lock_slow::h0123456789abcdef"),
            Some(NativeSiteOp::ParkingLotLock)
        );
        assert_eq!(
            parking_lot_slow_path("parking_lot::raw_rwlock::RawRwLock::lock_shared_slow"),
            Some(NativeSiteOp::ParkingLotRead)
        );
        assert_eq!(
            parking_lot_slow_path(
                "parking_lot::raw_mutex::RawMutex::unlock_slow::h0123456789abcdef"
            ),
            None
        );
        assert_eq!(
            parking_lot_lock(NativeSiteOp::ParkingLotRead),
            (LockKind::ParkingLotRwLock, true)
        );
    }

    /// Guards `parking_lot`: a park on a thread's own word right after a slow-path entry
    /// is a wait for that lock, and so is a second park of the same slow path; a later
    /// park (a condvar) or one long after the entry is not.
    #[test]
    fn parks_after_a_slow_path_wait_for_its_lock() {
        let mut rust = RustLocks::default();
        let own_word = 0x7f00_0000_1000;
        let park = |rust: &mut RustLocks, ts, sp| {
            rust.park_class(7, (ts, own_word, Some(sp)), FutexWaitClass::NotALock)
        };
        assert_eq!(
            park(&mut rust, 10, 0x100),
            FutexWaitClass::NotALock,
            "no slow path"
        );
        rust.on_slow_path(7, 1_000, 0xabc0, NativeSiteOp::ParkingLotLock);
        assert_eq!(
            park(&mut rust, 2_000, 0x100),
            lock(0xabc0, LockKind::ParkingLotMutex, false)
        );
        assert_eq!(
            park(&mut rust, 3_000, 0x100),
            lock(0xabc0, LockKind::ParkingLotMutex, false),
            "parked again in the same slow path"
        );
        assert_eq!(
            park(&mut rust, 4_000, 0x80),
            FutexWaitClass::NotALock,
            "another frame"
        );
        rust.on_slow_path(7, 5_000, 0xdef0, NativeSiteOp::ParkingLotRead);
        assert_eq!(
            park(&mut rust, 5_000 + SLOW_PATH_TO_PARK_NS + 1, 0x100),
            FutexWaitClass::NotALock,
            "too long after the entry"
        );
        // A wait its memory already names is left alone.
        let glibc = lock(0x5000, LockKind::Mutex, false);
        assert_eq!(rust.park_class(7, (6_000, 0x5000, None), glibc), glibc);
        rust.thread_exited(7);
        assert_eq!(park(&mut rust, 6_001, 0x100), FutexWaitClass::NotALock);
    }

    #[test]
    fn a_guard_is_a_stack_word_equal_to_the_lock() {
        let lock = 0x5555_0000_1230_u64;
        let mut stack = vec![0u8; 64];
        assert!(!stack_holds_guard(&stack, lock));
        stack[24..32].copy_from_slice(&lock.to_ne_bytes());
        assert!(stack_holds_guard(&stack, lock));
        assert!(!stack_holds_guard(&stack, lock + 8));
        // Words are aligned from the stack pointer: a misaligned copy is no guard.
        let mut odd = vec![0u8; 64];
        odd[20..28].copy_from_slice(&lock.to_ne_bytes());
        assert!(!stack_holds_guard(&odd, lock));
    }
}
