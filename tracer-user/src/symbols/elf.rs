//! One loaded ELF object: its `PT_LOAD` layout, data and function symbols, and DWARF.
//!
//! The layout and symbols are copied out of the file at load time, so a malformed file
//! degrades to "fewer symbols" instead of an error or a panic. DWARF is read only when a
//! source line is first asked for, and then decoded one unit at a time (`dwarf_index`);
//! until then only the file's mapping is kept (see `FileBytes`).

use std::{borrow::Cow, cell::OnceCell, sync::PoisonError};

use object::{Object, ObjectSegment, ObjectSymbol, SymbolKind};

use super::dwarf_index::{self, DwarfIndex, SharedIndex};
use crate::{model::NameSource, target::FileBytes};

/// A `PT_LOAD` segment: file bytes `[offset, offset + file_size)` are loaded at virtual address
/// `vaddr`, followed by zeroes up to `mem_size` (`.bss`).
#[derive(Debug, Clone, Copy)]
struct LoadSegment {
    offset: u64,
    file_size: u64,
    vaddr: u64,
    mem_size: u64,
}

/// A named address range.
#[derive(Debug)]
struct Symbol {
    addr: u64,
    size: u64,
    name: Box<str>,
    /// Preference among aliases at the same address; lower wins.
    rank: (u8, usize, usize),
    /// The table the name was found in.
    source: NameSource,
}

impl Symbol {
    fn new(addr: u64, size: u64, name: &str, binding: u8, source: NameSource) -> Self {
        // Among aliases (glibc has `pthread_mutex_lock` and `__pthread_mutex_lock` at one
        // address) show the public spelling: global before weak before local, then fewer
        // leading underscores, then the shorter name.
        let underscores = name.len() - name.trim_start_matches('_').len();
        Self {
            addr,
            size,
            name: name.into(),
            rank: (binding, underscores, name.len()),
            source,
        }
    }
}

/// Symbols sorted by address, one per address, for binary search.
#[derive(Debug, Default)]
struct SymbolTable {
    symbols: Vec<Symbol>,
}

impl SymbolTable {
    fn new(mut symbols: Vec<Symbol>) -> Self {
        // The same symbol is often in several tables (`.symtab` and `.dynsym`, or a debug
        // file's and `.dynsym`): the kept copy is the one from the preferred table.
        symbols.sort_by(|a, b| {
            (a.addr, a.rank, &a.name, a.source).cmp(&(b.addr, b.rank, &b.name, b.source))
        });
        let mut deduped: Vec<Symbol> = Vec::with_capacity(symbols.len());
        for symbol in symbols {
            match deduped.last_mut() {
                // An alias of the previous (preferred) symbol: keep its name, but not a zero
                // size when the alias knows better.
                Some(prev) if prev.addr == symbol.addr => prev.size = prev.size.max(symbol.size),
                _ => deduped.push(symbol),
            }
        }
        Self { symbols: deduped }
    }

    /// The symbol with the greatest address `<= addr`.
    fn preceding(&self, addr: u64) -> Option<&Symbol> {
        let idx = self.symbols.partition_point(|s| s.addr <= addr);
        self.symbols.get(idx.checked_sub(1)?)
    }

    /// The symbol whose `[addr, addr + size)` contains `addr`.
    fn covering(&self, addr: u64) -> Option<&Symbol> {
        self.preceding(addr).filter(|s| addr - s.addr < s.size)
    }

    /// Like [`covering`](Self::covering), but a symbol of unknown (zero) size extends to the
    /// next one: hand-written assembly often has no `.size`.
    fn covering_or_unsized(&self, addr: u64) -> Option<&Symbol> {
        self.preceding(addr)
            .filter(|s| s.size == 0 || addr - s.addr < s.size)
    }

    fn len(&self) -> usize {
        self.symbols.len()
    }
}

/// A symbol found for an address: its name (demangled), the address's offset into it, and
/// the table the name came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SymbolHit {
    pub(crate) name: String,
    pub(crate) offset: u64,
    pub(crate) source: NameSource,
}

