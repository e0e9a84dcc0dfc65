//! An owning `gimli::Reader`, so an `addr2line::Context` can live in a cache next to nothing
//! else.
//!
//! gimli's own owning readers (`EndianArcSlice`) sit behind its `endian-reader` feature, which
//! addr2line does not enable; the borrowing `EndianSlice` would make every cached object
//! self-referential. This reader keeps an `Arc` of the section bytes plus a window into them,
//! and borrows an `EndianSlice` for the actual decoding so the byte-level logic stays gimli's.
//!
//! A reader may also stand for a section with a stretch that has no bytes behind it (a
//! [`Hole`]): [`SharedReader::unit_view`], a `.debug_info` in which one unit is the only
//! compilation unit, at its own offset.

use std::{borrow::Cow, ops::Range, sync::Arc};

use addr2line::gimli::{self, EndianSlice, Endianity as _, Reader, ReaderOffsetId, RunTimeEndian};

/// A window `[range]` into shared section bytes. Offsets are the section's: with a
/// [`Hole`], those past it are `hole.len` further on than their byte in `data`.
#[derive(Clone)]
pub(crate) struct SharedReader {
    data: Arc<[u8]>,
    range: Range<usize>,
    hole: Hole,
    endian: RunTimeEndian,
}

/// Section offsets `[start, start + len)` that have no bytes: reading there finds none
/// (an end of data). Empty for a reader of a whole section.
#[derive(Clone, Copy, Default)]
struct Hole {
    start: usize,
    len: usize,
}

/// The header [`SharedReader::unit_view`] puts before a unit: a DWARF 5 type unit, 32-bit
/// format (length 4, version 2, unit type 1, address size 1, abbreviations offset 4,
/// type signature 8, type offset 4).
const TYPE_UNIT_HEADER_LEN: usize = 24;

impl std::fmt::Debug for SharedReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The bytes themselves are useless in a debug dump and can be megabytes.
        f.debug_struct("SharedReader")
            .field("range", &self.range)
            .finish_non_exhaustive()
    }
}

impl SharedReader {
    pub(crate) fn new(data: Arc<[u8]>, endian: RunTimeEndian) -> Self {
        let range = 0..data.len();
        Self {
            data,
            range,
            hole: Hole::default(),
            endian,
        }
    }

    /// `.debug_info` as `addr2line` should see it to decode only the unit at `[start, end)`
    /// of `info`: that unit, at its own offset, is the only one it finds. The offsets
    /// before it read as one DWARF 5 type unit, which addr2line passes over without
    /// reading its entries, and have no memory behind them but its header; the unit's
    /// bytes are copied. So offsets into `.debug_info` from the other sections (and the
    /// unit's own) stay right. `None` when `[start, end)` is not in `info`, or the unit
    /// starts too close to the section's start for the header or too far for its 32-bit
    /// length.
    pub(crate) fn unit_view(
        info: &[u8],
        start: usize,
        end: usize,
        endian: RunTimeEndian,
    ) -> Option<Self> {
        let unit = info.get(start..end)?;
        if start == 0 {
            return Some(Self::new(Arc::from(unit), endian));
        }
        if start < TYPE_UNIT_HEADER_LEN {
            return None;
        }
        // The initial length counts what follows it; 0xffff_fff0 and above are escapes.
        let length = u32::try_from(start - 4).ok().filter(|&l| l < 0xffff_fff0)?;
        let mut bytes = Vec::with_capacity(TYPE_UNIT_HEADER_LEN + unit.len());
        let mut put = |value: u64, size: usize| {
            let all = if endian.is_big_endian() {
                value.to_be_bytes()
            } else {
                value.to_le_bytes()
            };
            let field = if endian.is_big_endian() {
                &all[8 - size..]
            } else {
                &all[..size]
            };
            bytes.extend_from_slice(field);
        };
        put(u64::from(length), 4);
        put(5, 2);
        put(u64::from(gimli::constants::DW_UT_type.0), 1);
        put(8, 1);
        put(0, 4);
        put(0, 8);
        // The type's entry: right after the header (never read).
        put(TYPE_UNIT_HEADER_LEN as u64, 4);
        bytes.extend_from_slice(unit);
        Some(Self {
            data: Arc::from(bytes),
            range: 0..end,
            hole: Hole {
                start: TYPE_UNIT_HEADER_LEN,
                len: start - TYPE_UNIT_HEADER_LEN,
            },
            endian,
        })
    }

