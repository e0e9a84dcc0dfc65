//! An owning `gimli::Reader`, so an `addr2line::Context` can live in a cache next to nothing
//! else.
//!
//! gimli's own owning readers (`EndianArcSlice`) sit behind its `endian-reader` feature, which
//! addr2line does not enable; the borrowing `EndianSlice` would make every cached object
//! self-referential. This reader keeps an `Arc` of the section bytes plus a window into them,
//! and borrows an `EndianSlice` for the actual decoding so the byte-level logic stays gimli's.

use std::{borrow::Cow, ops::Range, sync::Arc};

use addr2line::gimli::{self, EndianSlice, Reader, ReaderOffsetId, RunTimeEndian};

/// A window `[range]` into shared section bytes.
#[derive(Clone)]
pub(crate) struct SharedReader {
    data: Arc<[u8]>,
    range: Range<usize>,
    endian: RunTimeEndian,
}

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
            endian,
        }
    }

    fn bytes(&self) -> &[u8] {
        // `range` only ever shrinks from `0..data.len()`, so it is always in bounds.
        self.data.get(self.range.clone()).unwrap_or_default()
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
}
