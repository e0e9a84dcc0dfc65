//! Unit tests of the Go lock model on scripted event sequences, one file per concern
//! (`event`, `state`, `cycles`, `stuck`), sharing the event builders below: goroutine `n`
//! runs on its own thread and `g`, and takes each lock at its own site ([`site`]).
mod cycles;
mod event;
mod parks;
mod profile;
mod state;
mod stuck;

use tracer_common::GoOp;

use super::{GoCycle, GoLockEvent, GoLockModel, RW_READER_COUNT_OFFSET};

const MS: u64 = 1_000_000;
const STUCK_AFTER: u64 = 100 * MS;
/// Mutexes.
const A: u64 = 0xc000_1000;
const B: u64 = 0xc000_2000;
const C: u64 = 0xc000_3000;
/// `RWMutex`es.
const L: u64 = 0xc000_4000;
const M: u64 = 0xc000_5000;
const N: u64 = 0xc000_6000;
/// Old `readerCount` seen by a reader while a writer holds or waits.
const WRITER_PENDING: i32 = -(1 << 30);
/// Sites inside `lockSlow`.
const LOCK_SLOW_ENTRY: u64 = 0x47_0000;
const LOCK_SLOW_RET: u64 = 0x47_0100;
const SEMACQUIRE_RET: u64 = 0x46_0100;

/// A distinct acquisition site per goroutine and lock.
fn site(goid: u64, addr: u64) -> u64 {
    0x40_0000 | (goid << 16) | ((addr >> 12) & 0xfff)
}

fn g_of(goid: u64) -> u64 {
    0xc000_8000_0000 + goid * 0x400
}

fn ev(op: GoOp, goid: u64, ts_ns: u64, addr: u64) -> GoLockEvent {
    GoLockEvent {
        op,
        tid: 100 + u32::try_from(goid % 1000).unwrap(),
        ts_ns,
        goid,
        g: g_of(goid),
        addr,
        pc: site(goid, addr),
        caller: 0,
        value: 0,
        stack_id: i32::try_from(goid % 1000).unwrap(),
    }
}

fn lock(goid: u64, ts: u64, addr: u64) -> GoLockEvent {
    ev(GoOp::MutexLockFast, goid, ts, addr)
}

fn unlock(goid: u64, ts: u64, addr: u64) -> GoLockEvent {
    ev(GoOp::MutexUnlock, goid, ts, addr)
}

fn wlock(goid: u64, ts: u64, addr: u64) -> GoLockEvent {
    ev(GoOp::RwLockFast, goid, ts, addr)
}

fn wunlock(goid: u64, ts: u64, addr: u64) -> GoLockEvent {
    ev(GoOp::RwUnlock, goid, ts, addr)
}

/// `RLock` on the `RWMutex` at `lock`, whose `readerCount` was `old`.
fn rlock(goid: u64, ts: u64, lock: u64, old: i32) -> GoLockEvent {
    GoLockEvent {
        addr: lock + RW_READER_COUNT_OFFSET,
        pc: site(goid, lock),
        value: i64::from(old),
        ..ev(GoOp::RLockFast, goid, ts, 0)
    }
}

fn runlock(goid: u64, ts: u64, lock: u64) -> GoLockEvent {
    ev(GoOp::RUnlock, goid, ts, lock + RW_READER_COUNT_OFFSET)
}

/// Entry of `lockSlow(addr)`, called from the goroutine's site for `addr`.
fn enter(goid: u64, ts: u64, addr: u64) -> GoLockEvent {
    GoLockEvent {
        pc: LOCK_SLOW_ENTRY,
        caller: site(goid, addr),
        ..ev(GoOp::LockSlowEnter, goid, ts, addr)
    }
}

fn slow_ret(goid: u64, ts: u64) -> GoLockEvent {
    GoLockEvent {
        pc: LOCK_SLOW_RET,
        ..ev(GoOp::LockSlowReturn, goid, ts, 0)
    }
}

fn sem_ret(goid: u64, ts: u64) -> GoLockEvent {
    GoLockEvent {
        pc: SEMACQUIRE_RET,
        ..ev(GoOp::SemacquireReturn, goid, ts, 0)
    }
}

fn model() -> GoLockModel {
    GoLockModel::new(STUCK_AFTER)
}

fn feed(m: &mut GoLockModel, events: &[GoLockEvent]) {
    for e in events {
        m.handle(e);
    }
}

/// The chain invariant every cycle must satisfy.
fn assert_chained(c: &GoCycle) {
    let n = c.len();
    for i in 0..n {
        assert_eq!(
            c.entries[i].holds,
            c.entries[(i + n - 1) % n].waiter.lock,
            "{c:?}"
        );
    }
}