    /// The bytes of `range`, up to the hole if it starts before it (none if it starts in
    /// it).
    fn bytes(&self) -> &[u8] {
        let Range { start, end } = self.range.clone();
        let hole_end = self.hole.start + self.hole.len;
        let stored = if start < self.hole.start {
            start..end.min(self.hole.start)
        } else if start >= hole_end {
            start - self.hole.len..end - self.hole.len
        } else {
            return &[];
        };
        // `range` only ever shrinks from the whole section, so `stored` is in bounds.
        self.data.get(stored).unwrap_or_default()
    }

    fn slice(&self) -> EndianSlice<'_, RunTimeEndian> {
        EndianSlice::new(self.bytes(), self.endian)
    }

    fn eof(&self) -> gimli::Error {
        gimli::Error::UnexpectedEof(self.offset_id())
    }
}

impl Reader for SharedReader {
    type Endian = RunTimeEndian;
    type Offset = usize;

    fn endian(&self) -> RunTimeEndian {
        self.endian
    }

    fn len(&self) -> usize {
        self.range.len()
    }

    fn empty(&mut self) {
        self.range.start = self.range.end;
    }

    fn truncate(&mut self, len: usize) -> gimli::Result<()> {
        if len > self.range.len() {
            return Err(self.eof());
        }
        self.range.end = self.range.start + len;
        Ok(())
    }

    fn offset_from(&self, base: &Self) -> usize {
        // gimli allows a panic when `self` is not inside `base`; saturating keeps us panic-free.
        self.range.start.saturating_sub(base.range.start)
    }

    fn offset_id(&self) -> ReaderOffsetId {
        // The address of the current byte: unique across all sections and readers, which is
        // what gimli needs to map an error back to a section offset.
        ReaderOffsetId(self.data.as_ptr() as u64 + self.range.start as u64)
    }

    fn lookup_offset_id(&self, id: ReaderOffsetId) -> Option<usize> {
        let here = self.offset_id().0;
        let offset = id.0.checked_sub(here)?;
        let offset = usize::try_from(offset).ok()?;
        (offset <= self.range.len()).then_some(offset)
    }

    fn find(&self, byte: u8) -> gimli::Result<usize> {
        self.bytes()
            .iter()
            .position(|&b| b == byte)
            .ok_or_else(|| self.eof())
    }

    fn skip(&mut self, len: usize) -> gimli::Result<()> {
        if len > self.range.len() {
            return Err(self.eof());
        }
        self.range.start += len;
        Ok(())
    }

    fn split(&mut self, len: usize) -> gimli::Result<Self> {
        if len > self.range.len() {
            return Err(self.eof());
        }
        let head = Self {
            data: Arc::clone(&self.data),
            range: self.range.start..self.range.start + len,
            hole: self.hole,
            endian: self.endian,
        };
        self.range.start += len;
        Ok(head)
    }

    fn to_slice(&self) -> gimli::Result<Cow<'_, [u8]>> {
        Ok(Cow::Borrowed(self.bytes()))
    }

    fn to_string(&self) -> gimli::Result<Cow<'_, str>> {
        std::str::from_utf8(self.bytes())
            .map(Cow::Borrowed)
            .map_err(|_| gimli::Error::BadUtf8)
    }

    fn to_string_lossy(&self) -> gimli::Result<Cow<'_, str>> {
        Ok(String::from_utf8_lossy(self.bytes()))
    }

    fn read_slice(&mut self, buf: &mut [u8]) -> gimli::Result<()> {
        let mut slice = self.slice();
        Reader::read_slice(&mut slice, buf)?;
        self.range.start += buf.len();
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]
mod tests {
    use super::*;

