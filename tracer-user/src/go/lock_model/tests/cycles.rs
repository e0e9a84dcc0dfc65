//! Wait-for cycles: found once and rotated to the smallest goroutine, chained; read waits
//! wait for the writer only, draining writers wait for readers; searches stay short.
use std::time::{Duration, Instant};

use super::*;
use crate::go::lock_model::GoLockMode;

#[test]
fn abba_cycle_is_found_once_with_holds_and_sites() {
    let mut m = model();
    feed(&mut m, &[lock(1, 10, A), lock(2, 20, B), enter(1, 30, B)]);
    assert!(m.take_new_cycles().is_empty(), "one wait is no cycle");
    m.handle(&enter(2, 40, A));
    let cycles = m.take_new_cycles();
    assert_eq!(cycles.len(), 1, "{cycles:?}");
    let c = &cycles[0];
    assert_chained(c);
    assert_eq!(c.goids().collect::<Vec<_>>(), vec![1, 2]);
    let (e1, e2) = (&c.entries[0], &c.entries[1]);
    assert_eq!(
        (e1.waiter.lock, e1.waiter.mode, e1.waiter.since_ns),
        (B, GoLockMode::Write, 30)
    );
    assert_eq!(e1.waiter.caller, site(1, B));
    assert!(!e1.waiter.drains_readers);
    assert_eq!(e1.holds, A);
    let h1 = e1.hold.unwrap();
    assert_eq!(
        (h1.goid, h1.since_ns, h1.pc, h1.g),
        (1, 10, site(1, A), g_of(1))
    );
    assert_eq!((e2.waiter.lock, e2.waiter.since_ns, e2.holds), (A, 40, B));
    let h2 = e2.hold.unwrap();
    assert_eq!((h2.goid, h2.since_ns, h2.pc), (2, 20, site(2, B)));
    assert!(m.cycle_still_present(c));

    // A re-run entry, unrelated traffic and a repeated wait report nothing new.
    feed(
        &mut m,
        &[
            enter(1, 50, B),
            lock(3, 60, C),
            unlock(3, 70, C),
            enter(2, 80, A),
        ],
    );
    assert!(m.take_new_cycles().is_empty());
    assert!(m.cycle_still_present(c));

    // Goroutine 1 gets B (scripted): the edge 2 → 1 through B's holder is gone.
    m.handle(&slow_ret(1, 90));
    assert!(!m.cycle_still_present(c));
}

#[test]
fn three_goroutine_cycle_is_rotated_to_the_smallest_goid() {
    let mut m = model();
    feed(
        &mut m,
        &[
            lock(1, 1, A),
            lock(2, 2, B),
            lock(3, 3, C),
            enter(1, 4, B),
            enter(2, 5, C),
        ],
    );
    assert!(m.take_new_cycles().is_empty());
    // Closed by goroutine 3, reported from goroutine 1.
    m.handle(&enter(3, 6, A));
    let cycles = m.take_new_cycles();
    assert_eq!(cycles.len(), 1);
    let c = &cycles[0];
    assert_chained(c);
    assert_eq!(c.goids().collect::<Vec<_>>(), vec![1, 2, 3]);
    let waits: Vec<u64> = c.entries.iter().map(|e| e.waiter.lock).collect();
    assert_eq!(waits, vec![B, C, A]);
    let sites: Vec<u64> = c.entries.iter().map(|e| e.hold.unwrap().pc).collect();
    assert_eq!(sites, vec![site(1, A), site(2, B), site(3, C)]);
}

#[test]
fn waiting_for_a_held_mutex_is_a_cycle_of_one() {
    let mut m = model();
    feed(&mut m, &[lock(5, 10, A), enter(5, 20, A)]);
    let cycles = m.take_new_cycles();
    assert_eq!(cycles.len(), 1);
    let e = &cycles[0].entries[0];
    assert_eq!(
        (cycles[0].len(), e.waiter.goid, e.waiter.lock, e.holds),
        (1, 5, A, A)
    );
    assert_eq!(e.hold.unwrap().pc, site(5, A));
    assert!(m.cycle_still_present(&cycles[0]));
}

