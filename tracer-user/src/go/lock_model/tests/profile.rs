//! Contention profiles of goroutine waits: which waits a window takes, by lock and by the
//! stack the wait began at, and its bound.
use super::*;
use crate::go::lock_model::{
    GoLockKind, GoLockMode, GoProfileEntry, GoWaitProfile, GoWaitStack, MAX_GO_PROFILE_ENTRIES,
    ParkSide,
};

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

const READ: ParkSide = ParkSide {
    mode: GoLockMode::Read,
    drains_readers: false,
    rw: true,
};

/// The stack [`ev`] gives goroutine `goid`'s events on `lock` (`caller` 0 but at a
/// function entry).
fn stack_of(goid: u64, lock: u64) -> GoWaitStack {
    GoWaitStack {
        pc: site(goid, lock),
        caller: 0,
        stack_id: i32::try_from(goid).unwrap(),
    }
}

fn sorted(profile: GoWaitProfile) -> Vec<GoProfileEntry> {
    let mut entries = profile.into_entries();
    entries.sort_by_key(|e| (e.lock, e.stack.pc, e.stack.caller, e.stack.stack_id));
    entries
}

/// Guards the window of a profile under the default probes: it takes the parks that end
/// inside it, with their whole time (also one that began before it opened), one pair per
/// lock and stack (a goroutine parking twice at the same place adds up); not the parks
/// that ended before it, nor those whose end was lost (no time) or that end after it.
/// A reader's park on an `RWMutex` keeps the lock's kind.
#[test]
fn a_profile_takes_the_parks_that_end_in_its_window() {
    let mut m = GoLockModel::waits_only(STUCK_AFTER);
    feed(&mut m, &[park(1, 0, A, WRITE), woken(1, 5 * MS)]);
    m.handle(&park(2, 10 * MS, A, WRITE));
    m.start_profile(7);
    feed(
        &mut m,
        &[
            park(3, 12 * MS, A, WRITE),
            woken(2, 20 * MS),
            woken(3, 22 * MS),
            park(3, 30 * MS, A, WRITE),
            woken(3, 31 * MS),
            park(4, 40 * MS, L, READ),
            woken(4, 44 * MS),
            // 5's first park loses its end (it parks on B next): no time to profile; its
            // park on B is still on when the window closes.
            park(5, 50 * MS, A, WRITE),
            park(5, 60 * MS, B, WRITE),
            park(6, 70 * MS, C, WRITE),
        ],
    );
    let profile = m.finish_profile(7).expect("profile 7 was started");
    m.handle(&woken(6, 80 * MS));
    assert!(m.finish_profile(7).is_none(), "a profile is finished once");
    assert_eq!(profile.overflowed, 0);
    assert_eq!(
        sorted(profile),
        vec![
            GoProfileEntry {
                lock: A,
                kind: GoLockKind::Mutex,
                stack: stack_of(2, A),
                count: 1,
                delay_ns: 10 * MS,
            },
            GoProfileEntry {
                lock: A,
                kind: GoLockKind::Mutex,
                stack: stack_of(3, A),
                count: 2,
                delay_ns: 10 * MS + MS,
            },
            GoProfileEntry {
                lock: L,
                kind: GoLockKind::RwMutex,
                stack: stack_of(4, L),
                count: 1,
                delay_ns: 4 * MS,
            },
        ]
    );
}

/// Guards the profile under `--holds`: a slow `Lock`'s wait is named by `lockSlow`'s
/// entry and the caller of it (where `Lock` was called), a blocked `RLock`'s by its own
/// site; and two windows open at once each take only the waits that end inside them.
#[test]
fn profiles_under_holds_name_the_wait_sites_and_overlap() {
    let mut m = model();
    m.handle(&lock(1, 0, A));
    m.start_profile(1);
    feed(
        &mut m,
        &[enter(2, 10, A), unlock(1, 20, A), slow_ret(2, 30)],
    );
    m.start_profile(2);
    feed(
        &mut m,
        &[
            wlock(3, 40, L),
            rlock(4, 50, L, WRITER_PENDING),
            wunlock(3, 60, L),
            sem_ret(4, 75),
        ],
    );
    let read_wait = GoProfileEntry {
        lock: L,
        kind: GoLockKind::RwMutex,
        stack: stack_of(4, L),
        count: 1,
        delay_ns: 25,
    };
    assert_eq!(
        sorted(m.finish_profile(2).expect("profile 2")),
        vec![read_wait]
    );
    assert_eq!(
        sorted(m.finish_profile(1).expect("profile 1")),
        vec![
            GoProfileEntry {
                lock: A,
                kind: GoLockKind::Mutex,
                stack: GoWaitStack {
                    pc: LOCK_SLOW_ENTRY,
                    caller: site(2, A),
                    stack_id: 2,
                },
                count: 1,
                delay_ns: 20,
            },
            read_wait,
        ]
    );
    assert!(m.finish_profile(3).is_none(), "never started");
}

