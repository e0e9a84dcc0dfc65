//! Where the Go runtime keeps what a goroutine snapshot reads in `runtime.g` (amd64): the
//! stack bounds, the saved scheduling context (`sched`, a `runtime.gobuf`), the status,
//! the id and the time it blocked.
//!
//! From the binary's DWARF when present (one pass over `runtime.g`, `runtime.gobuf` and
//! `runtime.stack`, through [`crate::go::probe::go_struct_layouts`]), else from this
//! table, written from the history of `src/runtime/runtime2.go`:
//!
//! | Go        | change                                         | `sched.bp` | `atomicstatus` | `goid` | `waitsince` |
//! |-----------|------------------------------------------------|------------|----------------|--------|-------------|
//! | 1.18–1.22 | `gobuf` = `sp pc g ctxt ret lr bp`             | 56+48      | 144            | 152    | 168         |
//! | 1.23–1.24 | `g.syscallbp` added after `syscallpc`          | 56+48      | 152            | 160    | 176         |
//! | 1.25–1.27 | `gobuf.ret` removed                            | 56+40      | 144            | 152    | 168         |
//!
//! In every row `stack.lo` is at 0, `stack.hi` at 8, `_defer` at 40, `sched` at 56 with
//! `sp` at +0 and `pc` at +8. The 1.19 and 1.25 rows are checked against DWARF by
//! `tests/integration/go_goroutine_layout.rs`; 1.26 and 1.27 follow the development tree.
use super::super::probe::{OffsetSource, go_minor_version, go_struct_layouts};

/// Offsets in `runtime.g` (from the start of the `g`) of the fields a snapshot reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GoroutineLayout {
    /// `g.stack.lo`: the lowest address of the goroutine's stack.
    pub stack_lo: u64,
    /// `g.stack.hi`: one past its highest address.
    pub stack_hi: u64,
    /// `g._defer`: the innermost deferred call (`*runtime._defer`).
    pub defer: u64,
    /// `g.sched.sp`: the stack pointer saved when the goroutine last stopped running.
    pub sched_sp: u64,
    /// `g.sched.pc`: the pc saved with it.
    pub sched_pc: u64,
    /// `g.sched.bp`: the frame pointer saved with it.
    pub sched_bp: u64,
    /// `g.atomicstatus` (`uint32`).
    pub atomicstatus: u64,
    /// `g.goid`.
    pub goid: u64,
    /// `g.waitsince`: when it blocked (`CLOCK_MONOTONIC` ns), 0 when unknown.
    pub waitsince: u64,
    /// Where the offsets came from.
    pub source: OffsetSource,
}

impl GoroutineLayout {
    /// How many bytes from the start of a `g` hold every field above: one read of this
    /// prefix gives them all.
    #[must_use]
    pub fn prefix_len(&self) -> usize {
        let fields = [
            self.stack_lo,
            self.stack_hi,
            self.defer,
            self.sched_sp,
            self.sched_pc,
            self.sched_bp,
            self.goid,
            self.waitsince,
        ];
        // All are 8-byte words but `atomicstatus`, a `uint32`.
        let end = fields
            .iter()
            .map(|&o| o + 8)
            .chain([self.atomicstatus + 4])
            .max()
            .unwrap_or(0);
        usize::try_from(end).unwrap_or(usize::MAX)
    }
}

/// Largest offset accepted from DWARF: `runtime.g` is a few hundred bytes, so anything
/// beyond this is a misread, and it bounds the read of a `g`'s prefix.
const MAX_G_OFFSET: u64 = 4096;

/// The layout of a Go binary's `runtime.g`: from its DWARF when present, else from the
/// table for `go_version` (`go1.19.8`, `devel go1.24-…`). `None` when neither answers:
/// no DWARF (or DWARF without one of the fields) and a release outside the table.
#[must_use]
pub fn goroutine_layout(elf: &[u8], go_version: &str) -> Option<GoroutineLayout> {
    goroutine_layout_from_dwarf(elf).or_else(|| goroutine_layout_for_version(go_version))
}

