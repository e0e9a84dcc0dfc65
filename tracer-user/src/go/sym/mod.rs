//! Go symbol tables: a bounds-checked parser for `.gopclntab` (Go 1.18 and later) and
//! `.go.buildinfo`, written against `src/debug/gosym/pclntab.go` and
//! `src/runtime/symtab.go`.
//!
//! The pclntab is what the Go runtime itself uses for tracebacks, so it survives
//! `-ldflags='-s -w'`; this is how we name functions and source lines in stripped Go
//! binaries. Layouts handled:
//! - Go 1.18–1.19 (magic `0xfffffff0`) and Go 1.20+ (magic `0xfffffff1`), 32- and 64-bit,
//!   either byte order. Go 1.2–1.17 tables are rejected with
//!   [`GoSymError::UnsupportedVersion`].
//! - Inlined frames come from the inline tree (`FUNCDATA_InlTree`, indexed by
//!   `PCDATA_InlTreeIndex`). Its funcdata offsets are relative to `go:func.*`
//!   (`moduledata.gofunc`, named `go.func.*` before Go 1.20), found through the symbol
//!   when present and otherwise through `runtime.firstmoduledata`, which is located by
//!   scanning the loaded data for a pointer to the pclntab. Without either,
//!   [`GoTable::frames`] returns only the physical frame.
//!
//! Not handled: Go binaries with several text sections (very large ppc64/arm64 programs,
//! whose `textOff` adjustment needs `moduledata.textsectmap`), and shared-library
//! (`-buildmode=shared`) modules other than the first.
//!
//! Everything here treats the file as hostile: every offset is checked, no size read
//! from the file is used to allocate, and all loops are bounded by the data they walk.
mod buildinfo;
mod elf;
#[cfg(test)]
mod tests;

use std::sync::Arc;

pub use buildinfo::{GoBuildInfo, go_build_info};

use crate::target::{FileBytes, FileSlice};

/// What can go wrong while finding or parsing a pclntab.
#[derive(Debug, thiserror::Error)]
pub enum GoSymError {
    /// The object file could not be parsed at all.
    #[error("cannot parse the object file")]
    Object(#[source] object::Error),
    /// The file parses but is not ELF.
    #[error("not an elf file")]
    NotElf,
    /// Neither a `.gopclntab` section nor a plausible pclntab header was found.
    #[error("no go pclntab found (no .gopclntab section and no pclntab header in the file)")]
    NotFound,
    /// A pclntab of a Go release this parser does not read (Go 1.2–1.17).
    #[error("pclntab magic {magic:#010x} is from go 1.17 or older, which is not supported")]
    UnsupportedVersion {
        /// The magic number found.
        magic: u32,
    },
    /// The first four bytes are not a known pclntab magic.
    #[error("bad pclntab magic {magic:#010x}")]
    BadMagic {
        /// The bytes read as a little-endian word.
        magic: u32,
    },
    /// A header field has an impossible value.
    #[error("malformed pclntab header: {0}")]
    BadHeader(&'static str),
    /// A table the header points to runs past the end of the section.
    #[error("pclntab truncated: {what} ends at byte {end}, past the table's {len} bytes")]
    Truncated {
        /// Which part of the table.
        what: &'static str,
        /// Where it would end.
        end: u64,
        /// Section length.
        len: usize,
    },
}

/// Which pclntab layout a binary uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PclnVersion {
    /// Go 1.18 and 1.19 (magic `0xfffffff0`): `_func` without `startLine`, 20-byte
    /// `inlinedCall` records.
    Go118,
    /// Go 1.20 and later (magic `0xfffffff1`): `_func.startLine`, 16-byte `inlinedCall`.
    Go120,
}

/// A function from the function table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoFunc {
    /// Absolute entry address (`textStart` + `entryOff`).
    pub entry: u64,
    /// First address after the function (the next function's entry).
    pub end: u64,
    /// Fully qualified Go name, e.g. `main.main` or `sync.(*Mutex).Lock`.
    pub name: String,
}