impl SymbolHit {
    fn from_symbol(symbol: &Symbol, addr: u64) -> Self {
        Self {
            name: demangle_symbol(&symbol.name).into_owned(),
            offset: addr - symbol.addr,
            source: symbol.source,
        }
    }
}

/// The readable form of a symbol name: mangled names (Itanium C++ `_Z…`, which includes
/// legacy Rust `_ZN…17h<hash>E`, and Rust v0 `_R…`) are demangled, anything else is kept.
///
/// Only mangled names go to the demangler: a C++ demangler reads a bare name as a type
/// code, so a C global `m` would become `unsigned long`, `d` `double`, `i` `int`.
pub(crate) fn demangle_symbol(name: &str) -> Cow<'_, str> {
    if name.starts_with("_Z") || name.starts_with("_R") {
        addr2line::demangle_auto(Cow::Borrowed(name), None)
    } else {
        Cow::Borrowed(name)
    }
}

/// What DWARF says about a code address.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct SourceInfo {
    pub(crate) file: Option<String>,
    pub(crate) line: Option<u32>,
    /// Function names from the innermost (inlined) frame to the outermost (the real function).
    pub(crate) functions: Vec<String>,
}

/// What a separate debug file for an object must match: the object's build id (looked up
/// as `DIR/.build-id/xx/rest.debug`) and its `.gnu_debuglink` (a file name and the CRC-32
/// of that file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DebugWanted<'a> {
    pub(crate) build_id: Option<&'a [u8]>,
    pub(crate) link: Option<(&'a str, u32)>,
}

/// How a debug file candidate was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DebugVia {
    /// At the path the object's build id gives.
    BuildId,
    /// By the file name in the object's `.gnu_debuglink`.
    Link,
}

impl DebugWanted<'_> {
    /// Whether `candidate` (a file's bytes) is the debug file wanted. When both have a
    /// build id, they must be equal. Otherwise a file at the build id's path is taken
    /// (the path already says whose it is), and one named by the debuglink must have the
    /// debuglink's CRC-32, as gdb requires: a file of that name may belong to another
    /// build of the program.
    pub(crate) fn is_matched_by(&self, via: DebugVia, candidate: &[u8]) -> bool {
        let Ok(file) = object::File::parse(candidate) else {
            return false;
        };
        match (self.build_id, file.build_id().ok().flatten()) {
            (Some(wanted), Some(found)) => wanted == found,
            _ => match via {
                DebugVia::BuildId => true,
                DebugVia::Link => self
                    .link
                    .is_some_and(|(_, crc)| crc32fast::hash(candidate) == crc),
            },
        }
    }
}

/// A separate debug file found for an object: its bytes, and its path as the report
/// names it.
#[derive(Debug)]
pub(crate) struct FoundDebugFile {
    pub(crate) bytes: FileBytes,
    pub(crate) path: String,
}

/// Where an object's names come from, for the report's note on a stripped object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct NameOrigin {
    /// The object has its own `.symtab` (not stripped).
    pub(crate) has_symtab: bool,
    /// Data and function symbols its `.dynsym` has.
    pub(crate) dynsym_symbols: usize,
    /// The separate debug file whose symbols (and DWARF) were used.
    pub(crate) debug_file: Option<String>,
    /// The object's build id, lowercase hex.
    pub(crate) build_id: Option<String>,
    /// The file name its `.gnu_debuglink` gives.
    pub(crate) debuglink: Option<String>,
    /// A Go program (it has `.gopclntab`): its functions are named from that table,
    /// whatever the symbol tables say.
    pub(crate) go: bool,
}