    #[test]
    fn reads_and_splits() {
        let data: Arc<[u8]> = Arc::from(&[1u8, 0, 2, 0, 0, 0, b'h', b'i', 0, 9][..]);
        let mut r = SharedReader::new(data, RunTimeEndian::Little);
        assert_eq!(r.read_u16().unwrap(), 1);
        assert_eq!(r.read_u32().unwrap(), 2);
        let base = r.clone();
        let s = r.read_null_terminated_slice().unwrap();
        assert_eq!(s.to_string().unwrap(), "hi");
        assert_eq!(r.offset_from(&base), 3);
        assert_eq!(r.len(), 1);
        assert_eq!(r.lookup_offset_id(r.offset_id()), Some(0));
        assert!(r.skip(2).is_err());
        assert_eq!(r.read_u8().unwrap(), 9);
        assert!(r.read_u8().is_err());
        let mut t = base.clone();
        t.truncate(2).unwrap();
        assert_eq!(t.to_slice().unwrap().as_ref(), b"hi");
        assert!(t.truncate(3).is_err());
        assert_eq!(base.find(0).unwrap(), 2);
    }

    /// A DWARF 4 compile unit header (32-bit) followed by `body`.
    fn unit(body: u8, body_len: usize) -> Vec<u8> {
        let mut bytes = u32::try_from(7 + body_len).unwrap().to_le_bytes().to_vec();
        bytes.extend_from_slice(&4u16.to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
        bytes.push(8);
        bytes.extend(std::iter::repeat_n(body, body_len));
        bytes
    }

    /// Guards the one-unit view of `.debug_info` (`DwarfIndex`): gimli must find exactly
    /// a type unit at 0 (which addr2line skips) and then the chosen unit at its own offset,
    /// with its own bytes, while the stretch before it reads as no bytes at all.
    #[test]
    fn a_unit_view_holds_one_unit_at_its_own_offset() {
        let first = unit(0xaa, 40);
        let second = unit(0xbb, 9);
        let third = unit(0xcc, 30);
        let info: Vec<u8> = [first.clone(), second.clone(), third].concat();
        let (start, end) = (first.len(), first.len() + second.len());
        let view = SharedReader::unit_view(&info, start, end, RunTimeEndian::Little).unwrap();
        assert_eq!(view.len(), end);
        let mut headers = gimli::DebugInfo::from(view.clone()).units();
        let skipped = headers.next().unwrap().unwrap();
        assert_eq!(skipped.offset().as_debug_info_offset().unwrap().0, 0);
        assert!(matches!(skipped.type_(), gimli::UnitType::Type { .. }));
        assert_eq!(skipped.length_including_self(), start);
        let kept = headers.next().unwrap().unwrap();
        assert_eq!(kept.offset().as_debug_info_offset().unwrap().0, start);
        assert_eq!(kept.version(), 4);
        assert!(matches!(kept.type_(), gimli::UnitType::Compilation));
        let mut entries = kept.range_from(gimli::UnitOffset(11)..).unwrap();
        assert_eq!(entries.len(), 9);
        assert_eq!(entries.to_slice().unwrap().as_ref(), &[0xbb; 9]);
        assert_eq!(entries.read_u8().unwrap(), 0xbb);
        assert!(headers.next().unwrap().is_none());
        // The hole reads as the end of the data, not as some other unit's bytes.
        let mut in_hole = view.clone();
        in_hole.skip(TYPE_UNIT_HEADER_LEN + 1).unwrap();
        assert!(in_hole.read_u8().is_err());
        // The first unit needs no header; one too close to the start cannot have one.
        let first_view = SharedReader::unit_view(&info, 0, first.len(), RunTimeEndian::Little);
        assert_eq!(first_view.unwrap().len(), first.len());
        assert!(SharedReader::unit_view(&info, 10, 20, RunTimeEndian::Little).is_none());
        assert!(
            SharedReader::unit_view(&info, start, info.len() + 1, RunTimeEndian::Little).is_none()
        );
    }
}
