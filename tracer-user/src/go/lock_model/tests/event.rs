//! Decoding the wire record, and when a reader blocks.
use tracer_common::GoEvent;

use super::*;
use crate::go::lock_model::event::reader_blocks;

#[test]
fn go_events_convert_and_unknown_ops_are_refused() {
    let raw = GoEvent {
        kind: tracer_common::EventKind::GoLock as u32,
        tid: 7,
        ts_ns: 8,
        goid: 9,
        g: 10,
        addr: 11,
        pc: 12,
        caller: 13,
        value: -1,
        op: GoOp::RLockFast as u32,
        stack_id: -14,
    };
    let ev = GoLockEvent::try_from(&raw).unwrap();
    assert_eq!(
        (ev.op, ev.tid, ev.goid, ev.value, ev.stack_id),
        (GoOp::RLockFast, 7, 9, -1, -14)
    );
    assert!(GoLockEvent::try_from(&GoEvent { op: 0, ..raw }).is_err());
    // Go's int32 arithmetic: the reader blocks when old + 1 < 0, wrapping included.
    assert!(reader_blocks(-2) && reader_blocks(i64::from(WRITER_PENDING)));
    assert!(!reader_blocks(-1) && !reader_blocks(0) && !reader_blocks(5));
    assert!(reader_blocks(i64::from(i32::MAX)));
}