impl NameOrigin {
    /// One line for the report on where the names of the object at `path` come from, for
    /// an object without a `.symtab` (`None` for one with it: the ordinary case).
    /// `searched` says where debug files were looked for.
    pub(crate) fn stripped_note(&self, path: &str, searched: &str) -> Option<String> {
        if self.has_symtab {
            return None;
        }
        let mut note = if let Some(debug) = &self.debug_file {
            format!("{path}: stripped; names from debug file {debug}")
        } else {
            let mut looked_for = Vec::new();
            if let Some(id) = &self.build_id {
                looked_for.push(format!("build id {id}"));
            }
            if let Some(link) = &self.debuglink {
                looked_for.push(format!("debuglink {link}"));
            }
            let missing = if looked_for.is_empty() {
                "no build id or debuglink to find a debug file by".to_owned()
            } else {
                format!(
                    "no debug file found for {} under {searched}",
                    looked_for.join(" or ")
                )
            };
            if self.dynsym_symbols > 0 {
                format!("{path}: stripped; names from .dynsym only ({missing})")
            } else {
                format!(
                    "{path}: stripped, no symbols ({missing}); its addresses are shown as object+offset"
                )
            }
        };
        if self.go {
            note.push_str("; its Go functions are named from .gopclntab");
        }
        Some(note)
    }
}

/// A parsed ELF object.
pub(crate) struct ElfObject {
    segments: Vec<LoadSegment>,
    data: SymbolTable,
    functions: SymbolTable,
    dwarf: LazyDwarf,
    origin: NameOrigin,
}

/// The DWARF of an object, read on first use.
struct LazyDwarf {
    /// The file with `.debug_info` (the object, or its separate debug file), mapped.
    file: Option<FileBytes>,
    /// The object's build id, which names its DWARF ([`dwarf_index::shared`]).
    build_id: Option<Vec<u8>>,
    index: OnceCell<Option<SharedIndex>>,
}

impl LazyDwarf {
    fn new(file: Option<FileBytes>, build_id: Option<Vec<u8>>) -> Self {
        Self {
            file,
            build_id,
            index: OnceCell::new(),
        }
    }

    /// The object's DWARF; `None` without any or when it cannot be parsed.
    fn index(&self) -> Option<&SharedIndex> {
        self.index
            .get_or_init(|| {
                let bytes = self.file.as_ref()?;
                dwarf_index::shared(self.build_id.as_deref(), bytes.len(), || {
                    let index = object::File::parse(&**bytes)
                        .ok()
                        .and_then(|f| DwarfIndex::load(&f));
                    // The sections were copied or inflated: their file pages are not read
                    // again.
                    bytes.release_resident();
                    index
                })
            })
            .as_ref()
    }
}

impl std::fmt::Debug for ElfObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ElfObject")
            .field("segments", &self.segments)
            .field("data_symbols", &self.data.len())
            .field("function_symbols", &self.functions.len())
            .field("dwarf", &self.dwarf.file.is_some())
            .field("origin", &self.origin)
            .finish()
    }
}