/// One logical frame at a pc: a function inlined there, or the physical function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoFrame {
    /// Fully qualified Go name of the (possibly inlined) function.
    pub function: String,
    /// Source file, if the pcfile table names one.
    pub file: Option<String>,
    /// Source line, if the pcln table has one.
    pub line: Option<u32>,
    /// Whether this frame was inlined into the next one.
    pub inlined: bool,
}

/// A call inlined into a function (an entry of its inline tree).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoInlinedCall {
    /// Fully qualified Go name of the inlined function.
    pub function: String,
    /// An instruction of the caller at the call site (the tree's `parentPc`, made
    /// absolute; its [`GoTable::frames`] are the caller's frames at the call), if inside
    /// the function.
    pub call_pc: Option<u64>,
}

const MAGIC_GO116: u32 = 0xffff_fffa;
const MAGIC_GO118: u32 = 0xffff_fff0;
const MAGIC_GO120: u32 = 0xffff_fff1;
/// Magic of Go 1.2–1.15.
const MAGIC_GO12: u32 = 0xffff_fffb;

/// `runtime._PCDATA_InlTreeIndex`.
const PCDATA_INL_TREE_INDEX: u32 = 2;
/// `runtime._FUNCDATA_InlTree`.
const FUNCDATA_INL_TREE: u32 = 3;
/// `runtime._FUNCDATA_OpenCodedDeferInfo`: where a function with open-coded defers keeps
/// its defer bits and closure slots (see `crate::go::defers`).
pub const FUNCDATA_OPEN_CODED_DEFER_INFO: u8 = 4;
/// Deepest inline chain we follow: real chains are a handful of frames; a malformed
/// table could otherwise make `parentPc` loop forever.
const MAX_INLINE_DEPTH: usize = 64;

/// Byte order and word size of the table.
#[derive(Debug, Clone, Copy)]
struct Layout {
    big_endian: bool,
    ptr_size: u8,
}

impl Layout {
    fn u32_at(self, data: &[u8], off: usize) -> Option<u32> {
        let bytes: [u8; 4] = data.get(off..off.checked_add(4)?)?.try_into().ok()?;
        Some(if self.big_endian {
            u32::from_be_bytes(bytes)
        } else {
            u32::from_le_bytes(bytes)
        })
    }

    fn u64_at(self, data: &[u8], off: usize) -> Option<u64> {
        let bytes: [u8; 8] = data.get(off..off.checked_add(8)?)?.try_into().ok()?;
        Some(if self.big_endian {
            u64::from_be_bytes(bytes)
        } else {
            u64::from_le_bytes(bytes)
        })
    }

    /// A pointer-sized word.
    fn word_at(self, data: &[u8], off: usize) -> Option<u64> {
        if self.ptr_size == 8 {
            self.u64_at(data, off)
        } else {
            self.u32_at(data, off).map(u64::from)
        }
    }
}

/// The NUL-terminated string at `off`, as bytes (without the NUL).
fn cstr_at(data: &[u8], off: usize) -> Option<&[u8]> {
    let rest = data.get(off..)?;
    let len = rest.iter().position(|&b| b == 0)?;
    rest.get(..len)
}

/// Go's `readvarint`: a little-endian base-128 u32; `None` if truncated or longer than
/// five bytes.
fn read_varint(data: &[u8], mut pos: usize) -> Option<(u32, usize)> {
    let mut value = 0u32;
    for shift in (0..35).step_by(7) {
        let byte = *data.get(pos)?;
        pos += 1;
        value |= u32::from(byte & 0x7f).checked_shl(shift)?;
        if byte & 0x80 == 0 {
            return Some((value, pos));
        }
    }
    None
}

/// The fields of a `runtime._func` record that we use.
#[derive(Debug, Clone, Copy)]
struct FuncRecord {
    entry: u64,
    end: u64,
    name_off: u32,
    pcfile: u32,
    pcln: u32,
    npcdata: u32,
    cu_offset: u32,
    nfuncdata: u8,
    /// Offset, inside the pcln table, of the first pcdata slot (just past the header).
    tail: usize,
}

