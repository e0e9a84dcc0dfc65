//! Shared pieces of the session's unit tests: glibc lock waits as the kernel sends them,
//! and glibc mutexes in the memory of a made-up target.
use tracer_common::{SNAPSHOT_LEAD_BYTES, SNAPSHOT_WORDS, futex_cmd};

use crate::{
    event::{Snapshot, TraceEvent, WaitTimeout, WindowRef},
    native::futex_lock::MUTEX_OWNER_OFFSET,
    target::fake::FakeProcess,
};

/// `FUTEX_PRIVATE_FLAG`, as glibc passes it with every process-private futex op.
pub(crate) const FUTEX_PRIVATE: u64 = 128;

/// Start of the code region of made-up targets.
pub(crate) const CODE: u64 = 0x40_0000;
/// Where the `call rel32` in [`code`] returns to.
pub(crate) const AFTER_CALL: u64 = CODE + 0x15;

/// Code for [`CODE`]: a `call rel32` at 0x10 (returning to [`AFTER_CALL`]), NOPs
/// elsewhere.
pub(crate) fn code() -> Vec<u8> {
    let mut code = vec![0x90; 0x100];
    code[0x10..0x15].copy_from_slice(&[0xe8, 0x10, 0x20, 0x00, 0x00]);
    code
}

/// A glibc mutex wait as the kernel reports it: futex word 2 (locked, with waiters),
/// owner TID at +8.
pub(crate) fn mutex_wait(tid: u32, ts_ns: u64, lock: u64, owner: u32) -> TraceEvent<'static> {
    let mut words = [0; SNAPSHOT_WORDS];
    let lead = usize::try_from(SNAPSHOT_LEAD_BYTES / 4).expect("small");
    words[lead] = 2;
    words[lead + 2] = owner;
    TraceEvent::FutexWait {
        tid,
        ts_ns,
        addr: lock,
        cmd: futex_cmd::WAIT,
        val: 2,
        stack: None,
        snapshot: Snapshot {
            addr: lock - SNAPSHOT_LEAD_BYTES,
            len: 64,
            words,
        },
        window: WindowRef::EMPTY,
        timeout: WaitTimeout::Untimed,
        weight: 1,
    }
}

/// `target` with a glibc mutex at `lock` (inside a mapped region) held by `owner`, with
/// waiters.
pub(crate) fn locked_mutex(target: FakeProcess, lock: u64, owner: u32) -> FakeProcess {
    target
        .poke(lock, &2u32.to_ne_bytes())
        .poke(lock + MUTEX_OWNER_OFFSET, &owner.to_ne_bytes())
}