impl ElfObject {
    /// Parses an ELF file. `None` when the bytes are not an ELF object object can read.
    ///
    /// `debug_file` is asked for the separate debug file (by build id, or by the
    /// `.gnu_debuglink`) when the object has no DWARF of its own; its symbols and DWARF
    /// are used in addition to the object's.
    pub(crate) fn parse(
        bytes: FileBytes,
        debug_file: impl FnOnce(&DebugWanted<'_>) -> Option<FoundDebugFile>,
    ) -> Option<Self> {
        let file = object::File::parse(&*bytes).ok()?;
        if file.format() != object::BinaryFormat::Elf {
            return None;
        }
        let segments = file
            .segments()
            .map(|s| {
                let (offset, file_size) = s.file_range();
                LoadSegment {
                    offset,
                    file_size,
                    vaddr: s.address(),
                    mem_size: s.size(),
                }
            })
            .collect();
        let mut data = Vec::new();
        let mut functions = Vec::new();
        collect_symbols(
            file.symbols(),
            NameSource::Symtab,
            &mut data,
            &mut functions,
        );
        let dynsym_symbols = collect_symbols(
            file.dynamic_symbols(),
            NameSource::Dynsym,
            &mut data,
            &mut functions,
        );
        let build_id = file.build_id().ok().flatten();
        let dwarf_id = build_id.map(<[u8]>::to_vec);
        let link = file.gnu_debuglink().ok().flatten().and_then(|(name, crc)| {
            // A bare file name: it is looked up in chosen directories, never elsewhere.
            let name = std::str::from_utf8(name).ok()?;
            (!name.is_empty() && !name.contains('/')).then_some((name, crc))
        });
        let mut origin = NameOrigin {
            has_symtab: file.symbol_table().is_some(),
            dynsym_symbols,
            debug_file: None,
            build_id: build_id.map(hex),
            debuglink: link.map(|(name, _)| name.to_owned()),
            go: file.section_by_name(".gopclntab").is_some(),
        };
        let has_dwarf = file.section_by_name(".debug_info").is_some();
        let mut dwarf_file = None;
        if !has_dwarf
            && (build_id.is_some() || link.is_some())
            && let Some(found) = debug_file(&DebugWanted { build_id, link })
            && let Ok(debug) = object::File::parse(&*found.bytes)
        {
            // The debug file's symbol table has the local symbols a stripped library lost.
            collect_symbols(
                debug.symbols(),
                NameSource::DebugFile,
                &mut data,
                &mut functions,
            );
            origin.debug_file = Some(found.path);
            if debug.section_by_name(".debug_info").is_some() {
                dwarf_file = Some(found.bytes);
            }
        }
        if has_dwarf {
            dwarf_file = Some(bytes);
        }
        // The symbols are copied: what stays mapped for the DWARF need not stay resident.
        if let Some(kept) = &dwarf_file {
            kept.release_resident();
        }
        Some(Self {
            segments,
            data: SymbolTable::new(data),
            functions: SymbolTable::new(functions),
            dwarf: LazyDwarf::new(dwarf_file, dwarf_id),
            origin,
        })
    }

    /// Where this object's names come from.
    pub(crate) fn name_origin(&self) -> &NameOrigin {
        &self.origin
    }

    /// The virtual address of file offset `offset`, through the `PT_LOAD` segment that holds
    /// it. `bss` is for offsets computed past the end of a file mapping (the anonymous
    /// mapping that continues `.bss`): those only map into a segment's zero-filled tail.
    pub(crate) fn vaddr_of_offset(&self, offset: u64, bss: bool) -> Option<u64> {
        let in_segment = |s: &&LoadSegment, len: u64| offset >= s.offset && offset - s.offset < len;
        let segment = if bss {
            self.segments
                .iter()
                .find(|s| s.mem_size > s.file_size && in_segment(s, s.mem_size))
        } else {
            // Page-granular mappings also show bytes of neighbouring segments; the segment
            // that really holds the byte wins, and only then does `.bss` sharing the last
            // page of `.data` count.
            self.segments
                .iter()
                .find(|s| in_segment(s, s.file_size))
                .or_else(|| self.segments.iter().find(|s| in_segment(s, s.mem_size)))
        }?;
        segment.vaddr.checked_add(offset - segment.offset)
    }

    /// The data symbol (variable) containing `vaddr`.
    pub(crate) fn data_symbol(&self, vaddr: u64) -> Option<SymbolHit> {
        self.data
            .covering(vaddr)
            .map(|s| SymbolHit::from_symbol(s, vaddr))
    }

    /// The function symbol containing `vaddr`.
    pub(crate) fn function_symbol(&self, vaddr: u64) -> Option<SymbolHit> {
        self.functions
            .covering_or_unsized(vaddr)
            .map(|s| SymbolHit::from_symbol(s, vaddr))
    }

    /// File, line and inline chain of `vaddr` from DWARF, when the object has any.
    pub(crate) fn source(&self, vaddr: u64) -> Option<SourceInfo> {
        let index = self.dwarf.index()?;
        // Another session's lookup in the same DWARF may hold it: a few microseconds.
        let index = index.lock().unwrap_or_else(PoisonError::into_inner);
        index.source(vaddr)
    }

    /// The index of this object's DWARF, once read (tests).
    #[cfg(test)]
    pub(crate) fn shared_dwarf(&self) -> Option<&SharedIndex> {
        self.dwarf.index.get()?.as_ref()
    }
}

fn binding_rank(symbol: &object::Symbol<'_, '_>) -> u8 {
    if symbol.is_weak() {
        1
    } else if symbol.is_global() {
        0
    } else {
        2
    }
}

/// `bytes` in lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut out, byte| {
        let _ = write!(out, "{byte:02x}");
        out
    })
}

