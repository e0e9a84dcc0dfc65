//! Holds, waits and their statistics: racing releases, repeated slow-path entries,
//! semaphore returns, histograms, dropping idle records, lock kinds, goroutine keys.
use super::*;
use crate::go::lock_model::{GoLockKind, GoLockMode};

#[test]
fn a_release_after_a_racing_acquire_keeps_the_new_holder() {
    let mut m = model();
    feed(&mut m, &[lock(1, 10, A), enter(2, 20, A)]);
    // 2's acquisition arrives before 1's release (which ran first: its event follows
    // the atomic).
    feed(&mut m, &[slow_ret(2, 40), unlock(1, 35, A)]);
    let w = m.writer(A).unwrap();
    assert_eq!((w.goid, w.since_ns, w.pc), (2, 40, site(2, A)));
    // The displaced holder's release still timed its hold.
    let hold = m.stats().get(A).unwrap().hold().unwrap();
    assert_eq!((hold.count, hold.max), (1, 25));
    assert_eq!(m.counts().unmatched_releases, 0);
    // And 2 really is the holder: a cycle through it is found.
    feed(&mut m, &[lock(3, 50, B), enter(2, 60, B), enter(3, 70, A)]);
    let cycles = m.take_new_cycles();
    assert_eq!(cycles.len(), 1);
    assert_eq!(cycles[0].goids().collect::<Vec<_>>(), vec![2, 3]);
}

#[test]
fn a_repeated_slow_path_entry_keeps_the_first_start() {
    let mut m = model();
    feed(&mut m, &[lock(1, 0, A), enter(2, 10, A), enter(2, 15, A)]);
    assert_eq!(m.is_waiting(2).map(|w| w.since_ns), Some(10));
    assert_eq!(m.stats().get(A).unwrap().contentions, 1);
    feed(&mut m, &[unlock(1, 20, A), slow_ret(2, 30)]);
    let wait = m.stats().get(A).unwrap().wait();
    assert_eq!((wait.count, wait.max), (1, 20));
    // The slow acquisition counts as taken where Lock was called.
    assert_eq!(
        m.writer(A).map(|h| (h.pc, h.since_ns)),
        Some((site(2, A), 30))
    );
    assert!(m.is_waiting(2).is_none());
}

#[test]
fn a_reader_wait_ends_at_the_semaphore_return() {
    let mut m = model();
    feed(&mut m, &[wlock(1, 0, L), rlock(2, 100, L, WRITER_PENDING)]);
    assert_eq!(
        m.is_waiting(2).map(|w| (w.lock, w.mode)),
        Some((L, GoLockMode::Read))
    );
    // lockSlow's return does not end a read wait.
    m.handle(&slow_ret(2, 150));
    assert!(m.is_waiting(2).is_some());
    feed(&mut m, &[wunlock(1, 200, L), sem_ret(2, 250)]);
    assert!(m.is_waiting(2).is_none());
    let readers = m.readers(L);
    assert_eq!(readers.len(), 1);
    // Taken where RLock was called, when the wait ended.
    assert_eq!(
        (readers[0].goid, readers[0].since_ns, readers[0].pc),
        (2, 250, site(2, L))
    );
    let stats = m.stats().get(L).unwrap();
    assert_eq!(
        (stats.contentions, stats.wait().count, stats.wait().max),
        (1, 1, 150)
    );
    m.handle(&runlock(2, 300, L));
    let hold = m.stats().get(L).unwrap().hold().unwrap();
    // The writer's hold (0..200) and the reader's (250..300).
    assert_eq!((hold.count, hold.total), (2, 250));

    // A semaphore return without a pending read wait changes nothing (a mutex slow
    // path goes on until lockSlow returns).
    feed(
        &mut m,
        &[lock(3, 400, A), enter(4, 410, A), sem_ret(4, 420)],
    );
    assert_eq!(m.is_waiting(4).map(|w| w.lock), Some(A));
}

#[test]
fn histograms_follow_a_scripted_sequence() {
    let mut m = model();
    feed(
        &mut m,
        &[
            lock(1, 0, A),
            enter(2, 10, A),
            enter(3, 20, A),
            unlock(1, 30, A),
            slow_ret(2, 35),
            unlock(2, 50, A),
            slow_ret(3, 55),
            unlock(3, 60, A),
            // Never contended: no stats entry.
            lock(4, 70, B),
            unlock(4, 80, B),
        ],
    );
    let s = m.stats().get(A).unwrap();
    assert_eq!((s.contentions, s.max_waiters), (2, 2));
    let wait = s.wait();
    assert_eq!((wait.count, wait.max, wait.total), (2, 35, 25 + 35));
    let hold = s.hold().unwrap();
    assert_eq!((hold.count, hold.max, hold.total), (3, 30, 30 + 15 + 5));
    assert!(m.stats().get(B).is_none());
    assert_eq!(m.stats().len(), 1);

    // An open wait is closed by `finish`, once.
    feed(&mut m, &[lock(5, 100, A), enter(6, 100, A)]);
    m.finish(400);
    m.finish(500);
    let s = m.stats().get(A).unwrap();
    assert_eq!((s.contentions, s.wait().count, s.wait().max), (3, 3, 300));
    // It still waits as far as the model goes, and its end records nothing more.
    assert!(m.is_waiting(6).is_some());
    feed(&mut m, &[unlock(5, 600, A), slow_ret(6, 610)]);
    assert_eq!(m.stats().get(A).unwrap().wait().count, 3);
}

