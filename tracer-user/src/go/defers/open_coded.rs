//! Decoding a function's open-coded defer info (`FUNCDATA_OpenCodedDeferInfo`), and
//! where its pending defers' closures are in a live frame. Pure: bytes and addresses in,
//! addresses out.
//!
//! The compiler (`cmd/compile/internal/ssagen`, `emitOpenDeferInfo`) writes unsigned
//! varints; every "offset" is a distance below `varp`, which on amd64 with frame pointers
//! is the value of `BP` inside the function (the runtime's `frame.varp`: `fp` minus the
//! return address minus the saved `BP`). Bit `i` of the byte `deferBits` is set between
//! the function's `i`-th `defer` statement and the moment its deferred call starts
//! (`openDeferExit` and the panic path clear the bit before calling), so a set bit means
//! "deferred, not yet run".
//!
//! - Go 1.18–1.21 (`runtime.runOpenDeferFrame`): `deferBitsOffset`, `nDefers`, then one
//!   closure offset per defer, last defer first.
//! - Go 1.22 and later (`runtime._panic.initOpenCodedDefers`): `deferBitsOffset`, then
//!   the offset of the first closure slot; slot `i` is `i` words above it.

/// Which of the two encodings a binary uses (by its Go release).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenDeferFormat {
    /// Go 1.18–1.21: a closure offset per defer, in reverse order.
    PerDeferOffsets,
    /// Go 1.22 and later: consecutive closure slots.
    ConsecutiveSlots,
}

impl OpenDeferFormat {
    /// The format of Go release `1.minor`; `None` before 1.18, where this analysis does
    /// not apply (deferred calls took arguments until 1.17's closures-only defers).
    #[must_use]
    pub fn for_minor(minor: u32) -> Option<Self> {
        match minor {
            18..=21 => Some(Self::PerDeferOffsets),
            22.. => Some(Self::ConsecutiveSlots),
            _ => None,
        }
    }
}

/// At most this many open-coded defers per function: `deferBits` is one byte (the
/// compiler falls back to `_defer` records beyond 8).
pub const MAX_OPEN_DEFERS: usize = 8;

/// Where the closure slots are, below `varp`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Slots {
    /// Offset of defer `i`'s closure, indexed by `i`.
    PerDefer(Vec<u32>),
    /// Offset of slot 0; slot `i` is at `varp - first + 8 * i`.
    Consecutive { first: u32 },
}

/// A function's decoded open-coded defer info.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenDeferInfo {
    defer_bits_offset: u32,
    slots: Slots,
}