/// Adds the data and function symbols of one symbol table (`.symtab` or `.dynsym`), found
/// in `source`; returns how many there were.
fn collect_symbols<'data: 'file, 'file>(
    symbols: impl Iterator<Item = object::Symbol<'data, 'file>>,
    source: NameSource,
    data: &mut Vec<Symbol>,
    functions: &mut Vec<Symbol>,
) -> usize {
    let before = data.len() + functions.len();
    for symbol in symbols {
        let Ok(name) = symbol.name() else { continue };
        if name.is_empty() {
            continue;
        }
        let addr = symbol.address();
        if symbol.is_undefined() {
            // A non-PIE executable that takes the address of a library function gets a
            // "canonical PLT entry": an undefined symbol whose value is its PLT stub, which
            // is then the function's address everywhere. PLT stubs are 16 bytes on x86-64
            // and aarch64.
            if symbol.kind() == SymbolKind::Text && addr != 0 {
                functions.push(Symbol::new(addr, 16, &format!("{name}@plt"), 3, source));
            }
            continue;
        }
        match symbol.kind() {
            // STT_OBJECT and STT_COMMON; STT_TLS values are offsets into a TLS block, not
            // addresses, so they are left out.
            SymbolKind::Data => data.push(Symbol::new(
                addr,
                symbol.size(),
                name,
                binding_rank(&symbol),
                source,
            )),
            // STT_FUNC and STT_GNU_IFUNC.
            SymbolKind::Text => functions.push(Symbol::new(
                addr,
                symbol.size(),
                name,
                binding_rank(&symbol),
                source,
            )),
            _ => {}
        }
    }
    data.len() + functions.len() - before
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]
mod tests {
    use super::*;

    fn table(symbols: &[(u64, u64, &str, u8)]) -> SymbolTable {
        SymbolTable::new(
            symbols
                .iter()
                .map(|&(a, s, n, b)| Symbol::new(a, s, n, b, NameSource::Symtab))
                .collect(),
        )
    }

    #[test]
    fn lookup_sized_and_unsized() {
        let t = table(&[
            (0x100, 0x10, "a", 0),
            (0x200, 0, "b", 0),
            (0x300, 8, "c", 0),
        ]);
        assert_eq!(t.covering(0x100).map(|s| &*s.name), Some("a"));
        assert_eq!(t.covering(0x10f).map(|s| &*s.name), Some("a"));
        assert!(t.covering(0x110).is_none());
        assert!(t.covering(0xff).is_none());
        assert!(t.covering(0x200).is_none());
        assert_eq!(t.covering_or_unsized(0x2ff).map(|s| &*s.name), Some("b"));
        assert!(t.covering_or_unsized(0x150).is_none());
        assert!(t.covering_or_unsized(0x308).is_none());
    }

    #[test]
    fn aliases_prefer_public_names() {
        let t = table(&[
            (0x100, 0, "__pthread_mutex_lock", 0),
            (0x100, 0x20, "pthread_mutex_lock", 1),
            (0x100, 0, "x", 2),
        ]);
        assert_eq!(t.len(), 1);
        let s = t.covering(0x110).unwrap();
        assert_eq!((&*s.name, s.size), ("__pthread_mutex_lock", 0x20));
        let t = table(&[
            (0x100, 0x20, "__pthread_mutex_lock", 0),
            (0x100, 0x20, "pthread_mutex_lock", 0),
        ]);
        assert_eq!(&*t.covering(0x100).unwrap().name, "pthread_mutex_lock");
    }

