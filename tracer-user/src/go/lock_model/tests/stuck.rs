//! Stuck locks: when they are due, how often, and how they are held.
use super::*;
use crate::go::lock_model::{GoLockKind, GoLockMode};

#[test]
fn stuck_rwmutex_is_reported_when_found_then_when_waiters_double() {
    let mut m = model();
    m.handle(&wlock(1, 0, L));
    for goid in 11..=14 {
        m.handle(&rlock(goid, goid * MS, L, WRITER_PENDING));
    }
    // The clock starts at the oldest waiter (11 ms).
    assert!(m.due_stuck_locks(110 * MS).is_empty());
    let due = m.due_stuck_locks(111 * MS);
    assert_eq!(due.len(), 1);
    let s = &due[0];
    assert_eq!(
        (s.addr, s.kind, s.mode),
        (L, GoLockKind::RwMutex, GoLockMode::Write)
    );
    let holder = s.holder.unwrap();
    assert_eq!(
        (holder.goid, holder.pc, holder.since_ns),
        (1, site(1, L), 0)
    );
    assert_eq!((s.since_ns, s.held_ns), (11 * MS, 111 * MS));
    assert_eq!((s.waiters, s.readers_waiting, s.writers_waiting), (4, 4, 0));
    assert!(s.readers.is_empty() && s.draining_writer.is_none());

    assert!(m.due_stuck_locks(200 * MS).is_empty(), "reported once");
    for goid in 15..=17 {
        m.handle(&rlock(goid, 200 * MS, L, WRITER_PENDING));
        assert!(
            m.due_stuck_locks(201 * MS).is_empty(),
            "{goid}: below double"
        );
    }
    m.handle(&rlock(18, 210 * MS, L, WRITER_PENDING));
    let due = m.due_stuck_locks(211 * MS);
    assert_eq!(due.iter().map(|s| s.waiters).collect::<Vec<_>>(), vec![8]);
    assert!(m.due_stuck_locks(250 * MS).is_empty());

    // The writer's release ends the episode, before the readers' wake-ups arrive.
    m.handle(&wunlock(1, 300 * MS, L));
    assert!(m.due_stuck_locks(399 * MS).is_empty());
    let due = m.due_stuck_locks(400 * MS);
    assert_eq!(due.len(), 1);
    let s = &due[0];
    assert_eq!((s.waiters, s.holder, s.mode), (8, None, GoLockMode::Write));
    assert_eq!((s.since_ns, s.held_ns), (300 * MS, 100 * MS));

    for goid in 11..=18 {
        m.handle(&sem_ret(goid, 301 * MS));
    }
    assert!(m.due_stuck_locks(1000 * MS).is_empty());
    assert_eq!(m.readers(L).len(), 8);
}

#[test]
fn read_held_lock_with_writers_waiting_is_reported_as_read() {
    let mut m = model();
    // Two readers, then a writer queued on the write side (lockSlow on `w`).
    feed(
        &mut m,
        &[
            rlock(1, 10 * MS, L, 0),
            rlock(2, 20 * MS, L, 1),
            enter(3, 30 * MS, L),
        ],
    );
    let due = m.due_stuck_locks(130 * MS);
    assert_eq!(due.len(), 1);
    let s = &due[0];
    assert_eq!((s.mode, s.kind), (GoLockMode::Read, GoLockKind::RwMutex));
    let holder = s.holder.unwrap();
    assert_eq!((holder.goid, holder.pc), (1, site(1, L)));
    assert_eq!(s.held_ns, 120 * MS);
    assert_eq!(
        s.readers.iter().map(|h| h.goid).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!((s.waiters, s.readers_waiting, s.writers_waiting), (1, 0, 1));

    // Go's own shape: the writer takes `w`, then waits for the reader that got in
    // first; a later reader queues behind it. Held for reading; the writer drains.
    feed(
        &mut m,
        &[
            rlock(4, 10 * MS, M, 0),
            wlock(5, 20 * MS, M),
            rlock(6, 30 * MS, M, WRITER_PENDING),
        ],
    );
    let due = m.due_stuck_locks(130 * MS);
    let s = due.iter().find(|s| s.addr == M).unwrap();
    assert_eq!(
        (s.mode, s.holder.map(|h| h.goid)),
        (GoLockMode::Read, Some(4))
    );
    assert_eq!(s.draining_writer.map(|h| h.goid), Some(5));
    assert_eq!((s.waiters, s.readers_waiting), (1, 1));
}
