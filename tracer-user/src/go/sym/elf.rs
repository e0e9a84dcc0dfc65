//! Finding the pclntab and `go:func.*` in an ELF file, with or without section headers.
use std::{ops::Range, sync::Arc};

use object::{Object as _, ObjectSection as _, ObjectSegment as _, ObjectSymbol as _};

use super::{GoFuncRegion, GoSymError, GoTable, Layout, PclnVersion};
use crate::target::{FileBytes, FileSlice};

/// The file a table is read from, and how the table keeps the parts it needs.
#[derive(Clone, Copy)]
pub(super) enum Source<'a> {
    /// A mapped file: the table keeps views of it.
    Shared(&'a Arc<FileBytes>),
    /// Borrowed bytes: the table keeps copies of its parts.
    Borrowed(&'a [u8]),
}

impl Source<'_> {
    fn bytes(&self) -> &[u8] {
        match self {
            Self::Shared(file) => file,
            Self::Borrowed(bytes) => bytes,
        }
    }

    /// The bytes of `range` of the file to keep (empty when out of range, which the
    /// callers have ruled out).
    fn keep(&self, range: Range<usize>) -> FileSlice {
        match self {
            Self::Shared(file) => file.slice(range).unwrap_or_else(|| FileSlice::copy_of(&[])),
            Self::Borrowed(bytes) => FileSlice::copy_of(bytes.get(range).unwrap_or_default()),
        }
    }
}

/// A loadable segment's address and file bytes.
struct Segment {
    address: u64,
    file_offset: usize,
    file_size: usize,
    /// `PF_W`: where variables such as `runtime.firstmoduledata` live.
    writable: bool,
}

/// The file bytes from virtual address `addr` to the end of its segment's file data.
fn bytes_at_addr<'a>(data: &'a [u8], segments: &[Segment], addr: u64) -> Option<&'a [u8]> {
    data.get(range_at_addr(data, segments, addr)?)
}

/// Where in the file [`bytes_at_addr`] finds its bytes.
fn range_at_addr(data: &[u8], segments: &[Segment], addr: u64) -> Option<Range<usize>> {
    let seg = segments
        .iter()
        .find(|s| addr >= s.address && addr - s.address < s.file_size as u64)?;
    let start = seg
        .file_offset
        .checked_add(usize::try_from(addr - seg.address).ok()?)?;
    let end = seg.file_offset.checked_add(seg.file_size)?;
    (start <= end && end <= data.len()).then_some(start..end)
}

/// Virtual address of file offset `off`.
fn addr_of_offset(segments: &[Segment], off: usize) -> Option<u64> {
    let seg = segments
        .iter()
        .find(|s| off >= s.file_offset && off - s.file_offset < s.file_size)?;
    seg.address.checked_add((off - seg.file_offset) as u64)
}

pub(super) fn load(source: Source<'_>) -> Result<GoTable, GoSymError> {
    let data = source.bytes();
    let file = object::File::parse(data).map_err(GoSymError::Object)?;
    if file.format() != object::BinaryFormat::Elf {
        return Err(GoSymError::NotElf);
    }
    let segments: Vec<Segment> = file
        .segments()
        .filter_map(|seg| {
            let (offset, size) = seg.file_range();
            let file_offset = usize::try_from(offset).ok()?;
            let file_size = usize::try_from(size).ok()?;
            // Ignore segments that claim bytes past the end of the file.
            let writable = match seg.flags() {
                object::SegmentFlags::Elf { p_flags } => p_flags & object::elf::PF_W != 0,
                _ => false,
            };
            (file_offset.checked_add(file_size)? <= data.len()).then_some(Segment {
                address: seg.address(),
                file_offset,
                file_size,
                writable,
            })
        })
        .collect();

    let (mut table, pclntab_addr) = match file.section_by_name(".gopclntab") {
        Some(section) => {
            // The section's bytes where the file holds them (none for a `NOBITS` one,
            // which then fails as a truncated table).
            let range = section
                .file_range()
                .and_then(|(offset, size)| {
                    let start = usize::try_from(offset).ok()?;
                    let end = start.checked_add(usize::try_from(size).ok()?)?;
                    (end <= data.len()).then_some(start..end)
                })
                .unwrap_or(0..0);
            let bytes = data.get(range.clone()).unwrap_or_default();
            (
                GoTable::parse(bytes, || source.keep(range))?,
                Some(section.address()),
            )
        }
        None => scan_for_pclntab(&source, &segments)?,
    };

    // go:func.* (go.func.* before Go 1.20) by symbol if the symbol table survived, else
    // through runtime.firstmoduledata.
    let gofunc_addr = file
        .symbols()
        .find(|sym| matches!(sym.name(), Ok("go:func.*" | "go.func.*")))
        .map(|sym| sym.address())
        .or_else(|| find_gofunc_via_moduledata(data, &segments, &table, pclntab_addr?));
    if let Some(addr) = gofunc_addr
        && let Some(range) = range_at_addr(data, &segments, addr)
    {
        table.gofunc = Some(GoFuncRegion {
            bytes: source.keep(range),
        });
    }
    Ok(table)
}