/// The layout from the binary's DWARF alone.
#[must_use]
pub fn goroutine_layout_from_dwarf(elf: &[u8]) -> Option<GoroutineLayout> {
    let g_members: &[&str] = &[
        "stack",
        "_defer",
        "sched",
        "atomicstatus",
        "goid",
        "waitsince",
    ];
    let gobuf_members: &[&str] = &["sp", "pc", "bp"];
    let stack_members: &[&str] = &["lo", "hi"];
    let found = go_struct_layouts(
        elf,
        &[
            ("runtime.g", g_members),
            ("runtime.gobuf", gobuf_members),
            ("runtime.stack", stack_members),
        ],
    )?;
    let [g, gobuf, stack] = <[_; 3]>::try_from(found).ok()?;
    let (g, gobuf, stack) = (g?, gobuf?, stack?);
    let [
        Some(stack_at),
        Some(defer),
        Some(sched),
        Some(atomicstatus),
        Some(goid),
        Some(waitsince),
    ] = <[_; 6]>::try_from(g).ok()?
    else {
        return None;
    };
    let [Some(sp), Some(pc), Some(bp)] = <[_; 3]>::try_from(gobuf).ok()? else {
        return None;
    };
    let [Some(lo), Some(hi)] = <[_; 2]>::try_from(stack).ok()? else {
        return None;
    };
    let layout = GoroutineLayout {
        stack_lo: stack_at.checked_add(lo)?,
        stack_hi: stack_at.checked_add(hi)?,
        defer,
        sched_sp: sched.checked_add(sp)?,
        sched_pc: sched.checked_add(pc)?,
        sched_bp: sched.checked_add(bp)?,
        atomicstatus,
        goid,
        waitsince,
        source: OffsetSource::Dwarf,
    };
    (layout.prefix_len() as u64 <= MAX_G_OFFSET).then_some(layout)
}

/// The table's layout (amd64) for a Go version string; `None` outside Go 1.18–1.27.
#[must_use]
pub fn goroutine_layout_for_version(go_version: &str) -> Option<GoroutineLayout> {
    const SCHED: u64 = 56;
    let (gobuf_bp, atomicstatus, goid, waitsince) = match go_minor_version(go_version)? {
        18..=22 => (48, 144, 152, 168),
        23 | 24 => (48, 152, 160, 176),
        25..=27 => (40, 144, 152, 168),
        _ => return None,
    };
    Some(GoroutineLayout {
        stack_lo: 0,
        stack_hi: 8,
        defer: 40,
        sched_sp: SCHED,
        sched_pc: SCHED + 8,
        sched_bp: SCHED + gobuf_bp,
        atomicstatus,
        goid,
        waitsince,
        source: OffsetSource::VersionTable,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the table rows (the stripped binaries' only source) against a typo; the
    /// rows themselves are checked against DWARF by the integration test.
    #[test]
    fn version_table_rows() {
        let row = |v: &str| {
            goroutine_layout_for_version(v)
                .map(|l| (l.sched_bp, l.atomicstatus, l.goid, l.waitsince))
        };
        assert_eq!(row("go1.18"), Some((104, 144, 152, 168)));
        assert_eq!(row("go1.22.12"), Some((104, 144, 152, 168)));
        assert_eq!(row("go1.23.1"), Some((104, 152, 160, 176)));
        assert_eq!(row("devel go1.24-abc"), Some((104, 152, 160, 176)));
        assert_eq!(row("go1.25.5"), Some((96, 144, 152, 168)));
        assert_eq!(row("go1.27"), Some((96, 144, 152, 168)));
        assert_eq!(row("go1.17"), None);
        assert_eq!(row("go1.28"), None);
        let l = goroutine_layout_for_version("go1.19").expect("a row");
        assert_eq!(
            (l.stack_lo, l.stack_hi, l.defer, l.sched_sp, l.sched_pc),
            (0, 8, 40, 56, 64)
        );
        assert_eq!(l.source, OffsetSource::VersionTable);
        // waitsince (168) is the last field read: 176 bytes.
        assert_eq!(l.prefix_len(), 176);
        assert_eq!(
            goroutine_layout_for_version("go1.23").map(|l| l.prefix_len()),
            Some(184)
        );
    }

    #[test]
    fn no_layout_for_garbage() {
        assert_eq!(goroutine_layout_from_dwarf(b"nope"), None);
        assert_eq!(goroutine_layout(b"nope", "go2"), None);
        assert_eq!(
            goroutine_layout(b"nope", "go1.20").map(|l| l.source),
            Some(OffsetSource::VersionTable)
        );
    }
}
