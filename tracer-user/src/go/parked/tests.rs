use super::*;

const A: u64 = 0xc000_1000;
const B: u64 = 0xc000_2000;
const C: u64 = 0xc000_3000;

fn goroutine(
    goid: u64,
    wait: Option<(u64, GoLockMode, bool)>,
    holds: &[(u64, GoLockMode)],
) -> ParkedGoroutine {
    ParkedGoroutine {
        goid,
        state: HolderState::Blocked,
        wait: wait.map(|(lock, mode, drains_readers)| ParkedWait {
            lock,
            mode,
            drains_readers,
            since_ns: Some(goid * 10),
        }),
        holds: holds
            .iter()
            .map(|&(lock, mode)| ParkedHold {
                lock,
                mode,
                evidence: HolderEvidence::DeferredUnlock,
            })
            .collect(),
        stack: vec![goid],
    }
}

/// The goids of a cycle with (`holds`, `waits_for`), in cycle order.
fn described(graph: &ParkedGraph, cycle: &[ParkedCycleEntry]) -> Vec<(u64, u64, u64)> {
    cycle
        .iter()
        .map(|e| (graph.goroutines()[e.goroutine].goid, e.holds, e.waits_for))
        .collect()
}

/// Guards the deadlock of the alerting incident formed before the attach: two goroutines
/// each holding (by a pending deferred unlock) the mutex the other waits for.
#[test]
fn abba_between_deferred_holders_is_one_cycle() {
    let w = GoLockMode::Write;
    let graph = ParkedGraph::new(vec![
        goroutine(7, Some((B, w, false)), &[(A, w)]),
        goroutine(8, Some((A, w, false)), &[(B, w)]),
        goroutine(9, Some((A, w, false)), &[]),
    ]);
    let cycles = graph.cycles();
    assert_eq!(cycles.len(), 1, "{cycles:?}");
    assert_eq!(described(&graph, &cycles[0]), vec![(7, A, B), (8, B, A)]);
    assert!(
        cycles[0]
            .iter()
            .all(|e| e.evidence == Some(HolderEvidence::DeferredUnlock))
    );
}

/// Guards against false deadlocks: consistent waits (a chain, no cycle), a waiter whose
/// lock has no known holder, and readers of a read-held lock.
#[test]
fn chains_and_unknown_holders_are_no_cycle() {
    let (r, w) = (GoLockMode::Read, GoLockMode::Write);
    let graph = ParkedGraph::new(vec![
        goroutine(1, Some((B, w, false)), &[(A, w)]),
        goroutine(2, Some((C, w, false)), &[(B, w)]),
        goroutine(3, None, &[(C, r)]),
        goroutine(4, Some((C, r, false)), &[(A, r)]),
        goroutine(5, Some((A, r, false)), &[(C, r)]),
    ]);
    assert!(graph.cycles().is_empty(), "{:?}", graph.cycles());
}

/// Guards the recursive read-lock deadlock: a reader holding `A` asks for it again while a
/// writer drains `A`: reader → draining writer → reader.
#[test]
fn recursive_rlock_behind_a_draining_writer_is_a_cycle() {
    let (r, w) = (GoLockMode::Read, GoLockMode::Write);
    let graph = ParkedGraph::new(vec![
        goroutine(3, Some((A, r, false)), &[(A, r)]),
        goroutine(4, Some((A, w, true)), &[]),
    ]);
    let cycles = graph.cycles();
    assert_eq!(cycles.len(), 1, "{cycles:?}");
    assert_eq!(described(&graph, &cycles[0]), vec![(3, A, A), (4, A, A)]);
    assert_eq!(
        cycles[0][1].evidence, None,
        "the writer holds w by draining"
    );
}

/// Guards cycles of any length and that each is reported once, not once per member.
#[test]
fn a_three_cycle_is_found_once() {
    let w = GoLockMode::Write;
    let graph = ParkedGraph::new(vec![
        goroutine(5, Some((B, w, false)), &[(A, w)]),
        goroutine(6, Some((C, w, false)), &[(B, w)]),
        goroutine(7, Some((A, w, false)), &[(C, w)]),
    ]);
    let cycles = graph.cycles();
    assert_eq!(cycles.len(), 1, "{cycles:?}");
    assert_eq!(
        described(&graph, &cycles[0]),
        vec![(5, A, B), (6, B, C), (7, C, A)]
    );
}

/// Guards the stuck-lock counts of the ingestion incident: a write-held lock with a
/// pile of readers and one writer waiting, the holder named with its evidence.
#[test]
fn contended_locks_count_readers_and_writers() {
    let (r, w) = (GoLockMode::Read, GoLockMode::Write);
    let mut gs = vec![goroutine(1, None, &[(A, w), (A, w)])];
    gs.extend((10..20).map(|goid| goroutine(goid, Some((A, r, false)), &[])));
    gs.push(goroutine(30, Some((A, w, false)), &[]));
    gs.push(goroutine(31, Some((B, r, false)), &[]));
    let graph = ParkedGraph::new(gs);
    let locks = graph.contended_locks();
    assert_eq!(locks.len(), 2);
    let a = &locks[0];
    assert_eq!(a.lock, A);
    assert_eq!(a.mode, GoLockMode::Write);
    assert_eq!(
        a.holders,
        vec![(0, HolderEvidence::DeferredUnlock)],
        "deduplicated"
    );
    assert_eq!(
        (a.waiters, a.readers_waiting, a.writers_waiting),
        (11, 10, 1)
    );
    assert_eq!(a.oldest_wait_ns, Some(100));
    assert!(locks[1].holders.is_empty());
    assert_eq!(
        locks[1].mode,
        GoLockMode::Write,
        "unknown holder of a read wait"
    );
}

/// Guards that every reader holding an `RWMutex` is reported as a holder.
#[test]
fn read_held_locks_list_every_reader() {
    let (r, w) = (GoLockMode::Read, GoLockMode::Write);
    let graph = ParkedGraph::new(vec![
        goroutine(1, None, &[(A, r)]),
        goroutine(2, None, &[(A, r)]),
        goroutine(3, Some((A, w, true)), &[]),
    ]);
    let locks = graph.contended_locks();
    assert_eq!(locks[0].mode, GoLockMode::Read);
    assert_eq!(locks[0].holders.len(), 2);
}
