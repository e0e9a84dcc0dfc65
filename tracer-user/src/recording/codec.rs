//! The binary encoding of the values a recording keeps (see `docs/recording-format.md`):
//! integers little-endian and fixed-width, a `bool` one byte, a string or a list a `u32`
//! length then its items, an `Option` a presence byte then the value, an enum a `u8` tag.
//! Struct fields go in the order the `wire_struct!` lists name them. Pure code, no I/O.

use thiserror::Error;
use tracer_common::{BriefWaits, STACK_WINDOW_WORDS};

use super::tape::{NamedStack, StackKey, TapeCounters, TapeItem, TapeNames, TapeSetup};
use crate::{
    event::StackWindow,
    exports::ExportProfiles,
    model::{
        Deadlock, DeadlockEntry, FilteredLocks, Finding, HoldMode, HolderEvidence, HolderState,
        LockKind, LockOrderInversion, LockRef, LockSummary, NameSource, OrderEdge, OtherLocks,
        Quantiles, StuckHolder, StuckLock, Summary,
        graph::{EdgeKind, GraphEdge, GraphNode, GraphSnapshot, NodeKind},
        profile::{ContentionProfile, ProfileFrame, ProfileSample},
    },
};

/// A payload that does not decode: the file was damaged or written by another program.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("payload ends early")]
    Short,
    #[error("unknown tag {tag} for {what}")]
    Tag { what: &'static str, tag: u8 },
    #[error("string is not UTF-8")]
    Utf8,
    #[error("{left} byte(s) left over after the value")]
    Trailing { left: usize },
    #[error("compressed payload does not inflate")]
    Compressed,
}

/// A cursor over a payload.
pub struct Input<'a> {
    bytes: &'a [u8],
}

impl<'a> Input<'a> {
    #[must_use]
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    /// The next `n` bytes.
    ///
    /// # Errors
    /// [`DecodeError::Short`] when fewer are left.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.bytes.len() < n {
            return Err(DecodeError::Short);
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    /// Checks that the whole payload was used.
    ///
    /// # Errors
    /// [`DecodeError::Trailing`] when bytes are left.
    pub fn finish(self) -> Result<(), DecodeError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Trailing {
                left: self.bytes.len(),
            })
        }
    }
}

/// A value with a recording encoding.
pub trait Wire: Sized {
    fn put(&self, out: &mut Vec<u8>);
    /// # Errors
    /// When the input does not hold such a value.
    fn get(input: &mut Input<'_>) -> Result<Self, DecodeError>;
}

/// `value`, encoded.
#[must_use]
pub fn encode<T: Wire>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    value.put(&mut out);
    out
}

/// A [`TapeItem::Record`] of the record `bytes`, encoded straight from them (a recorder
/// puts every ring-buffer record on its tape: no copy of each into an item first).
pub fn put_record_item(bytes: &[u8], out: &mut Vec<u8>) {
    out.push(0);
    put_len(bytes.len(), out);
    out.extend_from_slice(bytes);
}

/// The list `items`, encoded as a `Vec<T>` would be (without copying them into one).
#[must_use]
pub fn encode_list<T: Wire>(items: &[T]) -> Vec<u8> {
    let mut out = Vec::new();
    let len = items.len().min(u32::MAX as usize);
    put_len(len, &mut out);
    for item in &items[..len] {
        item.put(&mut out);
    }
    out
}

/// The value `bytes` encode, all of them.
///
/// # Errors
/// When they do not encode exactly one such value.
pub fn decode<T: Wire>(bytes: &[u8]) -> Result<T, DecodeError> {
    let mut input = Input::new(bytes);
    let value = T::get(&mut input)?;
    input.finish()?;
    Ok(value)
}