#[test]
fn idle_goroutines_and_locks_are_dropped() {
    let mut m = model();
    for i in 0..10_000 {
        m.handle(&lock(i, i, 0x1_0000 + i * 8));
        m.handle(&rlock(i, i, 0x100_0000 + i * 32, 0));
    }
    assert_eq!((m.goroutine_count(), m.lock_count()), (10_000, 20_000));
    for i in 0..10_000 {
        m.handle(&unlock(i, 20_000 + i, 0x1_0000 + i * 8));
        m.handle(&runlock(i, 20_000 + i, 0x100_0000 + i * 32));
    }
    assert_eq!((m.goroutine_count(), m.lock_count()), (0, 0));

    // Nested read holds are counted.
    feed(
        &mut m,
        &[rlock(1, 1, L, 0), rlock(1, 2, L, 1), runlock(1, 3, L)],
    );
    assert_eq!(
        m.readers(L).iter().map(|h| h.goid).collect::<Vec<_>>(),
        vec![1]
    );
    m.handle(&runlock(1, 4, L));
    assert!(m.readers(L).is_empty());

    // A handoff, and a wait whose end event was lost (the goroutine is then seen
    // releasing a lock: it runs, so the wait is over).
    feed(
        &mut m,
        &[
            lock(1, 10, A),
            enter(2, 11, A),
            unlock(1, 12, A),
            slow_ret(2, 13),
            unlock(2, 14, A),
            lock(3, 20, B),
            enter(4, 21, B),
            unlock(3, 22, B),
            // 4's lockSlow return is lost.
            unlock(4, 30, B),
        ],
    );
    assert_eq!(m.counts().stale_waits, 1);
    assert_eq!((m.goroutine_count(), m.lock_count()), (0, 0));
    assert_eq!(m.waiting_count(), 0);
}

#[test]
fn lock_kinds() {
    let mut m = model();
    feed(&mut m, &[lock(1, 1, A), wlock(2, 2, L)]);
    assert_eq!(
        (m.lock_kind(A), m.lock_kind(L)),
        (GoLockKind::Mutex, GoLockKind::RwMutex)
    );
    // Contended locks keep their kind once nobody holds them.
    feed(
        &mut m,
        &[
            rlock(3, 3, L, WRITER_PENDING),
            wunlock(2, 4, L),
            sem_ret(3, 5),
            runlock(3, 6, L),
            unlock(1, 7, A),
        ],
    );
    assert_eq!(m.lock_count(), 0);
    assert_eq!(m.lock_kind(L), GoLockKind::RwMutex);
    assert_eq!(m.lock_kind(A), GoLockKind::Mutex);
    // A lock first contended through lockSlow is learnt to be an RWMutex later.
    feed(
        &mut m,
        &[
            lock(4, 10, M),
            enter(5, 11, M),
            unlock(4, 12, M),
            slow_ret(5, 13),
            wunlock(5, 14, M),
        ],
    );
    assert_eq!(m.lock_kind(M), GoLockKind::RwMutex);
}

#[test]
fn goroutines_without_an_id_are_told_apart_by_g() {
    let mut m = model();
    let anon = |g: u64, e: GoLockEvent| GoLockEvent { goid: 0, g, ..e };
    feed(
        &mut m,
        &[anon(0x100, lock(0, 1, A)), anon(0x200, lock(0, 2, B))],
    );
    feed(
        &mut m,
        &[anon(0x100, enter(0, 3, B)), anon(0x200, enter(0, 4, A))],
    );
    let cycles = m.take_new_cycles();
    assert_eq!(cycles.len(), 1);
    assert_eq!(
        cycles[0]
            .entries
            .iter()
            .map(|e| e.waiter.g)
            .collect::<Vec<_>>(),
        vec![0x100, 0x200]
    );
}

/// Guards issue 16's bound on the Go side: past the stats table's cap the coldest Go
/// locks are folded, never one that is held with a waiter (a stuck lock's).
#[test]
fn contended_go_locks_past_the_cap_are_folded_but_not_a_stuck_one() {
    use crate::lockstats::DEFAULT_MAX_LOCKS;
    let mut m = model();
    // A held and waited for for good: a stuck lock.
    feed(&mut m, &[lock(1, 0, A), enter(9, 1, A)]);
    let extra = 100;
    let first = 0xc100_0000;
    for i in 0..(DEFAULT_MAX_LOCKS + extra) as u64 {
        let (addr, t) = (first + i * 8, 10 + i * 100);
        feed(
            &mut m,
            &[
                lock(2, t, addr),
                enter(3, t + 1, addr),
                unlock(2, t + 20, addr),
                slow_ret(3, t + 30),
                unlock(3, t + 40, addr),
            ],
        );
    }
    let stats = m.stats();
    assert!(stats.len() <= DEFAULT_MAX_LOCKS, "{} tracked", stats.len());
    assert!(stats.get(A).is_some(), "the stuck lock is kept");
    assert_eq!(
        stats.len() as u64 + stats.folded().locks,
        (DEFAULT_MAX_LOCKS + extra) as u64 + 1
    );
    let tracked: u64 = stats.iter().map(|(_, s)| s.contentions).sum();
    assert_eq!(
        tracked + stats.folded().stats.contentions,
        (DEFAULT_MAX_LOCKS + extra) as u64 + 1
    );
    assert_eq!(m.is_waiting(9).map(|w| w.lock), Some(A));
}