/// Whether `bytes` start like a Go 1.18+ pclntab header.
fn plausible_header(bytes: &[u8]) -> bool {
    let Some(head) = bytes.get(..8) else {
        return false;
    };
    let word = [head[0], head[1], head[2], head[3]];
    let known = |m: u32| matches!(m, super::MAGIC_GO118 | super::MAGIC_GO120);
    (known(u32::from_le_bytes(word)) || known(u32::from_be_bytes(word)))
        && head[4] == 0
        && head[5] == 0
        && matches!(head[6], 1 | 2 | 4)
        && matches!(head[7], 4 | 8)
}

/// Without section headers: the first offset (4-aligned, as the linker aligns the
/// header) where a plausible header parses into a table with readable functions.
fn scan_for_pclntab(
    source: &Source<'_>,
    segments: &[Segment],
) -> Result<(GoTable, Option<u64>), GoSymError> {
    let data = source.bytes();
    let mut off = 0;
    while off + 8 <= data.len() {
        if plausible_header(&data[off..]) {
            // Limit the copy to the end of the containing segment when we know it.
            let end = segments
                .iter()
                .find(|s| off >= s.file_offset && off - s.file_offset < s.file_size)
                .map_or(data.len(), |s| s.file_offset + s.file_size);
            if let Ok(table) = GoTable::parse(&data[off..end], || source.keep(off..end))
                && table.nfunc > 0
                && table.functions().next().is_some()
            {
                return Ok((table, addr_of_offset(segments, off)));
            }
        }
        off += 4;
    }
    Err(GoSymError::NotFound)
}

/// `runtime.firstmoduledata` starts with `pcHeader *pcHeader`, then the slices
/// funcnametab, cutab, filetab, pctab, pclntable, ftab (three words each), findfunctab,
/// minpc, maxpc, text, etext, ... We look for a word-aligned pointer to the pclntab whose
/// next word points at its function name table and whose `text` is `textStart`, then
/// read `gofunc`, whose slot depends on the release (Go 1.20 added covctrs/ecovctrs).
fn find_gofunc_via_moduledata(
    data: &[u8],
    segments: &[Segment],
    table: &GoTable,
    pclntab_addr: u64,
) -> Option<u64> {
    let layout: Layout = table.layout;
    let word = usize::from(layout.ptr_size);
    let funcnametab_addr = pclntab_addr.checked_add(table.funcnametab as u64)?;
    let gofunc_slot = match table.version {
        // text(22) etext noptrdata enoptrdata data edata bss ebss noptrbss enoptrbss
        // end gcdata gcbss types etypes rodata gofunc(38)
        PclnVersion::Go118 => 38,
        // ... enoptrbss covctrs ecovctrs end ... rodata gofunc(40)
        PclnVersion::Go120 => 40,
    };
    // `firstmoduledata` is a variable: the writable segments are searched first, so a
    // mapped executable's code and read-only data (most of the file) are not read at all.
    let (writable, read_only): (Vec<&Segment>, Vec<&Segment>) =
        segments.iter().partition(|s| s.writable);
    for seg in writable.into_iter().chain(read_only) {
        let bytes = data.get(seg.file_offset..seg.file_offset + seg.file_size)?;
        let mut off = 0;
        while off + (gofunc_slot + 1) * word <= bytes.len() {
            let at = |slot: usize| layout.word_at(bytes, off + slot * word);
            if at(0) == Some(pclntab_addr)
                && at(1) == Some(funcnametab_addr)
                && at(22) == Some(table.text_start)
            {
                let gofunc = at(gofunc_slot)?;
                // rodata <= gofunc, and it must be mapped from the file.
                let rodata = at(gofunc_slot - 1)?;
                if gofunc >= rodata && bytes_at_addr(data, segments, gofunc).is_some() {
                    return Some(gofunc);
                }
            }
            off += word;
        }
    }
    None
}