macro_rules! wire_int {
    ($($t:ty),*) => {$(
        impl Wire for $t {
            fn put(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn get(input: &mut Input<'_>) -> Result<Self, DecodeError> {
                let bytes = input.take(std::mem::size_of::<$t>())?;
                let mut array = [0u8; std::mem::size_of::<$t>()];
                array.copy_from_slice(bytes);
                Ok(<$t>::from_le_bytes(array))
            }
        }
    )*};
}
wire_int!(u8, u16, u32, u64);

/// `usize` travels as `u64`, so a recording reads the same on any machine.
impl Wire for usize {
    fn put(&self, out: &mut Vec<u8>) {
        (*self as u64).put(out);
    }
    fn get(input: &mut Input<'_>) -> Result<Self, DecodeError> {
        Ok(usize::try_from(u64::get(input)?).unwrap_or(usize::MAX))
    }
}

impl Wire for bool {
    fn put(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
    fn get(input: &mut Input<'_>) -> Result<Self, DecodeError> {
        match u8::get(input)? {
            0 => Ok(false),
            1 => Ok(true),
            tag => Err(DecodeError::Tag { what: "bool", tag }),
        }
    }
}

/// A length as the format writes it (`u32`); a longer list is cut (none is near that).
fn put_len(len: usize, out: &mut Vec<u8>) {
    u32::try_from(len).unwrap_or(u32::MAX).put(out);
}

impl Wire for String {
    fn put(&self, out: &mut Vec<u8>) {
        put_len(self.len(), out);
        out.extend_from_slice(self.as_bytes());
    }
    fn get(input: &mut Input<'_>) -> Result<Self, DecodeError> {
        let len = u32::get(input)? as usize;
        let bytes = input.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::Utf8)
    }
}

impl<T: Wire> Wire for Vec<T> {
    fn put(&self, out: &mut Vec<u8>) {
        let len = self.len().min(u32::MAX as usize);
        put_len(len, out);
        for item in &self[..len] {
            item.put(out);
        }
    }
    fn get(input: &mut Input<'_>) -> Result<Self, DecodeError> {
        let len = u32::get(input)? as usize;
        // Not trusted for the allocation: a damaged length must not ask for gigabytes.
        let mut items = Vec::with_capacity(len.min(input.bytes.len()));
        for _ in 0..len {
            items.push(T::get(input)?);
        }
        Ok(items)
    }
}

impl<T: Wire> Wire for Option<T> {
    fn put(&self, out: &mut Vec<u8>) {
        match self {
            None => out.push(0),
            Some(value) => {
                out.push(1);
                value.put(out);
            }
        }
    }
    fn get(input: &mut Input<'_>) -> Result<Self, DecodeError> {
        match u8::get(input)? {
            0 => Ok(None),
            1 => T::get(input).map(Some),
            tag => Err(DecodeError::Tag {
                what: "option",
                tag,
            }),
        }
    }
}

/// Encodes a struct as its fields in the order listed. The struct literal in `get` lists
/// every field, so a field added to the model fails to compile here until it is listed
/// (and the format's version is raised).
macro_rules! wire_struct {
    ($t:ident { $($field:ident),* $(,)? }) => {
        impl Wire for $t {
            fn put(&self, out: &mut Vec<u8>) {
                $( self.$field.put(out); )*
            }
            fn get(input: &mut Input<'_>) -> Result<Self, DecodeError> {
                Ok($t { $( $field: Wire::get(input)?, )* })
            }
        }
    };
}

/// Encodes a field-less enum as a `u8` tag; tags are part of the format: never reuse one.
macro_rules! wire_enum {
    ($t:ident { $($variant:ident = $tag:literal),* $(,)? }) => {
        impl Wire for $t {
            fn put(&self, out: &mut Vec<u8>) {
                out.push(match self { $( $t::$variant => $tag, )* });
            }
            fn get(input: &mut Input<'_>) -> Result<Self, DecodeError> {
                match u8::get(input)? {
                    $( $tag => Ok($t::$variant), )*
                    tag => Err(DecodeError::Tag { what: stringify!($t), tag }),
                }
            }
        }
    };
}

wire_enum!(NameSource {
    Symtab = 0,
    DebugFile = 1,
    Dynsym = 2
});
wire_enum!(LockKind {
    Mutex = 0,
    PiMutex = 1,
    RwLock = 2,
    Futex = 3,
    GoMutex = 4,
    GoRwMutex = 5,
    RustMutex = 6,
    RustRwLock = 7,
    ParkingLotMutex = 8,
    ParkingLotRwLock = 9,
});
wire_enum!(HoldMode { Write = 0, Read = 1 });
wire_enum!(HolderState {
    Running = 0,
    Blocked = 1,
    Exited = 2,
    Unknown = 3
});
wire_enum!(HolderEvidence {
    DeferredUnlock = 0,
    FrameVariable = 1,
    TracedAcquire = 2,
    StackGuard = 3,
});

wire_struct!(LockRef {
    addr,
    name,
    location,
    name_source
});
wire_struct!(DeadlockEntry {
    goid,
    tid,
    thread,
    holds,
    waits_for,
    stack,
    stack_detail,
    waited_ns,
    blocked_before_attach,
    timed,
    timeout_ns,
    held_ns,
    holder_evidence,
    acquired_at,
    acquired_at_detail,
});
wire_struct!(Deadlock {
    cycle,
    will_time_out,
    detected_after_ns
});
wire_struct!(StuckHolder {
    goid,
    state,
    evidence,
    acquired_at,
    stack,
    stack_detail
});
wire_struct!(StuckLock {
    lock,
    mode,
    held_ns,
    holder,
    holders,
    waiters,
    readers_waiting,
    writers_waiting,
});
wire_struct!(OrderEdge {
    from,
    to,
    tid,
    goid,
    thread,
    from_stack,
    from_stack_detail,
    to_stack,
    to_stack_detail,
});
wire_struct!(LockOrderInversion {
    locks,
    edges,
    harmless,
    gate
});
wire_struct!(Quantiles {
    count,
    p50,
    p90,
    p99,
    max,
    total
});
wire_struct!(LockSummary {
    lock,
    kind,
    contentions,
    max_waiters,
    wait_ns,
    hold_ns,
    top_waiter_stack,
});
wire_struct!(OtherLocks {
    locks,
    contentions,
    wait_ns,
    hold_ns
});
wire_struct!(FilteredLocks {
    locks,
    contentions,
    waits,
    wait_total_ns,
    wait_max_ns
});
wire_struct!(Summary {
    pid,
    ns_pid,
    duration_ns,
    events,
    dropped,
    futex_wakes,
    futex_waits,
    brief_lock_waits,
    deadlocks,
    timed_cycles,
    lock_order_inversions,
    locks,
    other_locks,
    filtered_out,
    notes,
});

impl Wire for Finding {
    fn put(&self, out: &mut Vec<u8>) {
        match self {
            Finding::Deadlock(deadlock) => {
                out.push(0);
                deadlock.put(out);
            }
            Finding::StuckLock(stuck) => {
                out.push(1);
                stuck.put(out);
            }
            Finding::LockOrderInversion(inversion) => {
                out.push(2);
                inversion.put(out);
            }
        }
    }
    fn get(input: &mut Input<'_>) -> Result<Self, DecodeError> {
        match u8::get(input)? {
            0 => Deadlock::get(input).map(Finding::Deadlock),
            1 => StuckLock::get(input).map(Finding::StuckLock),
            2 => LockOrderInversion::get(input).map(Finding::LockOrderInversion),
            tag => Err(DecodeError::Tag {
                what: "finding",
                tag,
            }),
        }
    }
}

/// Tuples travel as their items in order.
impl<A: Wire, B: Wire> Wire for (A, B) {
    fn put(&self, out: &mut Vec<u8>) {
        self.0.put(out);
        self.1.put(out);
    }
    fn get(input: &mut Input<'_>) -> Result<Self, DecodeError> {
        Ok((A::get(input)?, B::get(input)?))
    }
}

/// A ring-buffer record's bytes: a `u32` length, then the bytes (no per-byte tag).
struct Bytes(Vec<u8>);

impl Wire for Bytes {
    fn put(&self, out: &mut Vec<u8>) {
        put_len(self.0.len(), out);
        out.extend_from_slice(&self.0);
    }
    fn get(input: &mut Input<'_>) -> Result<Self, DecodeError> {
        let len = u32::get(input)? as usize;
        Ok(Self(input.take(len)?.to_vec()))
    }
}

impl Wire for StackWindow {
    /// `ip`, `sp`, then the valid words only (a `u32` count).
    fn put(&self, out: &mut Vec<u8>) {
        self.ip.put(out);
        self.sp.put(out);
        let len = (self.len as usize).min(STACK_WINDOW_WORDS);
        put_len(len, out);
        for word in &self.words[..len] {
            word.put(out);
        }
    }
    fn get(input: &mut Input<'_>) -> Result<Self, DecodeError> {
        let mut window = StackWindow {
            ip: u64::get(input)?,
            sp: u64::get(input)?,
            ..StackWindow::EMPTY
        };
        let len = u32::get(input)?;
        if len as usize > STACK_WINDOW_WORDS {
            return Err(DecodeError::Tag {
                what: "stack window length",
                tag: u8::try_from(len).unwrap_or(u8::MAX),
            });
        }
        window.len = len;
        for word in &mut window.words[..len as usize] {
            *word = u64::get(input)?;
        }
        Ok(window)
    }
}

impl Wire for BriefWaits {
    fn put(&self, out: &mut Vec<u8>) {
        self.count.put(out);
        self.op.put(out);
        self.val.put(out);
    }
    fn get(input: &mut Input<'_>) -> Result<Self, DecodeError> {
        Ok(BriefWaits {
            count: Wire::get(input)?,
            op: Wire::get(input)?,
            val: Wire::get(input)?,
        })
    }
}

wire_struct!(TapeSetup {
    musl,
    rust_std,
    max_locks,
    lock_uprobes,
    go,
    started_ns
});
wire_struct!(TapeCounters {
    dropped,
    futex_wakes,
    futex_waits,
    stack_errors,
    unmatched_returns,
    brief_waits_untracked,
});
wire_struct!(StackKey { stack_id, window });
wire_struct!(ProfileFrame {
    function,
    file,
    line,
    object,
    address
});
wire_struct!(NamedStack {
    names,
    detail,
    frames
});
wire_struct!(TapeNames { locks, stacks });

impl Wire for ProfileSample {
    /// The lock's kind travels as its [`LockKind`] tag.
    fn put(&self, out: &mut Vec<u8>) {
        self.frames.put(out);
        self.lock.put(out);
        self.lock_addr.put(out);
        LockKind::from_name(self.lock_kind)
            .unwrap_or(LockKind::Futex)
            .put(out);
        self.pid.put(out);
        self.comm.put(out);
        self.contentions.put(out);
        self.delay_ns.put(out);
    }
    fn get(input: &mut Input<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            frames: Wire::get(input)?,
            lock: Wire::get(input)?,
            lock_addr: Wire::get(input)?,
            lock_kind: LockKind::get(input)?.as_str(),
            pid: Wire::get(input)?,
            comm: Wire::get(input)?,
            contentions: Wire::get(input)?,
            delay_ns: Wire::get(input)?,
        })
    }
}
wire_struct!(ContentionProfile {
    start_unix_ns,
    duration_ns,
    samples,
    comments
});
wire_struct!(ExportProfiles { waiters, holders });

