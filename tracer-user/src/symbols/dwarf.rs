//! An owning `gimli::Reader`, so an `addr2line::Context` can live in a cache next to nothing
//! else.
//!
//! gimli's own owning readers (`EndianArcSlice`) sit behind its `endian-reader` feature, which
//! addr2line does not enable; the borrowing `EndianSlice` would make every cached object
//! self-referential. This reader keeps an `Arc` of the section bytes plus a window into them,
//! and borrows an `EndianSlice` for the actual decoding so the byte-level logic stays gimli's.
//!
//! A reader may also be a view of `.debug_info` in which only some units are there
//! ([`SharedReader::units_view`]), for `addr2line` to decode those alone.

use std::{borrow::Cow, ops::Range, sync::Arc};

use addr2line::gimli::{self, EndianSlice, Endianity as _, Reader, ReaderOffsetId, RunTimeEndian};

/// A window `[range]` into shared section bytes; with a [`View`], only what the view
/// keeps of them.
#[derive(Clone)]
pub(crate) struct SharedReader {
    data: Arc<[u8]>,
    range: Range<usize>,
    view: Option<Arc<View>>,
    endian: RunTimeEndian,
}

/// What a view of `.debug_info` keeps: some units, at their own offsets (`data`'s bytes),
/// and before each stretch of units left out, a type unit's header that spans it (from
/// `headers`). Offsets in no segment have no bytes: reading there finds none.
struct View {
    headers: Vec<u8>,
    /// Sorted, not overlapping.
    segments: Vec<Segment>,
}

/// Section offsets `[start, end)` of a [`View`], and where their bytes are.
#[derive(Clone, Copy)]
struct Segment {
    start: usize,
    end: usize,
    /// `None`: the section's own bytes; `Some(at)`: `View::headers[at..]`.
    header_at: Option<usize>,
}

/// The header a view puts before a stretch of units left out: a DWARF 5 type unit,
/// 32-bit format (length 4, version 2, unit type 1, address size 1, abbreviations offset
/// 4, type signature 8, type offset 4). addr2line passes over type units without reading
/// their entries.
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
            view: None,
            endian,
        }
    }

    /// This reader of the whole of `.debug_info` as `addr2line` should see it to decode
    /// only `units` (their `[start, end)` offsets, sorted, not overlapping): those, at
    /// their own offsets, and no other unit, so that offsets into `.debug_info` from the
    /// other sections and from the units stay right. Each stretch of units left out reads
    /// as one type unit with nothing behind its header; one too short for the header
    /// (under 24 bytes) is kept. Nothing is copied but the headers. `None` when this is
    /// not a whole section, `units` are not units of it as described, or a stretch left
    /// out is too long for a 32-bit unit length.
    pub(crate) fn units_view(&self, units: &[(usize, usize)]) -> Option<Self> {
        if self.view.is_some() || self.range != (0..self.data.len()) {
            return None;
        }
        let mut headers = Vec::new();
        let mut segments: Vec<Segment> = Vec::new();
        let mut kept_to = 0;
        for &(start, end) in units {
            if start < kept_to || end <= start || end > self.data.len() {
                return None;
            }
            let left_out = start - kept_to;
            if left_out >= TYPE_UNIT_HEADER_LEN {
                let header_at = headers.len();
                type_unit_header(&mut headers, left_out, self.endian)?;
                segments.push(Segment {
                    start: kept_to,
                    end: kept_to + TYPE_UNIT_HEADER_LEN,
                    header_at: Some(header_at),
                });
                segments.push(Segment {
                    start,
                    end,
                    header_at: None,
                });
            } else {
                // Too short to span with a header: the units there are kept too.
                match segments.last_mut() {
                    Some(last) if last.header_at.is_none() && last.end == kept_to => {
                        last.end = end;
                    }
                    _ => segments.push(Segment {
                        start: kept_to,
                        end,
                        header_at: None,
                    }),
                }
            }
            kept_to = end;
        }
        Some(Self {
            data: Arc::clone(&self.data),
            range: 0..kept_to,
            view: Some(Arc::new(View { headers, segments })),
            endian: self.endian,
        })
    }

    /// The bytes of `range`, up to the end of the segment it starts in (none if it starts
    /// in no segment).
    fn bytes(&self) -> &[u8] {
        let Range { start, end } = self.range.clone();
        let Some(view) = &self.view else {
            // `range` only ever shrinks from the whole section, so it is in bounds.
            return self.data.get(start..end).unwrap_or_default();
        };
        let after = view.segments.partition_point(|s| s.start <= start);
        let Some(segment) = after.checked_sub(1).and_then(|i| view.segments.get(i)) else {
            return &[];
        };
        if start >= segment.end {
            return &[];
        }
        let stop = end.min(segment.end);
        match segment.header_at {
            None => self.data.get(start..stop).unwrap_or_default(),
            Some(at) => {
                let from = at + (start - segment.start);
                view.headers
                    .get(from..from + (stop - start))
                    .unwrap_or_default()
            }
        }
    }

    fn slice(&self) -> EndianSlice<'_, RunTimeEndian> {
        EndianSlice::new(self.bytes(), self.endian)
    }

    fn eof(&self) -> gimli::Error {
        gimli::Error::UnexpectedEof(self.offset_id())
    }
}

