//! Which lock a parked goroutine waits for, from its symbolized frames and the semaphore
//! address `runtime.semacquire1` was called with.
//!
//! Every `sync` lock wait ends in `runtime.semacquire1(addr *uint32, …)`, called through
//! a thin runtime wrapper (`sync.runtime_SemacquireMutex`, `…RWMutexR`, …, linknamed
//! into `sync` or `internal/sync`). The first `sync` frame above the wrappers says which
//! semaphore of which lock `addr` is:
//!
//! | first frame above the wrappers                        | lock at    | kind / mode                 |
//! |-------------------------------------------------------|------------|-----------------------------|
//! | `sync.(*Mutex).lockSlow` (≤1.23), `internal/sync.…`   | `addr - 4` | `Mutex`, write              |
//! | … and then `sync.(*RWMutex).Lock` (past `Mutex.Lock`) | `addr - 4` | `RWMutex` (`w` is first), write |
//! | `sync.(*RWMutex).RLock`                               | `addr - 12`| `RWMutex`, read             |
//! | `sync.(*RWMutex).Lock`                                | `addr - 8` | `RWMutex`, write, draining readers |
//!
//! (`Mutex` = `{state int32; sema uint32}`; `RWMutex` = `{w Mutex; writerSem;
//! readerSem; readerCount; readerWait}`, checked against DWARF by
//! `tests/integration/go_goroutine_layout.rs`.) Anything else (a `WaitGroup`, a
//! `sync.Cond`, a channel, a timer) is not a lock wait.
use crate::go::{lock_model::GoLockMode, sym::GoFrame};

/// The runtime function every `sync` semaphore wait parks in.
pub const SEMACQUIRE: &str = "runtime.semacquire1";

/// What kind of lock a goroutine waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParkedLockKind {
    /// A `sync.Mutex`.
    Mutex,
    /// A `sync.RWMutex`.
    RwMutex,
}

/// A lock wait read from a parked goroutine's frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LockWaitShape {
    /// Address of the `sync.Mutex` or `sync.RWMutex`.
    pub lock: u64,
    /// Its kind.
    pub kind: ParkedLockKind,
    /// Read (an `RLock`) or write (a `Mutex.Lock`, an `RWMutex.Lock`).
    pub mode: GoLockMode,
    /// The waiter is an `RWMutex` writer that owns `w` already and waits for the readers
    /// inside to leave (not for another writer).
    pub drains_readers: bool,
}

/// The index of the physical frame of `runtime.semacquire1` in `frames` (each physical
/// frame's logical frames, innermost first, the physical function last, as
/// [`crate::go::sym::GoTable::frames`] gives them), when the goroutine parked there.
#[must_use]
pub fn semacquire_frame(frames: &[Vec<GoFrame>]) -> Option<usize> {
    frames
        .iter()
        .position(|f| f.last().is_some_and(|p| p.function == SEMACQUIRE))
}

/// The lock wait shown by `frames` (as for [`semacquire_frame`]), given `sema`, the
/// address `runtime.semacquire1` was called with; `None` when the goroutine is not parked
/// in `runtime.semacquire1` on behalf of a `Mutex` or `RWMutex` lock.
#[must_use]
pub fn classify_lock_wait(frames: &[Vec<GoFrame>], sema: u64) -> Option<LockWaitShape> {
    let at = semacquire_frame(frames)?;
    let above = frames[at + 1..]
        .iter()
        .flatten()
        .map(|f| f.function.as_str())
        .skip_while(|name| is_sema_wrapper(name));
    classify_semaphore_wait(above, sema)
}

/// The lock wait of a goroutine entering a `sync` semaphore acquire on `sema`, from the
/// logical frames of the code that called the wrapper (innermost first): the same rules
/// as [`classify_lock_wait`], which the default Go probes use at the wrapper's entry.
pub fn classify_semaphore_wait<'a>(
    mut above: impl Iterator<Item = &'a str>,
    sema: u64,
) -> Option<LockWaitShape> {
    let first = above.next()?;
    let shape = |offset: u64, kind, mode, drains_readers| {
        Some(LockWaitShape {
            lock: sema.checked_sub(offset)?,
            kind,
            mode,
            drains_readers,
        })
    };
    match first {
        "sync.(*Mutex).lockSlow" | "internal/sync.(*Mutex).lockSlow" => {
            // Past the `Mutex.Lock` wrappers (inlined or not), an `RWMutex.Lock` means
            // this mutex is that RWMutex's `w`, its first field.
            let caller = above.find(|name| !is_mutex_lock(name));
            let kind = if caller == Some("sync.(*RWMutex).Lock") {
                ParkedLockKind::RwMutex
            } else {
                ParkedLockKind::Mutex
            };
            shape(4, kind, GoLockMode::Write, false)
        }
        "sync.(*RWMutex).RLock" => shape(12, ParkedLockKind::RwMutex, GoLockMode::Read, false),
        "sync.(*RWMutex).Lock" => shape(8, ParkedLockKind::RwMutex, GoLockMode::Write, true),
        _ => None,
    }
}