/// Where `go:func.*` is and what bytes follow it in the file.
#[derive(Debug, Clone)]
struct GoFuncRegion {
    bytes: FileSlice,
}

/// A parsed Go pclntab, holding the section (and the `go:func.*` data the inline trees
/// live in, when it was found): views of the mapped executable for a live target
/// ([`GoTable::from_file`]), so the table costs only the pages its lookups touch, or
/// copies of them ([`GoTable::from_elf`], [`GoTable::from_pclntab`]).
#[derive(Debug, Clone)]
pub struct GoTable {
    data: FileSlice,
    layout: Layout,
    version: PclnVersion,
    /// Instruction size quantum (`minLC`): pc deltas are multiples of it.
    quantum: u64,
    nfunc: usize,
    text_start: u64,
    funcnametab: usize,
    cutab: usize,
    filetab: usize,
    pctab: usize,
    /// Start of `pclntable`: the functab followed by the `_func` records.
    pcln: usize,
    gofunc: Option<GoFuncRegion>,
}

impl GoTable {
    /// Finds and parses the pclntab of a Go ELF executable: by the `.gopclntab` section,
    /// or, when the section headers are gone, by scanning the file for a pclntab header.
    ///
    /// # Errors
    /// [`GoSymError::Object`]/[`GoSymError::NotElf`] if `data` is not a readable ELF
    /// file, [`GoSymError::NotFound`] if it holds no pclntab, and the errors of
    /// [`GoTable::from_pclntab`].
    pub fn from_elf(data: &[u8]) -> Result<Self, GoSymError> {
        elf::load(elf::Source::Borrowed(data))
    }

    /// [`GoTable::from_elf`] on a mapped file: the table keeps views of the mapping
    /// instead of copies of the pclntab and `go:func.*`.
    ///
    /// # Errors
    /// Those of [`GoTable::from_elf`].
    pub fn from_file(file: &Arc<FileBytes>) -> Result<Self, GoSymError> {
        elf::load(elf::Source::Shared(file))
    }

    /// Parses a bare pclntab (the contents of `.gopclntab`). Without the rest of the
    /// binary there is no `go:func.*`, so [`GoTable::frames`] reports physical frames
    /// only.
    ///
    /// # Errors
    /// [`GoSymError::BadMagic`], [`GoSymError::UnsupportedVersion`],
    /// [`GoSymError::BadHeader`] or [`GoSymError::Truncated`] for tables we cannot read.
    pub fn from_pclntab(section: &[u8]) -> Result<Self, GoSymError> {
        Self::parse(section, || FileSlice::copy_of(section))
    }