    /// Guards the report's name sources: a symbol in several tables (an unstripped
    /// object's `.symtab` and `.dynsym`, a debug file's `.symtab` and the stripped
    /// object's `.dynsym`) is said to come from the preferred one, whatever order the
    /// tables were read in, and an alias's better name keeps its own source.
    #[test]
    fn the_same_symbol_in_several_tables_keeps_the_preferred_source() {
        for order in [
            [
                NameSource::Dynsym,
                NameSource::Symtab,
                NameSource::DebugFile,
            ],
            [
                NameSource::DebugFile,
                NameSource::Dynsym,
                NameSource::Symtab,
            ],
        ] {
            let t = SymbolTable::new(
                order
                    .iter()
                    .map(|&source| Symbol::new(0x100, 8, "lock_a", 0, source))
                    .collect(),
            );
            assert_eq!(t.len(), 1);
            let hit = SymbolHit::from_symbol(t.covering(0x104).unwrap(), 0x104);
            assert_eq!((hit.name.as_str(), hit.offset), ("lock_a", 4));
            assert_eq!(hit.source, NameSource::Symtab, "{order:?}");
        }
        let t = SymbolTable::new(vec![
            Symbol::new(0x100, 8, "lock_b", 0, NameSource::Dynsym),
            Symbol::new(0x100, 8, "lock_b", 0, NameSource::DebugFile),
            Symbol::new(0x200, 8, "exported", 0, NameSource::Dynsym),
        ]);
        assert_eq!(t.covering(0x100).unwrap().source, NameSource::DebugFile);
        assert_eq!(t.covering(0x200).unwrap().source, NameSource::Dynsym);
        // The public alias wins with the table it was found in.
        let t = SymbolTable::new(vec![
            Symbol::new(0x100, 8, "__lock", 2, NameSource::Symtab),
            Symbol::new(0x100, 8, "lock", 0, NameSource::Dynsym),
        ]);
        let s = t.covering(0x100).unwrap();
        assert_eq!((&*s.name, s.source), ("lock", NameSource::Dynsym));
    }

    fn origin() -> NameOrigin {
        NameOrigin {
            has_symtab: false,
            dynsym_symbols: 12,
            debug_file: None,
            build_id: Some("ab12cd".into()),
            debuglink: Some("prog.debug".into()),
            go: false,
        }
    }

    /// Guards the notes on stripped objects: one line saying where the names come
    /// from (a debug file, `.dynsym` only, or nowhere), with what was looked for when
    /// no debug file was found; nothing for an object with its own `.symtab`.
    #[test]
    fn stripped_notes_say_where_names_come_from() {
        let note = |o: &NameOrigin| o.stripped_note("/opt/app/prog", "/usr/lib/debug");
        assert_eq!(
            note(&origin()).as_deref(),
            Some(
                "/opt/app/prog: stripped; names from .dynsym only (no debug file found for build id ab12cd or debuglink prog.debug under /usr/lib/debug)"
            )
        );
        let found = NameOrigin {
            debug_file: Some("/usr/lib/debug/.build-id/ab/12cd.debug".into()),
            ..origin()
        };
        assert_eq!(
            note(&found).as_deref(),
            Some(
                "/opt/app/prog: stripped; names from debug file /usr/lib/debug/.build-id/ab/12cd.debug"
            )
        );
        let bare = NameOrigin {
            dynsym_symbols: 0,
            build_id: None,
            debuglink: None,
            ..origin()
        };
        assert_eq!(
            note(&bare).as_deref(),
            Some(
                "/opt/app/prog: stripped, no symbols (no build id or debuglink to find a debug file by); its addresses are shown as object+offset"
            )
        );
        let go = NameOrigin {
            dynsym_symbols: 0,
            debuglink: None,
            go: true,
            ..origin()
        };
        assert_eq!(
            note(&go).as_deref(),
            Some(
                "/opt/app/prog: stripped, no symbols (no debug file found for build id ab12cd under /usr/lib/debug); its addresses are shown as object+offset; its Go functions are named from .gopclntab"
            )
        );
        let unstripped = NameOrigin {
            has_symtab: true,
            ..found
        };
        assert_eq!(note(&unstripped), None);
    }

