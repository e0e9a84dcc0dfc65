//! One loaded ELF object: its `PT_LOAD` layout, data and function symbols, and DWARF.
//!
//! The layout and symbols are copied out of the file at load time, so a malformed file
//! degrades to "fewer symbols" instead of an error or a panic. DWARF is decoded only when
//! a source line is first asked for: decoded, a C library's debug file alone takes ~40 MB
//! (sections inflated, abbreviations and line programs of every unit), which most traces
//! never need; until then only the file's mapping is kept (see `FileBytes`).

use std::{borrow::Cow, cell::OnceCell, sync::Arc};

use addr2line::gimli::{self, RunTimeEndian};
use object::{Object, ObjectSection, ObjectSegment, ObjectSymbol, SymbolKind};

use super::dwarf::SharedReader;
use crate::target::FileBytes;

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
}

impl Symbol {
    fn new(addr: u64, size: u64, name: &str, binding: u8) -> Self {
        // Among aliases (glibc has `pthread_mutex_lock` and `__pthread_mutex_lock` at one
        // address) show the public spelling: global before weak before local, then fewer
        // leading underscores, then the shorter name.
        let underscores = name.len() - name.trim_start_matches('_').len();
        Self {
            addr,
            size,
            name: name.into(),
            rank: (binding, underscores, name.len()),
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
        symbols.sort_by(|a, b| (a.addr, a.rank, &a.name).cmp(&(b.addr, b.rank, &b.name)));
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

/// A symbol found for an address: its name (demangled) and the address's offset into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SymbolHit {
    pub(crate) name: String,
    pub(crate) offset: u64,
}

impl SymbolHit {
    fn from_symbol(symbol: &Symbol, addr: u64) -> Self {
        Self {
            name: demangle_symbol(&symbol.name).into_owned(),
            offset: addr - symbol.addr,
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

/// A parsed ELF object.
pub(crate) struct ElfObject {
    segments: Vec<LoadSegment>,
    data: SymbolTable,
    functions: SymbolTable,
    dwarf: LazyDwarf,
}

/// The DWARF of an object, decoded on first use.
struct LazyDwarf {
    /// The file with `.debug_info` (the object, or its separate debug file), mapped.
    file: Option<FileBytes>,
    context: OnceCell<Option<addr2line::Context<SharedReader>>>,
}

impl LazyDwarf {
    fn new(file: Option<FileBytes>) -> Self {
        Self {
            file,
            context: OnceCell::new(),
        }
    }

    /// The decoded DWARF; `None` without any or when it cannot be parsed.
    fn context(&self) -> Option<&addr2line::Context<SharedReader>> {
        self.context
            .get_or_init(|| {
                let bytes = self.file.as_ref()?;
                let context = object::File::parse(&**bytes)
                    .ok()
                    .and_then(|f| load_dwarf(&f));
                // The sections were copied or inflated: their file pages are not read again.
                bytes.release_resident();
                context
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
            .finish()
    }
}

impl ElfObject {
    /// Parses an ELF file. `None` when the bytes are not an ELF object object can read.
    ///
    /// `debug_file` is asked for the separate debug file (`/usr/lib/debug/.build-id/..`) with
    /// the given build id when the object has no DWARF of its own; its symbols and DWARF are
    /// used in addition to the object's.
    pub(crate) fn parse(
        bytes: FileBytes,
        debug_file: impl FnOnce(&[u8]) -> Option<FileBytes>,
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
        collect_symbols(&file, &mut data, &mut functions);
        let has_dwarf = file.section_by_name(".debug_info").is_some();
        let mut dwarf_file = None;
        if !has_dwarf
            && let Some(debug_bytes) = file.build_id().ok().flatten().and_then(debug_file)
            && let Ok(debug) = object::File::parse(&*debug_bytes)
        {
            // The debug file's symbol table has the local symbols a stripped library lost.
            collect_symbols(&debug, &mut data, &mut functions);
            if debug.section_by_name(".debug_info").is_some() {
                dwarf_file = Some(debug_bytes);
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
            dwarf: LazyDwarf::new(dwarf_file),
        })
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
        let ctx = self.dwarf.context()?;
        // Split DWARF (.dwo) is not loaded: what the skeleton units have is good enough.
        let mut frames = ctx.find_frames(vaddr).skip_all_loads().ok()?;
        let mut info = SourceInfo::default();
        while let Ok(Some(frame)) = frames.next() {
            if info.file.is_none()
                && let Some(location) = &frame.location
            {
                info.file = location.file.map(str::to_owned);
                info.line = location.line;
            }
            if let Some(name) = frame.function.as_ref().and_then(|f| f.demangle().ok()) {
                info.functions.push(name.into_owned());
            }
        }
        (info.file.is_some() || !info.functions.is_empty()).then_some(info)
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

/// Adds the data and function symbols of `.symtab` and `.dynsym` of `file`.
fn collect_symbols(file: &object::File<'_>, data: &mut Vec<Symbol>, functions: &mut Vec<Symbol>) {
    for symbol in file.symbols().chain(file.dynamic_symbols()) {
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
                functions.push(Symbol::new(addr, 16, &format!("{name}@plt"), 3));
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
            )),
            // STT_FUNC and STT_GNU_IFUNC.
            SymbolKind::Text => functions.push(Symbol::new(
                addr,
                symbol.size(),
                name,
                binding_rank(&symbol),
            )),
            _ => {}
        }
    }
}

/// Copies the DWARF sections of `file` into an `addr2line` context; `None` without
/// `.debug_info` or when it cannot be parsed.
fn load_dwarf(file: &object::File<'_>) -> Option<addr2line::Context<SharedReader>> {
    file.section_by_name(".debug_info")?;
    let endian = if file.is_little_endian() {
        RunTimeEndian::Little
    } else {
        RunTimeEndian::Big
    };
    let load = |id: gimli::SectionId| -> Result<SharedReader, gimli::Error> {
        // A missing or unreadable section reads as empty, which gimli treats as absent;
        // compressed sections (debug files are often zlib- or zstd-compressed) are
        // inflated here, the bulk of the time a debug file takes to load.
        let bytes = file
            .section_by_name(id.name())
            .and_then(|s| s.uncompressed_data().ok())
            .unwrap_or(Cow::Borrowed(&[]));
        Ok(SharedReader::new(Arc::from(bytes.as_ref()), endian))
    };
    let dwarf = gimli::Dwarf::load(load).ok()?;
    match addr2line::Context::from_dwarf(dwarf) {
        Ok(ctx) => Some(ctx),
        Err(err) => {
            log::debug!("unusable DWARF: {err}");
            None
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]
mod tests {
    use super::*;

    fn table(symbols: &[(u64, u64, &str, u8)]) -> SymbolTable {
        SymbolTable::new(
            symbols
                .iter()
                .map(|&(a, s, n, b)| Symbol::new(a, s, n, b))
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
        let rust = Symbol::new(0x10, 4, "_ZN4core9panicking5panic17h0123456789abcdefE", 0);
        assert_eq!(
            SymbolHit::from_symbol(&rust, 0x12).name,
            "core::panicking::panic"
        );
        let cpp = Symbol::new(0x10, 4, "_ZN3foo3barEv", 0);
        assert_eq!(
            SymbolHit::from_symbol(&cpp, 0x10),
            SymbolHit {
                name: "foo::bar()".into(),
                offset: 0
            }
        );
        let c = Symbol::new(0x10, 4, "worker_fn", 0);
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
            let symbol = Symbol::new(0x10, 4, c_name, 0);
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