    /// Validates the header on the borrowed bytes and only then takes the bytes to keep
    /// from `keep` (a copy, or a view of the mapped file), so scanning a file for
    /// candidate headers does not copy it over and over.
    fn parse(data: &[u8], keep: impl FnOnce() -> FileSlice) -> Result<Self, GoSymError> {
        let Some(head) = data.get(..8) else {
            return Err(GoSymError::Truncated {
                what: "header",
                end: 8,
                len: data.len(),
            });
        };
        let le = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let be = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        // The magic is written in the target's byte order, so it also tells us that order.
        let (magic, big_endian) = match (le, be) {
            (MAGIC_GO118 | MAGIC_GO120, _) => (le, false),
            (_, MAGIC_GO118 | MAGIC_GO120) => (be, true),
            (MAGIC_GO116 | MAGIC_GO12, _) => {
                return Err(GoSymError::UnsupportedVersion { magic: le });
            }
            (_, MAGIC_GO116 | MAGIC_GO12) => {
                return Err(GoSymError::UnsupportedVersion { magic: be });
            }
            _ => return Err(GoSymError::BadMagic { magic: le }),
        };
        let version = if magic == MAGIC_GO118 {
            PclnVersion::Go118
        } else {
            PclnVersion::Go120
        };
        if head[4] != 0 || head[5] != 0 {
            return Err(GoSymError::BadHeader("padding bytes are not zero"));
        }
        let min_lc = head[6];
        if !matches!(min_lc, 1 | 2 | 4) {
            return Err(GoSymError::BadHeader(
                "instruction quantum is not 1, 2 or 4",
            ));
        }
        let ptr_size = head[7];
        if !matches!(ptr_size, 4 | 8) {
            return Err(GoSymError::BadHeader("pointer size is not 4 or 8"));
        }
        let layout = Layout {
            big_endian,
            ptr_size,
        };
        let len = data.len();
        let field = |i: usize| -> Result<u64, GoSymError> {
            let off = 8 + i * usize::from(ptr_size);
            layout.word_at(data, off).ok_or(GoSymError::Truncated {
                what: "header",
                end: (off + usize::from(ptr_size)) as u64,
                len,
            })
        };
        // pcHeader: nfunc, nfiles, textStart, funcnameOffset, cuOffset, filetabOffset,
        // pctabOffset, pclnOffset.
        let nfunc = field(0)?;
        let text_start = field(2)?;
        let offset = |i: usize, what: &'static str| -> Result<usize, GoSymError> {
            let value = field(i)?;
            usize::try_from(value)
                .ok()
                .filter(|&v| v <= len)
                .ok_or(GoSymError::Truncated {
                    what,
                    end: value,
                    len,
                })
        };
        let funcnametab = offset(3, "function name table")?;
        let cutab = offset(4, "compilation unit table")?;
        let filetab = offset(5, "file table")?;
        let pctab = offset(6, "pc-value table")?;
        let pcln = offset(7, "function table")?;
        // The functab is 2*nfunc+1 u32s; checking it fits bounds nfunc by the section
        // size before anything is sized by it.
        let functab_end = nfunc
            .checked_mul(8)
            .and_then(|n| n.checked_add(4))
            .and_then(|n| n.checked_add(pcln as u64))
            .unwrap_or(u64::MAX);
        if functab_end > len as u64 {
            return Err(GoSymError::Truncated {
                what: "function table",
                end: functab_end,
                len,
            });
        }
        let nfunc =
            usize::try_from(nfunc).map_err(|_| GoSymError::BadHeader("too many functions"))?;
        Ok(Self {
            data: keep(),
            layout,
            version,
            quantum: u64::from(min_lc),
            nfunc,
            text_start,
            funcnametab,
            cutab,
            filetab,
            pctab,
            pcln,
            gofunc: None,
        })
    }

    /// The pclntab layout (which Go releases built the binary).
    #[must_use]
    pub fn version(&self) -> PclnVersion {
        self.version
    }

    /// `runtime.text`: the address function entry offsets are relative to.
    #[must_use]
    pub fn text_start(&self) -> u64 {
        self.text_start
    }

    /// Whether inline trees can be read (`go:func.*` was located), so that
    /// [`GoTable::frames`] can report inlined frames.
    #[must_use]
    pub fn has_inline_data(&self) -> bool {
        self.gofunc.is_some()
    }

    /// Every function in the table, in address order. Records that do not parse are
    /// skipped.
    pub fn functions(&self) -> impl Iterator<Item = GoFunc> + '_ {
        (0..self.nfunc).filter_map(|i| {
            let rec = self.record(i)?;
            Some(GoFunc {
                entry: rec.entry,
                end: rec.end,
                name: self.name(rec.name_off)?,
            })
        })
    }

    /// The function whose code contains `pc`.
    #[must_use]
    pub fn func_for_pc(&self, pc: u64) -> Option<GoFunc> {
        let rec = self.record(self.index_for_pc(pc)?)?;
        Some(GoFunc {
            entry: rec.entry,
            end: rec.end,
            name: self.name(rec.name_off)?,
        })
    }

    /// The (first) function named `name`, e.g. `main.main`. Linear in the table size.
    #[must_use]
    pub fn find_func(&self, name: &str) -> Option<GoFunc> {
        (0..self.nfunc).find_map(|i| {
            let rec = self.record(i)?;
            let this = cstr_at(self.data.get(self.funcnametab..)?, rec.name_off as usize)?;
            (this == name.as_bytes()).then(|| GoFunc {
                entry: rec.entry,
                end: rec.end,
                name: name.to_owned(),
            })
        })
    }

    /// Every function whose name is one of `names`, in address order: one pass over the
    /// table, where [`GoTable::find_func`] makes one per name.
    #[must_use]
    pub fn funcs_named(&self, names: &[&str]) -> Vec<GoFunc> {
        let Some(nametab) = self.data.get(self.funcnametab..) else {
            return Vec::new();
        };
        (0..self.nfunc)
            .filter_map(|i| {
                let rec = self.record(i)?;
                let this = cstr_at(nametab, rec.name_off as usize)?;
                let name = names.iter().find(|n| n.as_bytes() == this)?;
                Some(GoFunc {
                    entry: rec.entry,
                    end: rec.end,
                    name: (*name).to_owned(),
                })
            })
            .collect()
    }

    /// Every function with inlined code from a function named in `names` (at any depth of
    /// its inline tree), in address order. Empty without inline data
    /// ([`GoTable::has_inline_data`]).
    ///
    /// Cheap enough to run over a whole binary: it reads each function's inline-index
    /// pc-value table once (no source lines, no strings built) and compares each inline
    /// tree entry's name (cached per name offset) with `names`. An inline tree has no
    /// length field, but the linker adds each entry after its parent, so the tree is
    /// exactly the entries up to the largest index the table uses.
    #[must_use]
    pub fn funcs_inlining(&self, names: &[&str]) -> Vec<GoFunc> {
        let Some(nametab) = self.data.get(self.funcnametab..) else {
            return Vec::new();
        };
        let mut matches: rustc_hash::FxHashMap<u32, bool> = rustc_hash::FxHashMap::default();
        let mut out = Vec::new();
        for i in 0..self.nfunc {
            let Some(rec) = self.record(i) else {
                continue;
            };
            let Some(tree) = self.inline_tree(&rec) else {
                continue;
            };
            let Some(max_ix) = self.max_inline_index(&rec) else {
                continue;
            };
            let hit = (0..=max_ix).any(|ix| {
                self.inlined_call(tree, ix).is_some_and(|(name_off, _)| {
                    *matches.entry(name_off).or_insert_with(|| {
                        cstr_at(nametab, name_off as usize)
                            .is_some_and(|name| names.iter().any(|n| n.as_bytes() == name))
                    })
                })
            });
            if hit && let Some(name) = self.name(rec.name_off) {
                out.push(GoFunc {
                    entry: rec.entry,
                    end: rec.end,
                    name,
                });
            }
        }
        out
    }

    /// The calls inlined into the function containing `pc`: every entry of its inline
    /// tree, in tree order (a caller's entry before the entries inlined into it). Empty
    /// without inline data or inlined calls.
    #[must_use]
    pub fn inlined_calls(&self, pc: u64) -> Vec<GoInlinedCall> {
        let Some(rec) = self.index_for_pc(pc).and_then(|i| self.record(i)) else {
            return Vec::new();
        };
        let (Some(tree), Some(max_ix)) = (self.inline_tree(&rec), self.max_inline_index(&rec))
        else {
            return Vec::new();
        };
        (0..=max_ix)
            .map_while(|ix| self.inlined_call(tree, ix))
            .map(|(name_off, parent_pc)| GoInlinedCall {
                function: self.name(name_off).unwrap_or_else(|| "?".to_owned()),
                call_pc: rec
                    .entry
                    .checked_add(u64::from(parent_pc))
                    .filter(|&p| p < rec.end),
            })
            .collect()
    }

    /// The largest value of the function's inline-index pc-value table over its code
    /// (`None` when no pc is inlined). Walks the table once, stopping at its end marker
    /// or at the function's end, so a corrupt table cannot make it run past either.
    fn max_inline_index(&self, rec: &FuncRecord) -> Option<usize> {
        if PCDATA_INL_TREE_INDEX >= rec.npcdata {
            return None;
        }
        let pcln = self.data.get(self.pcln..)?;
        let table_off = self.layout.u32_at(
            pcln,
            rec.tail.checked_add(PCDATA_INL_TREE_INDEX as usize * 4)?,
        )?;
        if table_off == 0 {
            return None;
        }
        let table = self.data.get(self.pctab..)?;
        let mut pos = table_off as usize;
        let mut pc = rec.entry;
        let mut value: i32 = -1;
        let mut max: Option<usize> = None;
        let mut first = true;
        while pc < rec.end {
            let Some((uvdelta, next)) = read_varint(table, pos) else {
                break;
            };
            if uvdelta == 0 && !first {
                break;
            }
            first = false;
            #[expect(
                clippy::cast_possible_wrap,
                reason = "zig-zag decoding of a 32-bit delta"
            )]
            let delta = ((uvdelta >> 1) as i32) ^ -((uvdelta & 1) as i32);
            value = value.wrapping_add(delta);
            let Some((pcdelta, next)) = read_varint(table, next) else {
                break;
            };
            pos = next;
            if let Ok(ix) = usize::try_from(value) {
                max = Some(max.map_or(ix, |m| m.max(ix)));
            }
            let Some(next_pc) = u64::from(pcdelta)
                .checked_mul(self.quantum)
                .and_then(|d| pc.checked_add(d))
            else {
                break;
            };
            pc = next_pc;
        }
        max
    }

    /// Source file and line of the instruction at `pc`, as the runtime reports it: for
    /// a pc inside inlined code this is the position in the inlined function.
    #[must_use]
    pub fn file_line(&self, pc: u64) -> Option<(String, u32)> {
        let rec = self.record(self.index_for_pc(pc)?)?;
        Some((self.file_at(&rec, pc)?, self.line_at(&rec, pc)?))
    }

    /// The logical frames at `pc`, innermost first: each function inlined at `pc`
    /// (from the inline tree), then the physical function. Empty if no function
    /// contains `pc`. Pass return addresses minus one, as the runtime does, so that the
    /// call instruction (not the next one) is looked up.
    #[must_use]
    pub fn frames(&self, pc: u64) -> Vec<GoFrame> {
        let Some(rec) = self.index_for_pc(pc).and_then(|i| self.record(i)) else {
            return Vec::new();
        };
        let mut frames = Vec::new();
        let mut pc = pc;
        if let Some(tree) = self.inline_tree(&rec) {
            // Go's inlineUnwinder: the inline index at pc names the innermost inlined
            // call; its parentPc is an instruction at the call site, whose own index
            // names the next frame out (-1 once we are in the physical function).
            for _ in 0..MAX_INLINE_DEPTH {
                let Some(ix) = self
                    .pcdata_value(&rec, PCDATA_INL_TREE_INDEX, pc)
                    .and_then(|ix| usize::try_from(ix).ok())
                else {
                    break;
                };
                let Some((name_off, parent_pc)) = self.inlined_call(tree, ix) else {
                    break;
                };
                frames.push(GoFrame {
                    function: self.name(name_off).unwrap_or_else(|| "?".to_owned()),
                    file: self.file_at(&rec, pc),
                    line: self.line_at(&rec, pc),
                    inlined: true,
                });
                let Some(parent) = rec
                    .entry
                    .checked_add(u64::from(parent_pc))
                    .filter(|&p| p < rec.end)
                else {
                    break;
                };
                pc = parent;
            }
        }
        frames.push(GoFrame {
            function: self.name(rec.name_off).unwrap_or_else(|| "?".to_owned()),
            file: self.file_at(&rec, pc),
            line: self.line_at(&rec, pc),
            inlined: false,
        });
        frames
    }

    /// The functab, which starts the pclntable.
    fn functab_u32(&self, i: usize) -> Option<u32> {
        self.layout
            .u32_at(&self.data, self.pcln.checked_add(i.checked_mul(4)?)?)
    }

    /// Index of the function containing `pc`: the last functab entry at or below it.
    fn index_for_pc(&self, pc: u64) -> Option<usize> {
        let off = pc.checked_sub(self.text_start)?;
        let end = u64::from(self.functab_u32(self.nfunc.checked_mul(2)?)?);
        if self.nfunc == 0 || off >= end {
            return None;
        }
        // Binary search over entries 0..nfunc (sorted by the linker; a corrupt table
        // just gives a wrong answer, never an out-of-bounds read).
        let (mut lo, mut hi) = (0usize, self.nfunc);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if u64::from(self.functab_u32(mid * 2)?) <= off {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        (u64::from(self.functab_u32(lo * 2)?) <= off).then_some(lo)
    }

    /// The `_func` record of function `i`.
    fn record(&self, i: usize) -> Option<FuncRecord> {
        if i >= self.nfunc {
            return None;
        }
        let entry_off = self.functab_u32(i * 2)?;
        let func_off = self.functab_u32(i * 2 + 1)?;
        let end_off = self.functab_u32(i * 2 + 2)?;
        let table = self.data.get(self.pcln..)?;
        let base = func_off as usize;
        let field = |n: usize| self.layout.u32_at(table, base.checked_add(n * 4)?);
        // _func: entryOff, nameOff, args, deferreturn, pcsp, pcfile, pcln, npcdata,
        // cuOffset, [startLine since 1.20], funcID/flag/_/nfuncdata.
        let flags_word = match self.version {
            PclnVersion::Go118 => 9,
            PclnVersion::Go120 => 10,
        };
        let nfuncdata = *table.get(base.checked_add(flags_word * 4 + 3)?)?;
        Some(FuncRecord {
            entry: self.text_start.checked_add(u64::from(entry_off))?,
            end: self.text_start.checked_add(u64::from(end_off))?,
            name_off: field(1)?,
            pcfile: field(5)?,
            pcln: field(6)?,
            npcdata: field(7)?,
            cu_offset: field(8)?,
            nfuncdata,
            tail: base.checked_add((flags_word + 1) * 4)?,
        })
    }

    fn name(&self, name_off: u32) -> Option<String> {
        let bytes = cstr_at(self.data.get(self.funcnametab..)?, name_off as usize)?;
        Some(String::from_utf8_lossy(bytes).into_owned())
    }

    /// Go's `pcvalue`: the value a pc-value table holds at `target`. Each step consumes
    /// at least two bytes, so the walk is bounded by the table's size.
    fn pcvalue(&self, table_off: u32, entry: u64, target: u64) -> Option<i32> {
        if table_off == 0 {
            return None;
        }
        let table = self.data.get(self.pctab..)?;
        let mut pos = table_off as usize;
        let mut pc = entry;
        let mut value: i32 = -1;
        let mut first = true;
        loop {
            let (uvdelta, next) = read_varint(table, pos)?;
            if uvdelta == 0 && !first {
                return None;
            }
            first = false;
            // Zig-zag decoding of the value delta.
            #[allow(clippy::cast_possible_wrap)]
            let delta = ((uvdelta >> 1) as i32) ^ -((uvdelta & 1) as i32);
            value = value.wrapping_add(delta);
            let (pcdelta, next) = read_varint(table, next)?;
            pos = next;
            pc = pc.checked_add(u64::from(pcdelta).checked_mul(self.quantum)?)?;
            if target < pc {
                return Some(value);
            }
        }
    }

    fn line_at(&self, rec: &FuncRecord, pc: u64) -> Option<u32> {
        self.pcvalue(rec.pcln, rec.entry, pc)
            .and_then(|line| u32::try_from(line).ok())
    }

    fn file_at(&self, rec: &FuncRecord, pc: u64) -> Option<String> {
        let fileno = u32::try_from(self.pcvalue(rec.pcfile, rec.entry, pc)?).ok()?;
        // The pcfile value indexes the function's compilation unit in cutab, whose
        // entries are offsets into filetab (all ones: no file).
        let slot = usize::try_from(rec.cu_offset.checked_add(fileno)?).ok()?;
        let cutab = self.data.get(self.cutab..)?;
        let file_off = self.layout.u32_at(cutab, slot.checked_mul(4)?)?;
        if file_off == u32::MAX {
            return None;
        }
        let bytes = cstr_at(self.data.get(self.filetab..)?, file_off as usize)?;
        Some(String::from_utf8_lossy(bytes).into_owned())
    }

    /// Value of pcdata table `index` at `pc`.
    fn pcdata_value(&self, rec: &FuncRecord, index: u32, pc: u64) -> Option<i32> {
        if index >= rec.npcdata {
            return None;
        }
        let table = self.data.get(self.pcln..)?;
        let off = self
            .layout
            .u32_at(table, rec.tail.checked_add(index as usize * 4)?)?;
        self.pcvalue(off, rec.entry, pc)
    }

    /// The inline tree of a function: the bytes of `go:func.*` from its funcdata offset.
    fn inline_tree(&self, rec: &FuncRecord) -> Option<&[u8]> {
        self.funcdata_of(rec, FUNCDATA_INL_TREE)
    }

    /// Funcdata `index` (a `runtime._FUNCDATA_*` number, e.g.
    /// [`FUNCDATA_OPEN_CODED_DEFER_INFO`]) of the function containing `pc`: the bytes of
    /// `go:func.*` from where it starts to the end of that data (funcdata records carry no
    /// length; their readers know their format). `None` when no function contains `pc`,
    /// the function has no such funcdata, or `go:func.*` was not located
    /// ([`GoTable::has_inline_data`]).
    ///
    /// Go 1.18 and later store funcdata as offsets from `moduledata.gofunc` (the runtime's
    /// `funcdata` adds `datap.gofunc`); `^0` means absent.
    #[must_use]
    pub fn funcdata(&self, pc: u64, index: u8) -> Option<&[u8]> {
        let rec = self.record(self.index_for_pc(pc)?)?;
        self.funcdata_of(&rec, u32::from(index))
    }

    /// [`GoTable::funcdata`] for a parsed record.
    fn funcdata_of(&self, rec: &FuncRecord, index: u32) -> Option<&[u8]> {
        let gofunc = self.gofunc.as_ref()?;
        if index >= u32::from(rec.nfuncdata) {
            return None;
        }
        let table = self.data.get(self.pcln..)?;
        // The funcdata offsets follow the npcdata pcdata offsets (u32 each).
        let slot = rec
            .tail
            .checked_add(usize::try_from(rec.npcdata).ok()?.checked_mul(4)?)?
            .checked_add(usize::try_from(index).ok()?.checked_mul(4)?)?;
        let off = self.layout.u32_at(table, slot)?;
        if off == u32::MAX {
            return None;
        }
        gofunc.bytes.get(off as usize..)
    }

    /// `(nameOff, parentPc)` of inline tree entry `ix`.
    fn inlined_call(&self, tree: &[u8], ix: usize) -> Option<(u32, u32)> {
        // 1.18–1.19: {parent i16, funcID u8, _ u8, file i32, line i32, func_ i32,
        // parentPc i32}; 1.20+: {funcID u8, _ [3]u8, nameOff i32, parentPc i32,
        // startLine i32}.
        let (size, name_at, parent_at) = match self.version {
            PclnVersion::Go118 => (20, 12, 16),
            PclnVersion::Go120 => (16, 4, 8),
        };
        let base = ix.checked_mul(size)?;
        Some((
            self.layout.u32_at(tree, base.checked_add(name_at)?)?,
            self.layout.u32_at(tree, base.checked_add(parent_at)?)?,
        ))
    }
}