#[test]
fn a_read_wait_waits_for_the_writer_only() {
    let mut m = model();
    // Goroutine 1 reads L and waits to read it again, with no writer known: not a
    // self-deadlock (readers do not block readers).
    feed(
        &mut m,
        &[rlock(1, 10, L, 0), rlock(1, 20, L, WRITER_PENDING)],
    );
    assert_eq!(
        m.is_waiting(1).map(|w| (w.lock, w.mode)),
        Some((L, GoLockMode::Read))
    );
    // Goroutine 2 reads M and waits for A held by 3; 3 waits to read M: the reader 2
    // is not in 3's way, so there is no cycle.
    feed(
        &mut m,
        &[
            rlock(2, 30, M, 0),
            lock(3, 40, A),
            enter(2, 50, A),
            rlock(3, 60, M, WRITER_PENDING),
        ],
    );
    assert!(m.take_new_cycles().is_empty());
    // A write wait does wait for readers: 4 holds B and waits to write M; 2 (a reader
    // of M) now waits for B.
    feed(&mut m, &[lock(4, 70, B), enter(4, 80, M)]);
    assert!(m.take_new_cycles().is_empty());
    feed(&mut m, &[unlock(3, 90, A), enter(2, 95, B)]);
    let cycles = m.take_new_cycles();
    assert_eq!(cycles.len(), 1, "{cycles:?}");
    assert_chained(&cycles[0]);
    assert_eq!(cycles[0].goids().collect::<Vec<_>>(), vec![2, 4]);
    // Goroutine 2's hold of M is a read hold.
    assert_eq!(cycles[0].entries[0].holds, M);
    assert_eq!(cycles[0].entries[0].hold.unwrap().pc, site(2, M));
}

#[test]
fn ordered_locking_has_no_cycle() {
    let mut m = model();
    // 1 takes A then B; 2 waits for A; 3 holds C and 1 waits for it: a chain 2 → 1 → 3.
    feed(
        &mut m,
        &[
            lock(1, 1, A),
            lock(1, 2, B),
            enter(2, 3, A),
            lock(3, 4, C),
            enter(1, 5, C),
        ],
    );
    assert_eq!(m.is_waiting(2).map(|w| w.lock), Some(A));
    assert_eq!(m.is_waiting(1).map(|w| w.lock), Some(C));
    // Everyone then takes A before B: waits come and go, none closes a cycle.
    feed(
        &mut m,
        &[
            unlock(3, 6, C),
            slow_ret(1, 7),
            unlock(1, 8, C),
            unlock(1, 9, B),
            unlock(1, 10, A),
            slow_ret(2, 11),
            enter(3, 12, A),
            lock(2, 13, B),
            unlock(2, 14, B),
            unlock(2, 15, A),
            slow_ret(3, 16),
            unlock(3, 17, A),
        ],
    );
    assert!(m.take_new_cycles().is_empty());
    assert_eq!(m.goroutine_count(), 0);
    assert_eq!(m.counts().unmatched_releases, 0);
    assert_eq!(m.counts().stale_waits, 0);
}