/// The lock whose semaphore `sema` a `sync` semaphore release (`runtime_Semrelease`)
/// signals, from the logical frames of its caller (innermost first): a mutex handed over
/// or released to its waiters (`unlockSlow`: `sema` 4 bytes into the mutex, or into an
/// `RWMutex`'s `w`), the last reader waking a draining writer (`rUnlockSlow`:
/// `writerSem`), or a writer releasing the readers (`RWMutex.Unlock`: `readerSem`).
/// `None` for other users of the semaphore (a `WaitGroup`, …).
pub fn classify_semaphore_release<'a>(
    mut above: impl Iterator<Item = &'a str>,
    sema: u64,
) -> Option<u64> {
    match above.next()? {
        "sync.(*Mutex).unlockSlow" | "internal/sync.(*Mutex).unlockSlow" => sema.checked_sub(4),
        "sync.(*RWMutex).rUnlockSlow" => sema.checked_sub(8),
        "sync.(*RWMutex).Unlock" => sema.checked_sub(12),
        _ => None,
    }
}

/// The runtime's semaphore entry points for `sync` (`sync.runtime_SemacquireMutex`,
/// `internal/sync.runtime_SemacquireMutex`, `sync.runtime_SemacquireRWMutexR`, …).
#[must_use]
pub fn is_sema_wrapper(name: &str) -> bool {
    name.rsplit('.')
        .next()
        .is_some_and(|f| f.starts_with("runtime_Semacquire"))
}