wire_enum!(NodeKind {
    Thread = 0,
    Goroutine = 1,
    Lock = 2
});
wire_enum!(EdgeKind {
    WaitsFor = 0,
    HeldBy = 1,
    Order = 2
});
wire_struct!(GraphNode {
    id,
    kind,
    label,
    highlighted
});
wire_struct!(GraphEdge {
    from,
    to,
    kind,
    label,
    highlighted
});

impl Wire for GraphSnapshot {
    fn put(&self, out: &mut Vec<u8>) {
        self.title.put(out);
        self.nodes.put(out);
        self.edges.put(out);
        self.edges_left_out.put(out);
    }
    fn get(input: &mut Input<'_>) -> Result<Self, DecodeError> {
        Ok(GraphSnapshot::from_parts(
            Wire::get(input)?,
            Wire::get(input)?,
            Wire::get(input)?,
            Wire::get(input)?,
        ))
    }
}

impl Wire for TapeItem {
    fn put(&self, out: &mut Vec<u8>) {
        match self {
            TapeItem::Record(bytes) => put_record_item(bytes, out),
            TapeItem::Threads(pairs) => {
                out.push(1);
                pairs.put(out);
            }
            TapeItem::BriefWaits(totals) => {
                out.push(2);
                totals.put(out);
            }
            TapeItem::Parked(tid) => {
                out.push(3);
                tid.put(out);
            }
            TapeItem::Counters(counters) => {
                out.push(4);
                counters.put(out);
            }
            TapeItem::End(at_ns) => {
                out.push(5);
                at_ns.put(out);
            }
        }
    }
    fn get(input: &mut Input<'_>) -> Result<Self, DecodeError> {
        match u8::get(input)? {
            0 => Bytes::get(input).map(|b| TapeItem::Record(b.0)),
            1 => Wire::get(input).map(TapeItem::Threads),
            2 => Wire::get(input).map(TapeItem::BriefWaits),
            3 => Wire::get(input).map(TapeItem::Parked),
            4 => Wire::get(input).map(TapeItem::Counters),
            5 => Wire::get(input).map(TapeItem::End),
            tag => Err(DecodeError::Tag {
                what: "tape item",
                tag,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures;

    /// Guards the report against a lossy encoding: every model value a sink sees comes
    /// back equal, the text-only fields (`*_detail`) included.
    #[test]
    fn model_values_round_trip() {
        let summary = fixtures::summary();
        assert_eq!(decode::<Summary>(&encode(&summary)).unwrap(), summary);
        let stuck = StuckLock {
            lock: fixtures::lock(0x40, Some("main.store.mu")),
            mode: HoldMode::Read,
            held_ns: 5,
            holder: StuckHolder {
                goid: Some(7),
                state: HolderState::Exited,
                evidence: Some(HolderEvidence::DeferredUnlock),
                acquired_at: Some("main.leak (main.go:9)".to_owned()),
                stack: vec!["main.leak".to_owned()],
                stack_detail: vec!["main.leak (main.go:9)".to_owned()],
            },
            holders: Vec::new(),
            waiters: 3,
            readers_waiting: 1,
            writers_waiting: 2,
        };
        let findings = [
            Finding::Deadlock(fixtures::deadlock()),
            Finding::LockOrderInversion(fixtures::inversion()),
            Finding::StuckLock(stuck),
        ];
        for finding in findings {
            assert_eq!(decode::<Finding>(&encode(&finding)).unwrap(), finding);
        }
    }

    /// Guards against a damaged payload being taken for a value: a cut payload, a bad tag
    /// and bytes left over are errors, not panics or garbage.
    #[test]
    fn damaged_payloads_are_errors() {
        let bytes = encode(&fixtures::summary());
        for cut in [0, 1, bytes.len() / 2, bytes.len() - 1] {
            assert_eq!(
                decode::<Summary>(&bytes[..cut]),
                Err(DecodeError::Short),
                "{cut}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            decode::<Summary>(&longer),
            Err(DecodeError::Trailing { left: 1 })
        );
        assert!(matches!(
            decode::<Finding>(&[9]),
            Err(DecodeError::Tag {
                what: "finding",
                tag: 9
            })
        ));
        // A huge list length with no items behind it fails without allocating for it.
        assert_eq!(
            decode::<Vec<u64>>(&u32::MAX.to_le_bytes()),
            Err(DecodeError::Short)
        );
    }
}