    #[test]
    fn debug_file_must_match_the_object() {
        fn by_id(id: Option<&[u8]>) -> DebugWanted<'_> {
            DebugWanted {
                build_id: id,
                link: None,
            }
        }
        let own = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let own_id: Option<Vec<u8>> = object::File::parse(&*own)
            .unwrap()
            .build_id()
            .unwrap()
            .map(<[u8]>::to_vec);
        let other_id = [0xab_u8; 20];
        let crc = crc32fast::hash(&own);
        if let Some(id) = &own_id {
            assert!(by_id(Some(id)).is_matched_by(DebugVia::BuildId, &own));
            assert!(by_id(Some(id)).is_matched_by(DebugVia::Link, &own));
            assert!(!by_id(Some(&other_id)).is_matched_by(DebugVia::BuildId, &own));
            assert!(
                !DebugWanted {
                    build_id: Some(&other_id),
                    link: Some(("x.debug", crc)),
                }
                .is_matched_by(DebugVia::Link, &own),
                "different build ids: another build's file, whatever the CRC says"
            );
        }
        // Without build ids to compare, a debuglink's CRC decides.
        let link = |crc| DebugWanted {
            build_id: None,
            link: Some(("x.debug", crc)),
        };
        if own_id.is_none() {
            assert!(link(crc).is_matched_by(DebugVia::Link, &own));
            assert!(!link(crc ^ 1).is_matched_by(DebugVia::Link, &own));
        }
        assert!(!link(crc).is_matched_by(DebugVia::Link, b"not an elf file"));
        assert!(!by_id(None).is_matched_by(DebugVia::BuildId, b"not an elf file"));
    }

    #[test]
    fn garbage_is_not_elf() {
        assert!(ElfObject::parse(b"not an elf file at all".to_vec().into(), |_| None).is_none());
        let mut truncated = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        truncated.truncate(200);
        // Must not panic; whether a header-only file parses is object's business.
        let _ = ElfObject::parse(truncated.into(), |_| None);
    }

    #[test]
    fn demangles_rust_and_cpp() {
        let rust = Symbol::new(
            0x10,
            4,
            "_ZN4core9panicking5panic17h0123456789abcdefE",
            0,
            NameSource::Symtab,
        );
        assert_eq!(
            SymbolHit::from_symbol(&rust, 0x12).name,
            "core::panicking::panic"
        );
        let cpp = Symbol::new(0x10, 4, "_ZN3foo3barEv", 0, NameSource::Symtab);
        assert_eq!(
            SymbolHit::from_symbol(&cpp, 0x10),
            SymbolHit {
                name: "foo::bar()".into(),
                offset: 0,
                source: NameSource::Symtab,
            }
        );
        let c = Symbol::new(0x10, 4, "worker_fn", 0, NameSource::Symtab);
        assert_eq!(SymbolHit::from_symbol(&c, 0x10).name, "worker_fn");
    }

    /// Guards issue 16: one-letter C globals (`m`, `d`, `i`) were handed to the C++
    /// demangler, which reads them as type codes (`unsigned long`, `double`, `int`).
    /// Checked to fail before `demangle_symbol` only demangled `_Z`/`_R` names.
    #[test]
    fn demangles_only_mangled_names() {
        for c_name in [
            "m",
            "d",
            "i",
            "n",
            "v",
            "Ss",
            "main",
            "_start",
            "__libc_start_main",
        ] {
            assert_eq!(demangle_symbol(c_name), c_name);
            let symbol = Symbol::new(0x10, 4, c_name, 0, NameSource::Symtab);
            assert_eq!(SymbolHit::from_symbol(&symbol, 0x10).name, c_name);
        }
        assert_eq!(demangle_symbol("_ZN3foo3barEv"), "foo::bar()");
        assert_eq!(
            demangle_symbol("_ZN4core9panicking5panic17h0123456789abcdefE"),
            "core::panicking::panic"
        );
        // Rust v0: `_RNvC7mycrate3foo` is `mycrate::foo`.
        assert_eq!(demangle_symbol("_RNvC7mycrate3foo"), "mycrate::foo");
        // A `_Z`/`_R` name that does not parse stays as it is.
        assert_eq!(demangle_symbol("_Zgarbage"), "_Zgarbage");
    }
}
