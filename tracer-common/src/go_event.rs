//! [`GoEvent`]: the record of a Go lock probe site
//! ([`EventKind::GoLock`](crate::EventKind::GoLock)).

/// The record of a Go lock site ([`EventKind::GoLock`](crate::EventKind::GoLock)).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GoEvent {
    /// `EventKind::GoLock` as `u32`.
    pub kind: u32,
    /// Kernel TID of the thread running the goroutine.
    pub tid: u32,
    /// `bpf_ktime_get_ns()` when the site fired.
    pub ts_ns: u64,
    /// The goroutine's id (`g.goid`), 0 if it could not be read.
    pub goid: u64,
    /// Address of the goroutine's `g` (`R14` in Go's register ABI).
    pub g: u64,
    /// `regs[base] + displacement` from the cookie: the operand of the atomic, or the
    /// receiver at an entry; 0 when the site has no base register.
    pub addr: u64,
    /// The probed instruction (`regs.ip`).
    pub pc: u64,
    /// At entry sites the return address (`[sp]`), which a frame-pointer walk from a
    /// function's first instruction misses; 0 elsewhere.
    pub caller: u64,
    /// The value register from the cookie, sign-extended from 32 bits; 0 if none.
    pub value: i64,
    /// A [`GoOp`](crate::GoOp) as `u32`.
    pub op: u32,
    /// A stack id ([`StackSlot`](crate::StackSlot)), or a negative errno.
    pub stack_id: i32,
}

/// Size of [`GoEvent`] on the wire.
pub const GO_EVENT_SIZE: usize = 72;
const _: () = assert!(core::mem::size_of::<GoEvent>() == GO_EVENT_SIZE);
