//! Where the fields of `runtime._defer` are: the records of the defers that are not
//! open-coded (a `defer` in a loop, more than 8 defers, or too many returns), which the
//! runtime chains from `g._defer`, innermost first.
//!
//! From DWARF when the binary has it, else a table of the amd64 layouts written from the
//! history of `src/runtime/runtime2.go`:
//!
//! | Go        | fields                                                      | `fn` | `link` | `openDefer` |
//! |-----------|-------------------------------------------------------------|------|--------|-------------|
//! | 1.18–1.21 | `started heap openDefer bool; sp pc; fn; _panic; link; ...` | 24   | 40     | 2           |
//! | 1.22      | `heap bool; sp pc; fn; link`                                | 24   | 32     | —           |
//! | 1.23–1.27 | `heap rangefunc bool; sp pc; fn; link; head`                | 24   | 32     | —           |
//!
//! The 1.19 and 1.25 rows are checked against DWARF by `tests/integration/go_defers.rs`.
//! Before 1.22 a frame with open-coded defers gets a record (`openDefer` set, `fn` nil)
//! while a panic runs its defers; those records are skipped, as that frame's defers are
//! read from the frame itself.

/// Offset of `runtime.g._defer` (after `stack`, `stackguard0`, `stackguard1`, `_panic`),
/// the same in Go 1.18–1.27.
pub const G_DEFER_OFFSET: u64 = 40;

/// Where [`DeferRecordLayout`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayoutSource {
    /// The binary's DWARF (`runtime._defer` members).
    Dwarf,
    /// The per-release table.
    VersionTable,
}

/// Offsets of the `runtime._defer` fields the walk reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeferRecordLayout {
    /// `fn func()`: the deferred closure (a funcval pointer).
    pub fn_offset: u64,
    /// `link *_defer`: the next (outer) record.
    pub link_offset: u64,
    /// `openDefer bool` (Go 1.18–1.21): the record stands for a frame's open-coded defers.
    pub open_defer_offset: Option<u64>,
    /// How it was found.
    pub source: LayoutSource,
}

impl DeferRecordLayout {
    /// The table's layout for Go `1.minor`; `None` outside 1.18–1.27.
    #[must_use]
    pub fn for_minor(minor: u32) -> Option<Self> {
        let (link_offset, open_defer_offset) = match minor {
            18..=21 => (40, Some(2)),
            22..=27 => (32, None),
            _ => return None,
        };
        Some(Self {
            fn_offset: 24,
            link_offset,
            open_defer_offset,
            source: LayoutSource::VersionTable,
        })
    }

    /// The layout from the binary's DWARF, when it describes `runtime._defer` with `fn`
    /// and `link`.
    #[must_use]
    pub fn from_dwarf(elf: &[u8]) -> Option<Self> {
        let [fn_offset, link_offset, open_defer_offset] =
            crate::go::probe::go_struct_member_offsets(
                elf,
                "runtime._defer",
                ["fn", "link", "openDefer"],
            )?;
        Some(Self {
            fn_offset: fn_offset?,
            link_offset: link_offset?,
            open_defer_offset,
            source: LayoutSource::Dwarf,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let at = |m| DeferRecordLayout::for_minor(m).map(|l| (l.fn_offset, l.link_offset));
        assert_eq!(at(17), None);
        assert_eq!(at(18), Some((24, 40)));
        assert_eq!(at(21), Some((24, 40)));
        assert_eq!(at(22), Some((24, 32)));
        assert_eq!(at(27), Some((24, 32)));
        assert_eq!(at(28), None);
        assert_eq!(
            DeferRecordLayout::for_minor(19).and_then(|l| l.open_defer_offset),
            Some(2)
        );
        assert_eq!(
            DeferRecordLayout::for_minor(25).and_then(|l| l.open_defer_offset),
            None
        );
    }
}
