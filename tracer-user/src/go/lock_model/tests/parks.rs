//! The model fed by the default Go probes: parks, their ends and hand-overs only.
use super::*;
use crate::go::lock_model::{GoLockMode, ParkSide};

fn park(goid: u64, ts: u64, lock: u64, side: ParkSide) -> GoLockEvent {
    GoLockEvent {
        value: side.encode(),
        ..ev(GoOp::SemacquireEnter, goid, ts, lock)
    }
}

fn woken(goid: u64, ts: u64) -> GoLockEvent {
    ev(GoOp::SemacquireReturn, goid, ts, 0)
}

const WRITE: ParkSide = ParkSide {
    mode: GoLockMode::Write,
    drains_readers: false,
    rw: false,
};

/// Guards the side a park carries through the event's `value`: every combination
/// round-trips.
#[test]
fn park_sides_round_trip() {
    for mode in [GoLockMode::Read, GoLockMode::Write] {
        for drains_readers in [false, true] {
            for rw in [false, true] {
                let side = ParkSide {
                    mode,
                    drains_readers,
                    rw,
                };
                assert_eq!(ParkSide::decode(side.encode()), side);
            }
        }
    }
}

/// Guards the default mode's statistics: a park starts a wait, its return ends it with
/// its duration and no hold (the goroutine may park again, and no release would ever end
/// a hold), and the lock's kind comes from the park.
#[test]
fn a_park_and_its_return_make_one_measured_wait_and_no_hold() {
    let mut m = GoLockModel::waits_only(STUCK_AFTER);
    m.handle(&park(1, 10 * MS, A, WRITE));
    assert_eq!(m.is_waiting(1).map(|w| w.lock), Some(A));
    m.handle(&woken(1, 13 * MS));
    assert!(m.is_waiting(1).is_none());
    assert!(m.writer(A).is_none(), "no hold from a park's end");
    let stats = m.stats().get(A).expect("A contended");
    assert_eq!(stats.contentions, 1);
    assert_eq!(stats.wait().total, 3 * MS);
    let reader = ParkSide {
        mode: GoLockMode::Read,
        drains_readers: false,
        rw: true,
    };
    m.handle(&park(2, 20 * MS, L, reader));
    assert_eq!(m.lock_kind(L), crate::go::lock_model::GoLockKind::RwMutex);
}

/// Guards the hand-over: a semaphore release of a lock with waiters is a release for the
/// stuck-lock threshold (the lock moves). One of a lock no traced park waits for counts
/// too: its waiters may have parked before the attach, where only the goroutine
/// snapshots see them, and the lock moves all the same.
#[test]
fn a_hand_over_marks_a_release() {
    let mut m = GoLockModel::waits_only(STUCK_AFTER);
    m.handle(&park(1, 10 * MS, A, WRITE));
    m.handle(&park(2, 11 * MS, A, WRITE));
    assert_eq!(m.last_release(A), None);
    m.handle(&ev(GoOp::SemreleaseEnter, 3, 50 * MS, A));
    assert_eq!(m.last_release(A), Some(50 * MS));
    m.handle(&ev(GoOp::SemreleaseEnter, 3, 60 * MS, B));
    assert_eq!(m.last_release(B), Some(60 * MS));
    assert!(m.due_stuck_locks(120 * MS).is_empty(), "released 70 ms ago");
    assert_eq!(m.due_stuck_locks(151 * MS).len(), 1);
}

/// Guards a false stuck lock on a hot mutex: with parks and hand-overs only, the lock's
/// state goes whenever its last waiter wakes, and its last hand-over went with it. The
/// goroutine snapshots, which start a lock's clock at the later of its last release and
/// the first sighting of a waiter, then had no release to go by and reported a lock handed
/// over a moment before as stuck. The hand-over must still be known after the waiter woke,
/// and after the lock's state was made again by a new park.
#[test]
fn a_hand_over_is_remembered_after_the_locks_waiters_all_woke() {
    let mut m = GoLockModel::waits_only(STUCK_AFTER);
    m.handle(&park(1, 0, A, WRITE));
    m.handle(&ev(GoOp::SemreleaseEnter, 2, 5 * MS, A));
    m.handle(&woken(1, 6 * MS));
    assert!(!m.is_live(A), "no waiter, no holder: the lock's state went");
    assert_eq!(m.last_release(A), Some(5 * MS));
    m.handle(&park(3, 7 * MS, A, WRITE));
    assert_eq!(m.last_release(A), Some(5 * MS));
    m.handle(&ev(GoOp::SemreleaseEnter, 2, 8 * MS, A));
    assert_eq!(m.last_release(A), Some(8 * MS));
    assert_eq!(m.last_release(B), None, "a lock never released has none");
}