/// Appends a type unit header whose unit spans `len` bytes (the header included); `None`
/// if that is too long for a 32-bit unit length.
fn type_unit_header(out: &mut Vec<u8>, len: usize, endian: RunTimeEndian) -> Option<()> {
    // The initial length counts what follows it; 0xffff_fff0 and above are escapes.
    let length = u32::try_from(len - 4).ok().filter(|&l| l < 0xffff_fff0)?;
    let mut put = |value: u64, size: usize| {
        let (all, field) = if endian.is_big_endian() {
            (value.to_be_bytes(), 8 - size..8)
        } else {
            (value.to_le_bytes(), 0..size)
        };
        out.extend_from_slice(&all[field]);
    };
    put(u64::from(length), 4);
    put(5, 2);
    put(u64::from(gimli::constants::DW_UT_type.0), 1);
    put(8, 1);
    put(0, 4);
    put(0, 8);
    // The type's entry: right after the header (never read).
    put(TYPE_UNIT_HEADER_LEN as u64, 4);
    Some(())
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
            view: self.view.clone(),
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

    /// The units gimli finds in `reader`: offset, whether a type unit, and the bytes of
    /// its entries (empty for a type unit: they are never read).
    fn units_in(reader: &SharedReader) -> Vec<(usize, bool, Vec<u8>)> {
        let mut found = Vec::new();
        let mut headers = gimli::DebugInfo::from(reader.clone()).units();
        while let Some(header) = headers.next().unwrap() {
            let offset = header.offset().as_debug_info_offset().unwrap().0;
            let is_type = matches!(header.type_(), gimli::UnitType::Type { .. });
            let entries = if is_type {
                Vec::new()
            } else {
                let entries = header.range_from(gimli::UnitOffset(11)..).unwrap();
                assert_eq!(entries.to_slice().unwrap().len(), entries.len());
                entries.to_slice().unwrap().into_owned()
            };
            found.push((offset, is_type, entries));
        }
        found
    }

    /// Guards the views of `.debug_info` (`DwarfIndex`): gimli must find the units kept, at
    /// their own offsets and with their own bytes, and in place of each stretch left out a
    /// type unit (which addr2line skips) whose bytes read as none; a stretch too short for
    /// that header is kept.
    #[test]
    fn a_view_holds_the_units_kept_at_their_own_offsets() {
        let bodies: [(u8, usize); 5] = [(0xa1, 40), (0xa2, 20), (0xa3, 9), (0xa4, 30), (0xa5, 5)];
        let units: Vec<Vec<u8>> = bodies.iter().map(|&(b, n)| unit(b, n)).collect();
        let mut bounds = Vec::new();
        let mut at = 0;
        for u in &units {
            bounds.push((at, at + u.len()));
            at += u.len();
        }
        let info = SharedReader::new(Arc::from(units.concat()), RunTimeEndian::Little);
        let body = |i: usize| vec![bodies[i].0; bodies[i].1];

        // One unit: everything before it is one type unit.
        let view = info.units_view(&[bounds[1]]).unwrap();
        assert_eq!(view.len(), bounds[1].1);
        assert_eq!(
            units_in(&view),
            vec![(0, true, vec![]), (bounds[1].0, false, body(1))]
        );
        let mut in_hole = view.clone();
        in_hole.skip(TYPE_UNIT_HEADER_LEN + 1).unwrap();
        assert!(
            in_hole.read_u8().is_err(),
            "a left-out unit's bytes were read"
        );

        // Units 1 and 3: unit 2 (20 bytes) is too short to span, so it is kept.
        let view = info.units_view(&[bounds[1], bounds[3]]).unwrap();
        assert_eq!(
            units_in(&view),
            vec![
                (0, true, vec![]),
                (bounds[1].0, false, body(1)),
                (bounds[2].0, false, body(2)),
                (bounds[3].0, false, body(3)),
            ]
        );

        // Units 0 and 3: units 1 and 2 read as one type unit; nothing after unit 3.
        let view = info.units_view(&[bounds[0], bounds[3]]).unwrap();
        assert_eq!(view.len(), bounds[3].1);
        assert_eq!(
            units_in(&view),
            vec![
                (0, false, body(0)),
                (bounds[1].0, true, vec![]),
                (bounds[3].0, false, body(3)),
            ]
        );

        // Not units of the section as described.
        assert!(info.units_view(&[bounds[3], bounds[1]]).is_none());
        assert!(info.units_view(&[(bounds[4].0, info.len() + 1)]).is_none());
    }
}