/// `Mutex.Lock` itself, which calls `lockSlow` (Go 1.24+ has two: `sync` wraps
/// `internal/sync`).
fn is_mutex_lock(name: &str) -> bool {
    matches!(name, "sync.(*Mutex).Lock" | "internal/sync.(*Mutex).Lock")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One physical frame: its logical functions, innermost first.
    fn frame(functions: &[&str]) -> Vec<GoFrame> {
        let last = functions.len() - 1;
        functions
            .iter()
            .enumerate()
            .map(|(i, f)| GoFrame {
                function: (*f).to_owned(),
                file: None,
                line: None,
                inlined: i < last,
            })
            .collect()
    }

    fn parked(above: &[&[&str]]) -> Vec<Vec<GoFrame>> {
        let mut frames = vec![frame(&["runtime.gopark"]), frame(&[SEMACQUIRE])];
        frames.extend(above.iter().map(|f| frame(f)));
        frames
    }

    const S: u64 = 0xc000_0100;

    /// Guards the Go 1.19 mutex wait: lockSlow through `sync.runtime_SemacquireMutex`,
    /// the mutex 4 bytes below its semaphore.
    #[test]
    fn mutex_wait_go119() {
        let frames = parked(&[
            &["sync.runtime_SemacquireMutex"],
            &["sync.(*Mutex).lockSlow"],
            &["sync.(*Mutex).Lock", "main.(*Store).Put"],
            &["main.writer"],
        ]);
        assert_eq!(semacquire_frame(&frames), Some(1));
        assert_eq!(
            classify_lock_wait(&frames, S),
            Some(LockWaitShape {
                lock: S - 4,
                kind: ParkedLockKind::Mutex,
                mode: GoLockMode::Write,
                drains_readers: false,
            })
        );
    }

    /// Guards the Go 1.24+ shape: `internal/sync` lockSlow under two inlined `Lock`
    /// wrappers inside `RWMutex.Lock`: the write side, waiting for another writer.
    #[test]
    fn rwmutex_writer_behind_a_writer_go125() {
        let frames = parked(&[
            &["internal/sync.runtime_SemacquireMutex"],
            &["internal/sync.(*Mutex).lockSlow"],
            &[
                "internal/sync.(*Mutex).Lock",
                "sync.(*Mutex).Lock",
                "sync.(*RWMutex).Lock",
            ],
            &["main.update"],
        ]);
        let wait = classify_lock_wait(&frames, S).unwrap();
        assert_eq!(
            (wait.lock, wait.kind, wait.mode, wait.drains_readers),
            (S - 4, ParkedLockKind::RwMutex, GoLockMode::Write, false)
        );
    }

    /// Guards the two `RWMutex` semaphores: an `RLock` waits on `readerSem` (+12), a
    /// writer draining readers on `writerSem` (+8).
    #[test]
    fn rwmutex_reader_and_draining_writer() {
        let reader = parked(&[
            &["sync.runtime_SemacquireRWMutexR"],
            &["sync.(*RWMutex).RLock", "main.(*Registry).Get"],
        ]);
        let wait = classify_lock_wait(&reader, S).unwrap();
        assert_eq!(
            (wait.lock, wait.kind, wait.mode, wait.drains_readers),
            (S - 12, ParkedLockKind::RwMutex, GoLockMode::Read, false)
        );
        let drain = parked(&[
            &["sync.runtime_SemacquireMutex"],
            &["sync.(*RWMutex).Lock"],
            &["main.update"],
        ]);
        let wait = classify_lock_wait(&drain, S).unwrap();
        assert_eq!(
            (wait.lock, wait.mode, wait.drains_readers),
            (S - 8, GoLockMode::Write, true)
        );
    }

    /// Guards against reporting waits that are not lock waits: a `WaitGroup`, a
    /// `sync.Cond`, a channel receive, and a semaphore wait with nothing above it.
    #[test]
    fn other_waits_are_not_lock_waits() {
        let wait_group = parked(&[
            &["sync.runtime_Semacquire"],
            &["sync.(*WaitGroup).Wait", "main.main"],
        ]);
        assert_eq!(classify_lock_wait(&wait_group, S), None);
        let cond = parked(&[&["sync.runtime_notifyListWait"], &["sync.(*Cond).Wait"]]);
        assert_eq!(classify_lock_wait(&cond, S), None);
        let channel = vec![
            frame(&["runtime.gopark"]),
            frame(&["runtime.chanrecv"]),
            frame(&["runtime.chanrecv1"]),
            frame(&["main.main"]),
        ];
        assert_eq!(semacquire_frame(&channel), None);
        assert_eq!(classify_lock_wait(&channel, S), None);
        let bare = parked(&[&["sync.runtime_SemacquireMutex"]]);
        assert_eq!(classify_lock_wait(&bare, S), None);
        // A semaphore address too small to have a lock below it is no lock.
        let mutex = parked(&[
            &["sync.runtime_SemacquireMutex"],
            &["sync.(*Mutex).lockSlow"],
        ]);
        assert_eq!(classify_lock_wait(&mutex, 2), None);
    }

    /// Guards the lock named at a semaphore release (the default Go probes' hand-over
    /// event): the field of the lock that `sema` is, per caller; other users of the
    /// semaphore are not locks.
    #[test]
    fn semaphore_releases_name_their_lock() {
        let release = |frames: &[&str]| classify_semaphore_release(frames.iter().copied(), S);
        assert_eq!(
            release(&["sync.(*Mutex).unlockSlow", "sync.(*Mutex).Unlock"]),
            Some(S - 4)
        );
        assert_eq!(release(&["internal/sync.(*Mutex).unlockSlow"]), Some(S - 4));
        assert_eq!(
            release(&["sync.(*RWMutex).rUnlockSlow", "sync.(*RWMutex).RUnlock"]),
            Some(S - 8)
        );
        assert_eq!(release(&["sync.(*RWMutex).Unlock", "main.f"]), Some(S - 12));
        assert_eq!(release(&["sync.(*WaitGroup).Add"]), None);
        assert_eq!(release(&[]), None);
    }

    /// Guards the wait named at a semaphore acquire's entry (the default Go probes): the
    /// same rules as for a parked goroutine, from the caller's frames.
    #[test]
    fn semaphore_waits_from_the_caller_frames() {
        let wait = |frames: &[&str]| classify_semaphore_wait(frames.iter().copied(), S);
        let rlock = wait(&["sync.(*RWMutex).RLock", "main.get"]).expect("a read wait");
        assert_eq!((rlock.lock, rlock.mode), (S - 12, GoLockMode::Read));
        let drain = wait(&["sync.(*RWMutex).Lock", "main.set"]).expect("a draining writer");
        assert!(drain.drains_readers);
        let w = wait(&[
            "sync.(*Mutex).lockSlow",
            "sync.(*Mutex).Lock",
            "sync.(*RWMutex).Lock",
        ])
        .expect("the write side");
        assert_eq!((w.lock, w.kind), (S - 4, ParkedLockKind::RwMutex));
        assert_eq!(wait(&["sync.(*WaitGroup).Wait"]), None);
    }
}