#[test]
fn a_huge_pile_of_waiters_keeps_searches_short() {
    const PILE: u64 = 100_000;
    let started = Instant::now();
    let mut m = model();
    // Writer 1 holds L and waits for M, held by 2.
    feed(&mut m, &[wlock(1, 0, L), lock(2, 1, M), enter(1, 2, M)]);
    let mut worst = 0;
    for i in 0..PILE {
        m.handle(&rlock(1000 + i, 10 + i, L, WRITER_PENDING));
        worst = worst.max(m.last_search_steps());
    }
    // Reader → writer 1 → holder 2 of M: two edges, whatever the pile's size.
    assert_eq!(worst, 2);
    assert_eq!(m.waiting_count(), usize::try_from(PILE).unwrap() + 1);

    let check = Instant::now();
    m.handle(&enter(2, 1_000_000, L));
    let cycles = m.take_new_cycles();
    assert_eq!(cycles.len(), 1);
    assert_eq!(cycles[0].goids().collect::<Vec<_>>(), vec![1, 2]);
    assert!(m.cycle_still_present(&cycles[0]));
    assert!(m.last_search_steps() <= 2, "{}", m.last_search_steps());
    let due = m.due_stuck_locks(10_000 * MS);
    assert_eq!(due.iter().find(|s| s.addr == L).unwrap().waiters, 100_001);
    assert!(
        check.elapsed() < Duration::from_secs(1),
        "{:?}",
        check.elapsed()
    );

    // 100k goroutines read the RWMutex N; writers queueing on it have no blocked
    // reader to follow, and find that out without walking the readers.
    for i in 0..PILE {
        m.handle(&rlock(200_000 + i, 10, N, 0));
    }
    for i in 0..100 {
        m.handle(&enter(300_000 + i, 20, N));
        assert_eq!(m.last_search_steps(), 0);
    }
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn recursive_read_lock_behind_a_pending_writer_is_a_cycle() {
    let mut m = model();
    // 1 reads L; 2 takes the write side and waits for 1 to leave; 1 reads again and
    // queues behind 2.
    feed(&mut m, &[rlock(1, 10, L, 0), wlock(2, 20, L)]);
    assert!(
        m.take_new_cycles().is_empty(),
        "a writer draining a running reader"
    );
    m.handle(&rlock(1, 30, L, WRITER_PENDING));
    let cycles = m.take_new_cycles();
    assert_eq!(cycles.len(), 1, "{cycles:?}");
    let c = &cycles[0];
    assert_chained(c);
    let (r, w) = (&c.entries[0], &c.entries[1]);
    assert_eq!(
        (r.waiter.goid, r.waiter.mode, r.waiter.drains_readers),
        (1, GoLockMode::Read, false)
    );
    assert_eq!(r.hold.map(|h| (h.goid, h.since_ns)), Some((1, 10)));
    assert_eq!(
        (w.waiter.goid, w.waiter.mode, w.waiter.drains_readers),
        (2, GoLockMode::Write, true)
    );
    assert_eq!(
        (w.waiter.lock, w.waiter.since_ns, w.waiter.pc),
        (L, 20, site(2, L))
    );
    assert_eq!(w.hold.map(|h| h.since_ns), Some(20));
    assert!(m.cycle_still_present(c));
    assert!(m.is_waiting(2).is_none(), "drains are not listed as waits");
    // 1 is seen releasing its first read hold (scripted): it was not stuck after all.
    m.handle(&runlock(1, 40, L));
    assert!(!m.cycle_still_present(c));

    // Write-locking an RWMutex you read yourself: a cycle of one.
    feed(&mut m, &[rlock(7, 50, M, 0), wlock(7, 60, M)]);
    let cycles = m.take_new_cycles();
    assert_eq!(cycles.len(), 1);
    assert_eq!((cycles[0].len(), cycles[0].entries[0].holds), (1, M));
    assert!(cycles[0].entries[0].waiter.drains_readers);
}

#[test]
fn an_acquisition_can_close_a_cycle() {
    let mut m = model();
    // 1 reads L, then waits for A held by 2; 2 then write-locks L and must wait for
    // reader 1: the cycle closes at 2's acquisition, not at a wait start.
    feed(
        &mut m,
        &[rlock(1, 10, L, 0), lock(2, 20, A), enter(1, 30, A)],
    );
    assert!(m.take_new_cycles().is_empty());
    m.handle(&wlock(2, 40, L));
    let cycles = m.take_new_cycles();
    assert_eq!(cycles.len(), 1, "{cycles:?}");
    let c = &cycles[0];
    assert_chained(c);
    assert_eq!(c.goids().collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!((c.entries[0].waiter.lock, c.entries[0].holds), (A, L));
    assert_eq!((c.entries[1].waiter.lock, c.entries[1].holds), (L, A));
    assert!(c.entries[1].waiter.drains_readers);
}