/// Go's `readvarint` (unsigned LEB128, at most 32 bits).
fn read_uvarint(bytes: &[u8], pos: &mut usize) -> Option<u32> {
    let mut value: u32 = 0;
    for shift in (0..35).step_by(7) {
        let byte = *bytes.get(*pos)?;
        *pos += 1;
        value |= u32::from(byte & 0x7f).checked_shl(shift)?;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

impl OpenDeferInfo {
    /// Decodes the funcdata bytes (as [`crate::go::sym::GoTable::funcdata`] returns
    /// them: trailing bytes are ignored). `None` for a truncated or impossible record
    /// (zero offsets, more than [`MAX_OPEN_DEFERS`] defers).
    #[must_use]
    pub fn decode(format: OpenDeferFormat, bytes: &[u8]) -> Option<Self> {
        let mut pos = 0;
        let defer_bits_offset = read_uvarint(bytes, &mut pos).filter(|&o| o > 0)?;
        let slots = match format {
            OpenDeferFormat::PerDeferOffsets => {
                let n = usize::try_from(read_uvarint(bytes, &mut pos)?).ok()?;
                if n == 0 || n > MAX_OPEN_DEFERS {
                    return None;
                }
                let mut offsets = vec![0; n];
                // Written last defer first.
                for slot in offsets.iter_mut().rev() {
                    *slot = read_uvarint(bytes, &mut pos).filter(|&o| o > 0)?;
                }
                Slots::PerDefer(offsets)
            }
            OpenDeferFormat::ConsecutiveSlots => Slots::Consecutive {
                first: read_uvarint(bytes, &mut pos).filter(|&o| o > 0)?,
            },
        };
        Some(Self {
            defer_bits_offset,
            slots,
        })
    }

    /// Address of the `deferBits` byte in the frame whose `varp` (amd64: `BP`) is `varp`.
    #[must_use]
    pub fn defer_bits_addr(&self, varp: u64) -> Option<u64> {
        varp.checked_sub(u64::from(self.defer_bits_offset))
    }

    /// The pending defers given the frame's `deferBits`: `(defer index, address of its
    /// closure slot)`, by index. Bits without a slot (more bits than the function has
    /// defers, only in a corrupt frame) are left out.
    #[must_use]
    pub fn pending_slots(&self, varp: u64, defer_bits: u8) -> Vec<(usize, u64)> {
        (0..MAX_OPEN_DEFERS)
            .filter(|i| defer_bits & (1 << i) != 0)
            .filter_map(|i| {
                let addr = match &self.slots {
                    Slots::PerDefer(offsets) => varp.checked_sub(u64::from(*offsets.get(i)?))?,
                    Slots::Consecutive { first } => varp
                        .checked_sub(u64::from(*first))?
                        .checked_add(8 * i as u64)?,
                };
                Some((i, addr))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_defer_offsets_are_read_in_reverse() {
        // deferBits at varp-0x11, 2 defers: defer 1 at varp-0x20, defer 0 at varp-0x18.
        let info = OpenDeferInfo::decode(
            OpenDeferFormat::PerDeferOffsets,
            &[0x11, 2, 0x20, 0x18, 0xff],
        )
        .unwrap();
        assert_eq!(info.defer_bits_addr(0x1000), Some(0x1000 - 0x11));
        assert_eq!(info.pending_slots(0x1000, 0b01), vec![(0, 0x1000 - 0x18)]);
        assert_eq!(
            info.pending_slots(0x1000, 0b11),
            vec![(0, 0x1000 - 0x18), (1, 0x1000 - 0x20)]
        );
        assert_eq!(info.pending_slots(0x1000, 0), vec![]);
        // A bit past the function's defers has no slot.
        assert_eq!(info.pending_slots(0x1000, 0b100), vec![]);
    }

    #[test]
    fn consecutive_slots() {
        // Multi-byte varint: 0x81 0x01 = 129.
        let info =
            OpenDeferInfo::decode(OpenDeferFormat::ConsecutiveSlots, &[0x09, 0x81, 0x01]).unwrap();
        assert_eq!(info.defer_bits_addr(0x2000), Some(0x2000 - 9));
        assert_eq!(
            info.pending_slots(0x2000, 0b101),
            vec![(0, 0x2000 - 129), (2, 0x2000 - 129 + 16)]
        );
    }

    #[test]
    fn rejects_malformed_records() {
        use OpenDeferFormat::{ConsecutiveSlots, PerDeferOffsets};
        assert_eq!(OpenDeferInfo::decode(ConsecutiveSlots, &[]), None);
        assert_eq!(OpenDeferInfo::decode(ConsecutiveSlots, &[0x10]), None);
        assert_eq!(OpenDeferInfo::decode(ConsecutiveSlots, &[0, 8]), None);
        assert_eq!(OpenDeferInfo::decode(ConsecutiveSlots, &[0x80, 0x80]), None);
        assert_eq!(OpenDeferInfo::decode(PerDeferOffsets, &[0x10, 0]), None);
        assert_eq!(OpenDeferInfo::decode(PerDeferOffsets, &[0x10, 9]), None);
        assert_eq!(
            OpenDeferInfo::decode(PerDeferOffsets, &[0x10, 2, 0x18]),
            None
        );
        // A varint longer than five bytes.
        assert_eq!(
            OpenDeferInfo::decode(ConsecutiveSlots, &[0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 8]),
            None
        );
    }

    #[test]
    fn format_by_release() {
        assert_eq!(OpenDeferFormat::for_minor(17), None);
        assert_eq!(
            OpenDeferFormat::for_minor(18),
            Some(OpenDeferFormat::PerDeferOffsets)
        );
        assert_eq!(
            OpenDeferFormat::for_minor(21),
            Some(OpenDeferFormat::PerDeferOffsets)
        );
        assert_eq!(
            OpenDeferFormat::for_minor(22),
            Some(OpenDeferFormat::ConsecutiveSlots)
        );
    }
}