/// Guards a window's memory bound: pairs past [`MAX_GO_PROFILE_ENTRIES`] are counted, not
/// kept, while the pairs it has go on counting; and a pair's kind becomes `RwMutex` when
/// any of its waits says so.
#[test]
fn a_go_profile_keeps_a_bounded_number_of_pairs() {
    let mut p = GoWaitProfile::default();
    let stack = stack_of(1, A);
    let extra = 3;
    for lock in 0..(MAX_GO_PROFILE_ENTRIES as u64 + extra) {
        p.record(lock, GoLockKind::Mutex, stack, 1);
    }
    p.record(0, GoLockKind::RwMutex, stack, 5);
    assert_eq!(p.overflowed, extra);
    let entries = sorted(p);
    assert_eq!(entries.len(), MAX_GO_PROFILE_ENTRIES);
    assert_eq!(
        (
            entries[0].lock,
            entries[0].kind,
            entries[0].count,
            entries[0].delay_ns
        ),
        (0, GoLockKind::RwMutex, 2, 6)
    );
}

/// Guards the holder profile (`--holds --pprof`): a wait is charged to the acquisition
/// site and stack of the hold released during it (the one it waited out), else to the
/// lock's holder at its end (a release not seen), else to an all-zero stack (holder not
/// known); a hold released before the wait began is not its holder. Waits are charged
/// only once a holder profile was started, and the waiter profile is apart.
#[test]
fn a_holder_profile_charges_each_wait_to_the_hold_it_waited_out() {
    let mut m = model();
    feed(&mut m, &[lock(1, 0, A), enter(2, 10, A), unlock(1, 20, A)]);
    m.handle(&slow_ret(2, 30));
    m.start_holder_profile(9);
    feed(
        &mut m,
        &[
            // 3 waits for 2's hold (taken by 2's slow path, at its call site).
            enter(3, 40, A),
            unlock(2, 50, A),
            slow_ret(3, 55),
            // 4 waits for B, whose holder nothing saw.
            enter(4, 60, B),
            slow_ret(4, 70),
            // 5's hold of C ends before 7 waits; 6 holds it meanwhile, its release lost.
            lock(5, 80, C),
            unlock(5, 85, C),
            lock(6, 86, C),
            enter(7, 90, C),
            slow_ret(7, 99),
        ],
    );
    let held = m.finish_holder_profile(9).expect("holder profile 9");
    assert!(m.finish_holder_profile(9).is_none(), "finished once");
    assert!(
        m.finish_profile(9).is_none(),
        "no waiter profile was started"
    );
    let charged: Vec<(u64, GoWaitStack, u64, u64)> = sorted(held)
        .into_iter()
        .map(|e| (e.lock, e.stack, e.count, e.delay_ns))
        .collect();
    let hold_of = |goid: u64, pc| GoWaitStack {
        pc,
        caller: 0,
        stack_id: i32::try_from(goid).unwrap(),
    };
    let unknown = GoWaitStack {
        pc: 0,
        caller: 0,
        stack_id: -1,
    };
    let mut expected = vec![
        (A, hold_of(2, site(2, A)), 1, 15),
        (B, unknown, 1, 10),
        (C, hold_of(6, site(6, C)), 1, 9),
    ];
    expected.sort_by_key(|(lock, s, ..)| (*lock, s.pc, s.caller, s.stack_id));
    assert_eq!(charged, expected);
}
