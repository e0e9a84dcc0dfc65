//! Names for lock addresses and stack frames of one traced process.
//!
//! A [`Symbolizer`] is built once per target from its memory maps, so it keeps working after
//! the target exits (findings are often reported then). The ELF objects behind the maps are
//! opened lazily, on the first address that falls in them, and cached by path.
//!
//! Address translation: a runtime address in a file mapping becomes a file offset
//! (`addr - start + offset`), then an ELF virtual address through the `PT_LOAD` segment that
//! holds that offset; this covers PIE and non-PIE executables and shared libraries alike.
//! The anonymous mapping right after an object's last file mapping is the rest of its
//! `.bss`, so it is attributed to that object as if the file mapping went on.
//!
//! Names come from the object's `.symtab` and `.dynsym`, and, when the object has no DWARF
//! of its own, from a separate debug file: by build id (`DIR/.build-id/xx/rest.debug`,
//! where Debian's `-dbgsym` and `-dbg` packages install them) or by `.gnu_debuglink`
//! (next to the object, in its `.debug/`, or `DIR/` + the object's directory), `DIR`
//! being each of the [`DebugDirs`]. The report's notes say, for each object it used that
//! has no `.symtab`, which of these its names came from ([`Symbolizer::name_notes`]).

mod dwarf;
mod dwarf_index;
mod elf;
mod function_offsets;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use self::elf::{DebugVia, DebugWanted, ElfObject, FoundDebugFile};
pub use self::function_offsets::function_file_offsets;
use crate::{
    model::{LockRef, NameSource},
    target::{FileBytes, MapEntry, ProcError, TargetProcess, mapped_file},
    unwind::{CodeReader, cfi::FrameRule, eh_frame::ObjectCfi},
};

/// Failure to build or refresh a [`Symbolizer`]. Lookups themselves never fail: an address
/// that cannot be named just gets a less precise description.
#[derive(Debug, thiserror::Error)]
pub enum SymbolError {
    /// The target's memory maps could not be read.
    #[error("cannot read the memory maps of the target")]
    Proc(#[from] ProcError),
}

/// What a stretch of the target's address space holds.
#[derive(Debug, Clone, PartialEq, Eq)]
enum RegionKind {
    /// Part of the file at `path` (as the target names it), whose inode is `inode`.
    /// `bss` marks the anonymous mapping that continues the object's last file mapping.
    Object { path: String, inode: u64, bss: bool },
    /// A kernel-named mapping such as `[heap]`, `[stack]`, `[vdso]` or `[anon:name]`.
    Named(String),
    /// Anonymous memory (mmap'ed heaps, thread stacks, JIT code).
    Anonymous,
}

/// One mapping, with `offset` being the file offset of `start` (continued past the end of
/// the file for `.bss` regions).
#[derive(Debug, Clone)]
struct Region {
    start: u64,
    end: u64,
    offset: u64,
    kind: RegionKind,
}

impl Region {
    fn file_offset(&self, addr: u64) -> u64 {
        addr - self.start + self.offset
    }
}

/// Turns maps into regions sorted by address, attributing `.bss` continuations.
fn regions_from_maps(mut maps: Vec<MapEntry>) -> Vec<Region> {
    maps.sort_by_key(|m| m.start);
    let mut regions: Vec<Region> = Vec::with_capacity(maps.len());
    for map in maps {
        let kind = match map.path {
            Some(path) if path.starts_with('/') => RegionKind::Object {
                path,
                inode: map.inode,
                bss: false,
            },
            Some(name) => RegionKind::Named(name),
            None => RegionKind::Anonymous,
        };
        let region = match (&kind, regions.last()) {
            // Writable anonymous memory directly after a file mapping of an object: the part
            // of its `.bss` beyond the last file page. Whether the address really is inside
            // the segment's memory size is checked at lookup, since unrelated anonymous
            // mappings can be placed (and merged) right there too.
            (
                RegionKind::Anonymous,
                Some(
                    prev @ Region {
                        kind: RegionKind::Object { path, inode, .. },
                        ..
                    },
                ),
            ) if map.write && prev.end == map.start => Region {
                start: map.start,
                end: map.end,
                offset: prev.file_offset(map.start),
                kind: RegionKind::Object {
                    path: path.clone(),
                    inode: *inode,
                    bss: true,
                },
            },
            _ => Region {
                start: map.start,
                end: map.end,
                offset: map.offset,
                kind,
            },
        };
        regions.push(region);
    }
    regions
}

/// A cached object: `None` when the file could not be opened or is not ELF, remembered so
/// the failure is not retried on every lookup.
#[derive(Debug)]
struct CachedObject {
    inode: u64,
    elf: Option<ElfObject>,
}

/// Where an address lies, resolved as far as possible.
enum Place<'a> {
    /// In an object, at this ELF virtual address (or file offset when the file is unreadable).
    Object {
        name: &'a str,
        elf: Option<&'a ElfObject>,
        vaddr: Option<u64>,
        file_offset: u64,
    },
    /// In a kernel-named mapping, this far from its start.
    Named { name: &'a str, offset: u64 },
    /// In anonymous memory (an allocator's: offsets into it mean nothing).
    Anonymous,
}

/// Where the files the target maps are opened from here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRoots {
    /// Prefix under which the target's absolute paths are opened (`/proc/PID/root`).
    pub root: PathBuf,
    /// The target's `/proc/PID/map_files`: the mapped files themselves, for those whose
    /// path no longer leads to them (deleted, replaced, or a memfd that never had one).
    pub mapped_files: Option<PathBuf>,
    /// Where separate debug files are looked for.
    pub debug_dirs: DebugDirs,
}

/// The directories separate debug files are looked for in, as gdb's
/// `debug-file-directory` and perf's: `/usr/lib/debug` unless others are given
/// (`--debug-dir`, which replaces it). A path is looked up under the target's root first
/// (a container's own debug files), then as it is. `Copy`, as the session's configuration
/// is: the directories given are kept for the life of the process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DebugDirs(Option<&'static [PathBuf]>);

impl DebugDirs {
    /// The directory used when none is given.
    pub const DEFAULT: &'static str = "/usr/lib/debug";

    /// `dirs` instead of the default (the default when `dirs` is empty).
    #[must_use]
    pub fn given(dirs: Vec<PathBuf>) -> Self {
        if dirs.is_empty() {
            Self(None)
        } else {
            Self(Some(Box::leak(dirs.into_boxed_slice())))
        }
    }

    /// The directories, in the order they are searched; those that are not UTF-8 are
    /// left out (paths the target names are matched as text).
    #[must_use]
    pub fn dirs(self) -> Vec<&'static str> {
        match self.0 {
            None => vec![Self::DEFAULT],
            Some(dirs) => dirs.iter().filter_map(|d| d.to_str()).collect(),
        }
    }

    /// The directories for a note: `/usr/lib/debug`, or `/a, /b`.
    fn describe(self) -> String {
        self.dirs().join(", ")
    }
}

/// Symbolizes data and code addresses of one process.
#[derive(Debug)]
pub struct Symbolizer {
    /// Where the target's files are opened.
    roots: FileRoots,
    regions: Vec<Region>,
    /// Loaded objects by path as the target names it.
    objects: HashMap<String, CachedObject>,
    /// Files opened to read code from ([`CodeReader`]), by path and inode (`None`: could
    /// not be opened); only used once the target's memory cannot be read.
    code_files: HashMap<(String, u64), Option<fs::File>>,
    /// Call frame information of the objects stacks were unwound through, by path and
    /// inode (`None`: unreadable or without `.eh_frame`); one per mapped object at most.
    cfi_objects: HashMap<(String, u64), Option<ObjectCfi>>,
    /// Rules already looked up, by runtime address; emptied when full
    /// ([`MAX_CACHED_FRAME_RULES`]) and when the maps are read again.
    frame_rules: HashMap<u64, Option<FrameRule>>,
    /// The objects something was named in, by path, with the note on where their names
    /// come from (`None` for an object with its own `.symtab`): see [`Self::name_notes`].
    named_objects: BTreeMap<String, Option<String>>,
    /// Stripped objects used once [`MAX_NAMED_OBJECTS`] were noted.
    stripped_not_noted: usize,
}

/// Most objects [`Symbolizer::name_notes`] keeps track of: a process maps a few dozen.
const MAX_NAMED_OBJECTS: usize = 512;

/// Most frame rules [`Symbolizer::frame_rule`] keeps: lock stacks pass through few code
/// addresses, so this is rarely reached; when it is, the cache starts over.
const MAX_CACHED_FRAME_RULES: usize = 4096;

impl CodeReader for Symbolizer {
    fn code_before(&mut self, addr: u64, len: usize) -> Option<Vec<u8>> {
        self.file_code_before(addr, len)
    }
}

impl Symbolizer {
    /// Builds a symbolizer from the current maps of `target`; files are opened through
    /// its root (`/proc/PID/root`) so targets in containers work.
    ///
    /// # Errors
    /// [`SymbolError::Proc`] when the maps cannot be read (process gone, no permission).
    pub fn for_target(target: &dyn TargetProcess) -> Result<Self, SymbolError> {
        Ok(Self::from_target_maps(target.maps()?, target))
    }

    /// Builds a symbolizer from maps of `target` already read; files are opened as in
    /// [`for_target`](Self::for_target), and also through its `/proc/PID/map_files` when
    /// their path no longer leads to them.
    #[must_use]
    pub fn from_target_maps(maps: Vec<MapEntry>, target: &dyn TargetProcess) -> Self {
        Self::from_maps(maps, target.host_path("/")).with_mapped_files(target.mapped_files_dir())
    }

    /// Builds a symbolizer from maps already read; files are opened under `root` (`/` to open
    /// them as they are named).
    #[must_use]
    pub fn from_maps(maps: Vec<MapEntry>, root: PathBuf) -> Self {
        Self {
            roots: FileRoots {
                root,
                mapped_files: None,
                debug_dirs: DebugDirs::default(),
            },
            regions: regions_from_maps(maps),
            objects: HashMap::new(),
            code_files: HashMap::new(),
            cfi_objects: HashMap::new(),
            frame_rules: HashMap::new(),
            named_objects: BTreeMap::new(),
            stripped_not_noted: 0,
        }
    }

    /// Looks for separate debug files in `dirs` (see [`DebugDirs`]).
    #[must_use]
    pub fn with_debug_dirs(mut self, dirs: DebugDirs) -> Self {
        self.roots.debug_dirs = dirs;
        self
    }

    /// One note per object used to name something (a lock, a frame) that has no
    /// `.symtab`, saying where its names came from: a debug file (which), `.dynsym` only,
    /// or nowhere (`object+offset`). Objects with their own symbol table get none.
    #[must_use]
    pub fn name_notes(&self) -> Vec<String> {
        let mut notes: Vec<String> = self.named_objects.values().flatten().cloned().collect();
        if self.stripped_not_noted > 0 {
            notes.push(format!(
                "{} more stripped object(s) were used, not listed",
                self.stripped_not_noted
            ));
        }
        notes
    }

    /// Also opens mapped files through `dir` (the target's `/proc/PID/map_files`, from
    /// [`TargetProcess::mapped_files_dir`]) when their path does not lead to them.
    #[must_use]
    pub fn with_mapped_files(mut self, dir: Option<PathBuf>) -> Self {
        self.roots.mapped_files = dir;
        self
    }

    /// Re-reads the maps of `target` (to see objects `dlopen`ed since), keeping the
    /// loaded objects that are still mapped from the same file.
    ///
    /// # Errors
    /// [`SymbolError::Proc`] when the maps cannot be read; the symbolizer is then unchanged.
    pub fn refresh(&mut self, target: &dyn TargetProcess) -> Result<(), SymbolError> {
        let maps = target.maps()?;
        self.roots = FileRoots {
            root: target.host_path("/"),
            mapped_files: target.mapped_files_dir(),
            debug_dirs: self.roots.debug_dirs,
        };
        self.regions = regions_from_maps(maps);
        let mapped: HashSet<(&str, u64)> = self
            .regions
            .iter()
            .filter_map(|r| match &r.kind {
                RegionKind::Object { path, inode, .. } => Some((path.as_str(), *inode)),
                _ => None,
            })
            .collect();
        self.objects
            .retain(|path, cached| mapped.contains(&(path.as_str(), cached.inode)));
        self.cfi_objects
            .retain(|(path, inode), _| mapped.contains(&(path.as_str(), *inode)));
        self.frame_rules.clear();
        Ok(())
    }

    /// What [`preload`] needs to load, off this thread, the objects nearly every lock
    /// report names: the root they are opened under, and the path and inode of the main
    /// executable (the lowest mapped object) and of the C library (where every wait and
    /// lock function is), unless loaded already. Other objects load when first needed,
    /// so a process mapping hundreds of libraries costs no memory for them up front.
    #[must_use]
    pub fn preload_list(&self) -> (FileRoots, Vec<(String, u64)>) {
        let mut seen = HashSet::new();
        let objects = self
            .regions
            .iter()
            .filter_map(|r| match &r.kind {
                RegionKind::Object { path, inode, .. } => Some((path, *inode)),
                _ => None,
            })
            .enumerate()
            .filter(|&(i, (path, _))| i == 0 || is_c_library(file_name(path)))
            .map(|(_, object)| object)
            .filter(|(path, _)| !self.objects.contains_key(path.as_str()))
            .filter(|&(path, inode)| seen.insert((path.as_str(), inode)))
            .map(|(path, inode)| (path.clone(), inode))
            .collect();
        (self.roots.clone(), objects)
    }

    /// Takes the objects [`preload`] loaded, except those loaded here in the meantime.
    pub fn adopt(&mut self, preloaded: Preloaded) {
        for (path, cached) in preloaded.0 {
            self.objects.entry(path).or_insert(cached);
        }
    }

    /// The global or static variable containing `addr`: `"lock_a"`, or `"table+0x28"` when
    /// `addr` is inside it. Uses `STT_OBJECT`/`STT_COMMON` symbols of `.symtab` and `.dynsym`
    /// (not `STT_TLS`), and of a separate debug file. `None` when no symbol covers `addr`.
    pub fn data_name(&mut self, addr: u64) -> Option<String> {
        self.data_symbol(addr).map(|(name, _)| name)
    }

    /// [`data_name`](Self::data_name), with the table the name was found in.
    pub fn data_symbol(&mut self, addr: u64) -> Option<(String, NameSource)> {
        let Place::Object {
            elf: Some(elf),
            vaddr: Some(vaddr),
            ..
        } = self.place(addr, true)?
        else {
            return None;
        };
        let hit = elf.data_symbol(vaddr)?;
        Some((with_offset(&hit.name, hit.offset), hit.source))
    }

    /// The lock at `addr` as the report names it: its data symbol, else where it lies.
    pub fn lock_ref(&mut self, addr: u64) -> LockRef {
        let (name, name_source) = self.data_symbol(addr).unzip();
        let location = if name.is_none() {
            self.location(addr)
        } else {
            None
        };
        LockRef {
            addr,
            name,
            location,
            name_source,
        }
    }

    /// Where `addr` lies, for when it has no name: `"prog+0x4010"` (object file name and ELF
    /// virtual address), `"[stack]"`, `"[vdso]+0x10"` (offset from a named mapping's start),
    /// or `None` when nothing is mapped there or the address is in the heap or other
    /// anonymous memory (`[heap]`, `[anon:…]`, Go's arenas): an offset into an allocator's
    /// mapping says nothing a reader can use, so such a lock is shown by its address.
    pub fn location(&mut self, addr: u64) -> Option<String> {
        Some(match self.place(addr, true)? {
            Place::Anonymous => return None,
            Place::Named { name, .. } if name == "[heap]" || name.starts_with("[anon") => {
                return None;
            }
            Place::Object {
                name,
                vaddr,
                file_offset,
                ..
            } => {
                format!("{name}+{:#x}", vaddr.unwrap_or(file_offset))
            }
            // Offsets into a stack mean nothing across runs or threads.
            Place::Named { name, .. } if name.starts_with("[stack") => "[stack]".to_owned(),
            Place::Named { name, offset } => format!("{name}+{offset:#x}"),
        })
    }

    /// The function, source line and object of code address `addr`.
    ///
    /// The function comes from the `STT_FUNC` symbols (demangled, Rust and C++), or from DWARF
    /// when no symbol covers `addr`; file and line come from DWARF when the object has it
    /// (or a `/usr/lib/debug/.build-id` file does).
    pub fn frame(&mut self, addr: u64) -> Frame {
        let mut frame = Frame {
            addr,
            ..Frame::default()
        };
        match self.place(addr, true) {
            Some(Place::Object {
                name,
                elf,
                vaddr,
                file_offset,
            }) => {
                frame.object = Some(name.to_owned());
                frame.offset = vaddr.unwrap_or(file_offset);
                if let (Some(elf), Some(vaddr)) = (elf, vaddr) {
                    if let Some(hit) = elf.function_symbol(vaddr) {
                        frame.function = Some(hit.name);
                        frame.offset = hit.offset;
                    }
                    if let Some(mut source) = elf.source(vaddr) {
                        frame.file = source.file;
                        frame.line = source.line;
                        // The outermost DWARF frame is the real function, already named (by
                        // its symbol, or by DWARF when there is none); the rest were inlined.
                        let outermost = source.functions.pop();
                        if frame.function.is_none() {
                            frame.function = outermost;
                            // Offset into a function known only to DWARF is unknown.
                            frame.offset = 0;
                        }
                        frame.inlined = source.functions;
                    }
                }
            }
            Some(Place::Named { name, offset }) => {
                frame.object = Some(name.to_owned());
                frame.offset = offset;
            }
            Some(Place::Anonymous) | None => {}
        }
        frame
    }

    /// The `len` bytes right before `addr`, read from the file mapped there (for the
    /// return-address check once the target's memory no longer holds this program's
    /// code); `None` when `addr` is not in a file mapping with `len` bytes before it, or
    /// the file cannot be read.
    fn file_code_before(&mut self, addr: u64, len: usize) -> Option<Vec<u8>> {
        use std::os::unix::fs::FileExt as _;
        let last = addr.checked_sub(1)?;
        let idx = self
            .regions
            .partition_point(|r| r.start <= last)
            .checked_sub(1)?;
        let region = &self.regions[idx];
        let start = addr.checked_sub(len as u64)?;
        if start < region.start || addr > region.end {
            return None;
        }
        let RegionKind::Object {
            path,
            inode,
            bss: false,
        } = &region.kind
        else {
            return None;
        };
        let offset = region.file_offset(start);
        let key = (path.clone(), *inode);
        let file = self
            .code_files
            .entry(key)
            .or_insert_with(|| {
                find_file(&self.roots, path, *inode).and_then(|p| fs::File::open(p).ok())
            })
            .as_ref()?;
        let mut code = vec![0; len];
        file.read_exact_at(&mut code, offset).ok()?;
        Some(code)
    }

    /// The call frame rules (`.eh_frame`) of the code at runtime address `addr`, for
    /// unwinding a stack copy (`unwind::cfi`); `None` when `addr` is not in an object's
    /// file mapping, the object has no usable CFI there, or its file cannot be read.
    pub fn frame_rule(&mut self, addr: u64) -> Option<FrameRule> {
        if let Some(&known) = self.frame_rules.get(&addr) {
            return known;
        }
        let rule = self.look_up_frame_rule(addr);
        if self.frame_rules.len() >= MAX_CACHED_FRAME_RULES {
            self.frame_rules.clear();
        }
        self.frame_rules.insert(addr, rule);
        rule
    }

    fn look_up_frame_rule(&mut self, addr: u64) -> Option<FrameRule> {
        let Place::Object {
            vaddr: Some(vaddr), ..
        } = self.place(addr, false)?
        else {
            return None;
        };
        let idx = self
            .regions
            .partition_point(|r| r.start <= addr)
            .checked_sub(1)?;
        let RegionKind::Object { path, inode, .. } = &self.regions[idx].kind else {
            return None;
        };
        let roots = &self.roots;
        self.cfi_objects
            .entry((path.clone(), *inode))
            .or_insert_with(|| read_file(roots, path, *inode).and_then(ObjectCfi::parse))
            .as_mut()?
            .rule_at(vaddr)
    }

    /// Finds the region of `addr` and, for objects, loads the object and translates `addr`;
    /// `for_report`: a name for the report is wanted, so the object goes into
    /// [`name_notes`](Self::name_notes).
    fn place(&mut self, addr: u64, for_report: bool) -> Option<Place<'_>> {
        let idx = self
            .regions
            .partition_point(|r| r.start <= addr)
            .checked_sub(1)?;
        let region = &self.regions[idx];
        if addr >= region.end {
            return None;
        }
        let offset = addr - region.start;
        match &region.kind {
            RegionKind::Object { path, inode, bss } => {
                let elf = load_object(&mut self.objects, &self.roots, path, *inode);
                if for_report
                    && let Some(elf) = elf
                    && !self.named_objects.contains_key(path.as_str())
                {
                    let note = elf
                        .name_origin()
                        .stripped_note(path, &self.roots.debug_dirs.describe());
                    if self.named_objects.len() < MAX_NAMED_OBJECTS {
                        self.named_objects.insert(path.clone(), note);
                    } else if note.is_some() {
                        self.stripped_not_noted += 1;
                    }
                }
                let file_offset = region.file_offset(addr);
                let vaddr = elf.and_then(|e| e.vaddr_of_offset(file_offset, *bss));
                if *bss && vaddr.is_none() {
                    // Adjacent to the object but beyond its `.bss`: unrelated memory.
                    return Some(Place::Anonymous);
                }
                Some(Place::Object {
                    name: file_name(path),
                    elf,
                    vaddr,
                    file_offset,
                })
            }
            RegionKind::Named(name) => Some(Place::Named { name, offset }),
            RegionKind::Anonymous => Some(Place::Anonymous),
        }
    }
}

/// `name`, or `name+0x..` when `offset` is not zero.
fn with_offset(name: &str, offset: u64) -> String {
    if offset == 0 {
        name.to_owned()
    } else {
        format!("{name}+{offset:#x}")
    }
}

/// Whether a file name is glibc's or musl's C library or its thread library.
fn is_c_library(name: &str) -> bool {
    [
        "libc.so",
        "libc-",
        "libpthread.so",
        "libpthread-",
        "ld-musl-",
    ]
    .iter()
    .any(|p| name.starts_with(p))
}

/// The last component of `path`.
fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// `path` (absolute, as the target names it) under `root`.
fn under_root(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

/// Objects loaded ahead of need by [`preload`], for [`Symbolizer::adopt`].
#[derive(Debug)]
pub struct Preloaded(Vec<(String, CachedObject)>);

/// Loads `objects` (from [`Symbolizer::preload_list`]) under `root`, in order, until
/// `budget` has passed. Meant for a thread of its own: reading symbol tables is then done
/// by the time the first report needs it, and never delays draining events. DWARF is
/// decoded later, by the first lookup of a source line in the object (a libc debug file
/// takes ~0.1 s and ~40 MB decoded, which most traces never need).
#[must_use]
pub fn preload(roots: &FileRoots, objects: Vec<(String, u64)>, budget: Duration) -> Preloaded {
    let started = Instant::now();
    let mut loaded = Vec::new();
    for (path, inode) in objects {
        if started.elapsed() >= budget {
            break;
        }
        let elf = read_object(roots, &path, inode);
        loaded.push((path, CachedObject { inode, elf }));
    }
    Preloaded(loaded)
}

/// Returns the cached object for `path`, loading it on first use.
fn load_object<'a>(
    objects: &'a mut HashMap<String, CachedObject>,
    roots: &FileRoots,
    path: &str,
    inode: u64,
) -> Option<&'a ElfObject> {
    if objects.get(path).is_some_and(|c| c.inode != inode) {
        // Same path, different file (replaced on disk and mapped again): reload.
        objects.remove(path);
    }
    objects
        .entry(path.to_owned())
        .or_insert_with(|| CachedObject {
            inode,
            elf: read_object(roots, path, inode),
        })
        .elf
        .as_ref()
}

/// Whether the file at `path` is the one with inode `inode` (0: unknown, taken as yes).
fn is_inode(path: &Path, inode: u64) -> bool {
    inode == 0 || fs::metadata(path).is_ok_and(|m| m.ino() == inode)
}

/// Maps the file the target maps at `path` (mapped, not read: a large executable would
/// otherwise be all resident while its symbols are copied out), found by [`find_file`].
fn read_file(roots: &FileRoots, path: &str, inode: u64) -> Option<FileBytes> {
    let found = find_file(roots, path, inode)?;
    match FileBytes::open(&found) {
        Ok(bytes) => Some(bytes),
        Err(err) => {
            log::debug!("cannot read {}: {err}", found.display());
            None
        }
    }
}

/// Where the file the target maps at `path` opens from here: through the target's root
/// when the file there is the one mapped; else the mapping itself (a deleted or replaced
/// file, a memfd: their path leads nowhere, or to another file); else `path` in our own
/// namespace when it is the same file.
fn find_file(roots: &FileRoots, path: &str, inode: u64) -> Option<PathBuf> {
    let rooted = under_root(&roots.root, path);
    if is_inode(&rooted, inode) && fs::File::open(&rooted).is_ok() {
        return Some(rooted);
    }
    log::debug!("{} is not the file the target mapped", rooted.display());
    if let Some(mapped) = roots
        .mapped_files
        .as_deref()
        .and_then(|dir| mapped_file(dir, path, inode))
        && fs::File::open(&mapped).is_ok()
    {
        return Some(mapped);
    }
    if rooted == Path::new(path) {
        return None;
    }
    // `/proc/PID/root` vanishes when the target exits; the same path in our own namespace
    // is the same file only if the inode says so (containers, or a rebuilt binary, differ).
    let meta = fs::metadata(path).ok()?;
    if inode != 0 && meta.ino() != inode {
        log::debug!(
            "{path} is not the file the target mapped (inode {} != {inode})",
            meta.ino()
        );
        return None;
    }
    Some(PathBuf::from(path))
}

fn read_object(roots: &FileRoots, path: &str, inode: u64) -> Option<ElfObject> {
    let bytes = read_file(roots, path, inode)?;
    let elf = ElfObject::parse(bytes, |wanted| find_debug_file(roots, path, wanted));
    if elf.is_none() {
        log::debug!("{path} is not a readable ELF object; its addresses stay unnamed");
    }
    elf
}

/// The separate debug file of the object the target maps at `path`: the first of
/// [`debug_file_candidates`] that exists and matches.
fn find_debug_file(
    roots: &FileRoots,
    path: &str,
    wanted: &DebugWanted<'_>,
) -> Option<FoundDebugFile> {
    for (candidate, via) in debug_file_candidates(path, wanted, roots.debug_dirs) {
        if candidate == path {
            continue;
        }
        // Looked up where the target's files live first; its inode is unknown, hence 0.
        let Some(bytes) = read_file(roots, &candidate, 0) else {
            continue;
        };
        if wanted.is_matched_by(via, &bytes) {
            return Some(FoundDebugFile {
                bytes,
                path: candidate,
            });
        }
        log::debug!("{candidate} is not the debug file of {path}");
    }
    None
}

/// Where the debug file of the object at `object_path` may be, in the order gdb looks:
/// by build id under each debug directory (`DIR/.build-id/ab/cdef….debug`), then by the
/// debuglink's file name next to the object, in the `.debug/` beside it, and under each
/// debug directory followed by the object's directory (`DIR/usr/bin/prog.debug`).
fn debug_file_candidates(
    object_path: &str,
    wanted: &DebugWanted<'_>,
    dirs: DebugDirs,
) -> Vec<(String, DebugVia)> {
    let dirs: Vec<&str> = dirs
        .dirs()
        .into_iter()
        .map(|d| d.trim_end_matches('/'))
        .collect();
    let mut candidates = Vec::new();
    if let Some((head, tail)) = wanted.build_id.and_then(<[u8]>::split_first)
        && !tail.is_empty()
    {
        let rest = elf::hex(tail);
        for dir in &dirs {
            candidates.push((
                format!("{dir}/.build-id/{head:02x}/{rest}.debug"),
                DebugVia::BuildId,
            ));
        }
    }
    if let Some((name, _)) = wanted.link {
        let object_dir = object_path.rsplit_once('/').map_or("", |(dir, _)| dir);
        candidates.push((format!("{object_dir}/{name}"), DebugVia::Link));
        candidates.push((format!("{object_dir}/.debug/{name}"), DebugVia::Link));
        for dir in &dirs {
            candidates.push((format!("{dir}{object_dir}/{name}"), DebugVia::Link));
        }
    }
    candidates
}

/// A symbolized code address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frame {
    /// The runtime address.
    pub addr: u64,
    /// The (demangled) function name, when known.
    pub function: Option<String>,
    /// Offset of `addr` into `function`; without a function, into `object` (the ELF virtual
    /// address for files, offset from the mapping's start for `[vdso]` and the like).
    pub offset: u64,
    /// Source file from DWARF (as recorded by the compiler, usually absolute).
    pub file: Option<String>,
    /// Source line from DWARF.
    pub line: Option<u32>,
    /// File name of the object (`libc.so.6`) or the mapping's name (`[vdso]`).
    pub object: Option<String>,
    /// Functions inlined at `addr` into `function`, innermost first (outermost last).
    pub inlined: Vec<String>,
}

impl Frame {
    /// One-line description: `worker_ab+0x2a (abba.c:31)`, `pthread_mutex_lock+0x82
    /// (libc.so.6)`, `prog+0x1234` when unnamed, `0x7f00...` when unmapped.
    #[must_use]
    pub fn display(&self) -> String {
        let head = self.unnamed_or_function(true);
        match (&self.file, self.line, &self.function, &self.object) {
            (Some(file), Some(line), ..) => format!("{head} ({}:{line})", file_name(file)),
            (Some(file), None, ..) => format!("{head} ({})", file_name(file)),
            // Without a source location, the object tells which library a named function is in;
            // an unnamed frame already shows it.
            (None, _, Some(_), Some(object)) => format!("{head} ({object})"),
            (None, ..) => head,
        }
    }

    /// The function name alone, or the fallback of [`display`](Self::display) without the
    /// source location; for JSON `stack` arrays.
    #[must_use]
    pub fn function_name(&self) -> String {
        self.unnamed_or_function(false)
    }

    fn unnamed_or_function(&self, with_offset_into_function: bool) -> String {
        match (&self.function, &self.object) {
            (Some(function), _) if with_offset_into_function => with_offset(function, self.offset),
            (Some(function), _) => function.clone(),
            (None, Some(object)) => format!("{object}+{:#x}", self.offset),
            (None, None) => format!("{:#x}", self.addr),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]
mod tests {
    use std::{
        io::{BufRead, BufReader},
        process::{Child, Command, Stdio},
    };

    use super::*;
    use crate::target::{LiveProcess, find_libc, is_elf_stripped, parse_maps};

    const PROGRAM: &str = r#"
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

pthread_mutex_t lock_a = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t lock_b;
struct { long pad[5]; pthread_mutex_t m; } table;
/* Big enough that most of it lies in the anonymous mapping after the file-backed .data. */
char big_bss[1 << 20];

void *worker_fn(void *arg)
{
    pthread_mutex_lock(&lock_a);
    pthread_mutex_unlock(&lock_a);
    return arg;
}

volatile int sink;

static inline __attribute__((always_inline)) void inner_helper(int x)
{
    sink = x * 3;
}

void outer_fn(int x)
{
    inner_helper(x);
    inner_helper(x + 1);
}

int main(void)
{
    printf("lock_a=%p lock_b=%p table_m=%p worker_fn=%p mutex_lock=%p big_end=%p outer_fn=%p\n",
           (void *)&lock_a, (void *)&lock_b, (void *)&table.m, (void *)worker_fn,
           (void *)pthread_mutex_lock, (void *)&big_bss[(1 << 20) - 8], (void *)outer_fn);
    fflush(stdout);
    sleep(600);
    return 0;
}
"#;

    /// The test program, killed and reaped when dropped (also when an assertion fails).
    struct Target {
        child: Child,
        addrs: HashMap<String, u64>,
    }

    impl Target {
        fn spawn(exe: &Path) -> Self {
            let mut child = Command::new(exe).stdout(Stdio::piped()).spawn().unwrap();
            let mut line = String::new();
            BufReader::new(child.stdout.take().unwrap())
                .read_line(&mut line)
                .unwrap();
            let addrs = line
                .split_whitespace()
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap();
                    (
                        k.to_owned(),
                        u64::from_str_radix(v.trim_start_matches("0x"), 16).unwrap(),
                    )
                })
                .collect();
            Self { child, addrs }
        }

        fn pid(&self) -> u32 {
            self.child.id()
        }

        fn addr(&self, name: &str) -> u64 {
            self.addrs[name]
        }
    }

    impl Drop for Target {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// Compiles the test program with `flags`. Fails the test, saying so, without a C
    /// compiler: a skipped test would pass unseen.
    fn compile(dir: &Path, name: &str, flags: &[&str]) -> PathBuf {
        let src = dir.join("prog.c");
        fs::write(&src, PROGRAM).unwrap();
        let exe = dir.join(name);
        let status = Command::new("gcc")
            .args(["-g", "-O0", "-pthread"])
            .args(flags)
            .arg("-o")
            .arg(&exe)
            .arg(&src)
            .status();
        match status {
            Ok(s) if s.success() => exe,
            Ok(s) => panic!("gcc failed: {s}"),
            Err(err) => panic!(
                "gcc is missing (Debian package gcc): run `cargo xtask setup`, which installs everything the tests need ({err})"
            ),
        }
    }

    fn check_symbols(exe: &Path) {
        let target = Target::spawn(exe);
        let mut sym = Symbolizer::for_target(&LiveProcess::new(target.pid())).unwrap();
        assert_eq!(
            sym.data_name(target.addr("lock_a")).as_deref(),
            Some("lock_a")
        );
        assert_eq!(
            sym.data_name(target.addr("lock_b")).as_deref(),
            Some("lock_b")
        );
        assert_eq!(
            sym.data_name(target.addr("table_m")).as_deref(),
            Some("table+0x28")
        );
        assert_eq!(
            sym.data_name(target.addr("lock_a") + 8).as_deref(),
            Some("lock_a+0x8")
        );
        let lock_b = sym.lock_ref(target.addr("lock_b"));
        assert_eq!(
            (lock_b.name.as_deref(), lock_b.name_source),
            (Some("lock_b"), Some(NameSource::Symtab))
        );
        assert_eq!(
            sym.data_name(target.addr("big_end")).as_deref(),
            Some("big_bss+0xffff8")
        );
        // The `.bss` tail really is in the anonymous mapping after the file mapping.
        let maps = LiveProcess::new(target.pid()).maps().unwrap();
        let big_end_map = maps
            .iter()
            .find(|m| m.contains(target.addr("big_end")))
            .unwrap();
        assert_eq!(big_end_map.path, None);

        let frame = sym.frame(target.addr("worker_fn") + 4);
        assert_eq!(frame.function.as_deref(), Some("worker_fn"), "{frame:?}");
        assert_eq!(frame.offset, 4);
        assert!(
            frame.file.as_deref().is_some_and(|f| f.ends_with("prog.c")),
            "{frame:?}"
        );
        assert!(
            frame.line.is_some_and(|l| (10..=15).contains(&l)),
            "{frame:?}"
        );
        assert_eq!(
            frame.object.as_deref(),
            exe.file_name().and_then(|n| n.to_str())
        );
        assert!(
            frame.display().starts_with("worker_fn+0x4 (prog.c:"),
            "{}",
            frame.display()
        );
        assert_eq!(frame.function_name(), "worker_fn");

        // Code inlined into `outer_fn` names the inlined function too.
        let inlined = (0..64)
            .map(|off| sym.frame(target.addr("outer_fn") + off))
            .find(|f| !f.inlined.is_empty());
        let inlined = inlined.unwrap();
        assert_eq!(inlined.function.as_deref(), Some("outer_fn"));
        assert_eq!(inlined.inlined, ["inner_helper"]);

        let lock = sym.frame(target.addr("mutex_lock"));
        let function = lock.function.clone().unwrap_or_default();
        assert!(function.contains("pthread_mutex_lock"), "{lock:?}");

        // Lookups keep working from the cache and the saved maps after the target is gone.
        let pid = target.pid();
        let lock_a = target.addr("lock_a");
        drop(target);
        assert_eq!(sym.data_name(lock_a).as_deref(), Some("lock_a"));
        assert!(sym.refresh(&LiveProcess::new(pid)).is_err());
        assert_eq!(sym.data_name(lock_a).as_deref(), Some("lock_a"));
    }

    #[test]
    fn no_pie_program() {
        let dir = tempfile::tempdir().unwrap();
        check_symbols(&compile(dir.path(), "prog_nopie", &["-no-pie"]));
    }

    #[test]
    fn pie_program() {
        let dir = tempfile::tempdir().unwrap();
        let exe = compile(dir.path(), "prog_pie", &["-pie", "-fPIE"]);
        check_symbols(&exe);
        // Shared libraries: a PIC reference goes through the GOT to libc itself.
        let target = Target::spawn(&exe);
        let mut sym = Symbolizer::for_target(&LiveProcess::new(target.pid())).unwrap();
        // Code inlined into `outer_fn` names the inlined function too.
        let inlined = (0..64)
            .map(|off| sym.frame(target.addr("outer_fn") + off))
            .find(|f| !f.inlined.is_empty());
        let inlined = inlined.unwrap();
        assert_eq!(inlined.function.as_deref(), Some("outer_fn"));
        assert_eq!(inlined.inlined, ["inner_helper"]);

        let lock = sym.frame(target.addr("mutex_lock"));
        assert!(
            lock.object
                .as_deref()
                .is_some_and(|o| o.starts_with("libc")),
            "{lock:?}"
        );
        assert!(
            lock.display().contains("pthread_mutex_lock"),
            "{}",
            lock.display()
        );
        assert!(
            sym.location(target.addr("lock_a"))
                .unwrap()
                .starts_with("prog_pie+0x")
        );
    }

    #[test]
    fn stripped_program() {
        let dir = tempfile::tempdir().unwrap();
        let exe = compile(dir.path(), "prog", &[]);
        let stripped = dir.path().join("prog_stripped");
        let status = Command::new("strip")
            .arg("-o")
            .arg(&stripped)
            .arg(&exe)
            .status()
            .unwrap();
        assert!(status.success());
        assert!(is_elf_stripped(&stripped));
        assert!(!is_elf_stripped(&exe));

        let target = Target::spawn(&stripped);
        let mut sym = Symbolizer::for_target(&LiveProcess::new(target.pid())).unwrap();
        for name in ["lock_a", "lock_b", "table_m"] {
            assert_eq!(sym.data_name(target.addr(name)), None, "{name}");
            let lock = sym.lock_ref(target.addr(name));
            assert_eq!((lock.name, lock.name_source), (None, None), "{name}");
            let location = sym.location(target.addr(name)).unwrap();
            assert!(
                location.starts_with("prog_stripped+0x"),
                "{name}: {location}"
            );
        }
        // Same virtual addresses as the unstripped binary's symbols say.
        let mut full = Symbolizer::for_target(&LiveProcess::new(target.pid())).unwrap();
        let frame = full.frame(target.addr("worker_fn"));
        assert_eq!(frame.function, None);
        assert!(
            frame.display().starts_with("prog_stripped+0x"),
            "{}",
            frame.display()
        );
        assert_eq!(frame.display(), frame.function_name());
        let maps = LiveProcess::new(target.pid()).maps().unwrap();
        assert!(find_libc(&maps).is_some());
    }

    /// Runs a binutils command, failing the test with its stderr when it fails.
    pub(super) fn run(command: &mut Command) {
        let out = command
            .output()
            .unwrap_or_else(|e| panic!("{command:?}: {e} (binutils missing?)"));
        assert!(
            out.status.success(),
            "{command:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The ELF virtual address of symbol `name` in the unstripped `exe`.
    fn symbol_vaddr(exe: &Path, name: &str) -> u64 {
        use object::{Object as _, ObjectSymbol as _};
        let bytes = fs::read(exe).unwrap();
        let file = object::File::parse(&*bytes).unwrap();
        file.symbols()
            .find(|s| s.name() == Ok(name))
            .unwrap_or_else(|| panic!("{name} in {}", exe.display()))
            .address()
    }

    /// `exe`'s build id, lowercase hex.
    fn build_id(exe: &Path) -> String {
        use object::Object as _;
        let bytes = fs::read(exe).unwrap();
        let file = object::File::parse(&*bytes).unwrap();
        let id = file.build_id().unwrap().expect("a build id");
        elf::hex(id)
    }

    /// The object at `path`, loaded as for a target in our own namespace, with debug
    /// files looked for in `dirs`.
    fn load(path: &Path, dirs: &[&Path]) -> ElfObject {
        let roots = FileRoots {
            root: PathBuf::from("/"),
            mapped_files: None,
            debug_dirs: DebugDirs::given(dirs.iter().map(|d| d.to_path_buf()).collect()),
        };
        read_object(&roots, path.to_str().unwrap(), 0).unwrap()
    }

    /// The data symbol at `name`'s address in `unstripped`, looked up in `elf`.
    fn data_at(elf: &ElfObject, unstripped: &Path, name: &str) -> Option<(String, NameSource)> {
        elf.data_symbol(symbol_vaddr(unstripped, name))
            .map(|hit| (hit.name, hit.source))
    }

    fn function_at(elf: &ElfObject, unstripped: &Path, name: &str) -> Option<(String, NameSource)> {
        elf.function_symbol(symbol_vaddr(unstripped, name))
            .map(|hit| (hit.name, hit.source))
    }

    fn note_of(elf: &ElfObject, path: &Path, dirs: &str) -> Option<String> {
        elf.name_origin()
            .stripped_note(path.to_str().unwrap(), dirs)
    }

    /// `strip --strip-all` of `exe` into `NAME.stripped`.
    fn strip(exe: &Path) -> PathBuf {
        let stripped = exe.with_extension("stripped");
        run(Command::new("strip")
            .arg("--strip-all")
            .arg("-o")
            .arg(&stripped)
            .arg(exe));
        stripped
    }

    /// Guards the sharing of DWARF between symbolizers (`tracer serve`'s sessions): two
    /// objects loaded from the same program each name a frame from DWARF, through one
    /// index.
    #[test]
    fn objects_with_the_same_dwarf_share_its_index() {
        let dir = tempfile::tempdir().unwrap();
        let no_debug = tempfile::tempdir().unwrap();
        let exe = compile(dir.path(), "prog", &[]);
        let worker = symbol_vaddr(&exe, "worker_fn");
        let first = load(&exe, &[no_debug.path()]);
        let second = load(&exe, &[no_debug.path()]);
        for elf in [&first, &second] {
            let source = elf.source(worker).unwrap();
            assert!(
                source
                    .file
                    .as_deref()
                    .is_some_and(|f| f.ends_with("prog.c")),
                "{source:?}"
            );
        }
        let (a, b) = (
            first.shared_dwarf().unwrap(),
            second.shared_dwarf().unwrap(),
        );
        assert!(
            std::sync::Arc::ptr_eq(a, b),
            "two indexes of one program's DWARF"
        );
    }

    /// Guards issue 18 point 5: a stripped program keeps its exported symbols in
    /// `.dynsym` (`-rdynamic`), and those must name its exported lock and functions,
    /// said to come from `.dynsym`, while a `static` lock has no name at all; the same
    /// program unstripped names both from `.symtab`, with no note.
    #[test]
    fn stripped_object_names_exported_symbols_from_dynsym() {
        let dir = tempfile::tempdir().unwrap();
        let no_debug = tempfile::tempdir().unwrap();
        let exe = compile(dir.path(), "prog", &["-rdynamic"]);
        let full = load(&exe, &[no_debug.path()]);
        assert_eq!(
            data_at(&full, &exe, "lock_a"),
            Some(("lock_a".into(), NameSource::Symtab))
        );
        assert_eq!(
            data_at(&full, &exe, "lock_b"),
            Some(("lock_b".into(), NameSource::Symtab))
        );
        assert_eq!(note_of(&full, &exe, "d"), None);

        let stripped = strip(&exe);
        let elf = load(&stripped, &[no_debug.path()]);
        assert_eq!(
            data_at(&elf, &exe, "lock_a"),
            Some(("lock_a".into(), NameSource::Dynsym))
        );
        assert_eq!(data_at(&elf, &exe, "lock_b"), None, "a static lock");
        assert_eq!(
            function_at(&elf, &exe, "worker_fn"),
            Some(("worker_fn".into(), NameSource::Dynsym))
        );
        let dirs = no_debug.path().to_str().unwrap();
        let note = note_of(&elf, &stripped, dirs).unwrap();
        assert_eq!(
            note,
            format!(
                "{}: stripped; names from .dynsym only (no debug file found for build id {} under {dirs})",
                stripped.display(),
                build_id(&exe)
            )
        );

        // Without `-rdynamic` the executable exports nothing: no name.
        let hidden = compile(dir.path(), "prog_hidden", &[]);
        let elf = load(&strip(&hidden), &[no_debug.path()]);
        assert_eq!(data_at(&elf, &hidden, "lock_a"), None);
    }

    /// Guards issue 18 point 5: a stripped program whose debug info was split out into
    /// `DIR/.build-id/xx/rest.debug` (what Debian's `-dbgsym` packages install under
    /// `/usr/lib/debug`) gets every name, static ones too, and source lines from it,
    /// with `DIR` given as a debug directory (the second one given, to check all are
    /// searched); a file at that path from another build is not taken.
    #[test]
    fn debug_file_found_by_build_id_in_the_debug_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let exe = compile(dir.path(), "prog", &[]);
        let debug = dir.path().join("prog.debug");
        run(Command::new("objcopy")
            .arg("--only-keep-debug")
            .arg(&exe)
            .arg(&debug));
        let stripped = strip(&exe);
        let empty = tempfile::tempdir().unwrap();
        let debug_dir = tempfile::tempdir().unwrap();
        let id = build_id(&exe);
        let by_id = debug_dir
            .path()
            .join(format!(".build-id/{}/{}.debug", &id[..2], &id[2..]));
        fs::create_dir_all(by_id.parent().unwrap()).unwrap();
        fs::copy(&debug, &by_id).unwrap();

        let elf = load(&stripped, &[empty.path(), debug_dir.path()]);
        for lock in ["lock_a", "lock_b"] {
            assert_eq!(
                data_at(&elf, &exe, lock),
                Some((lock.to_owned(), NameSource::DebugFile))
            );
        }
        assert_eq!(
            function_at(&elf, &exe, "worker_fn"),
            Some(("worker_fn".into(), NameSource::DebugFile))
        );
        let source = elf.source(symbol_vaddr(&exe, "worker_fn")).unwrap();
        assert!(
            source
                .file
                .as_deref()
                .is_some_and(|f| f.ends_with("prog.c")),
            "{source:?}"
        );
        assert_eq!(
            note_of(&elf, &stripped, "unused"),
            Some(format!(
                "{}: stripped; names from debug file {}",
                stripped.display(),
                by_id.display()
            ))
        );

        // Not among the directories given: not found.
        let elf = load(&stripped, &[empty.path()]);
        assert_eq!(data_at(&elf, &exe, "lock_b"), None);

        // Another build's debug file at this build id's path is not this one's.
        let other = compile(dir.path(), "other", &["-O1"]);
        run(Command::new("objcopy")
            .arg("--only-keep-debug")
            .arg(&other)
            .arg(&by_id));
        let elf = load(&stripped, &[debug_dir.path()]);
        assert_eq!(data_at(&elf, &exe, "lock_b"), None);
        assert_eq!(elf.name_origin().debug_file, None);
    }

    /// Guards issue 18 point 5: a debug file named by `.gnu_debuglink` (no build id
    /// here, so only the link can find it) is found next to the object, in the
    /// `.debug/` beside it, and under a debug directory followed by the object's
    /// directory, as gdb looks; a file of that name from another build (another CRC) is
    /// not taken.
    #[test]
    fn debug_file_found_by_debuglink() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        fs::create_dir_all(&bin).unwrap();
        let exe = compile(&bin, "prog", &["-Wl,--build-id=none"]);
        let built = dir.path().join("prog.debug");
        run(Command::new("objcopy")
            .arg("--only-keep-debug")
            .arg(&exe)
            .arg(&built));
        let stripped = strip(&exe);
        run(Command::new("objcopy")
            .arg(format!("--add-gnu-debuglink={}", built.display()))
            .arg(&stripped));
        let debug_dir = tempfile::tempdir().unwrap();
        let under_dir = debug_dir
            .path()
            .join(bin.strip_prefix("/").unwrap())
            .join("prog.debug");
        for place in [
            bin.join("prog.debug"),
            bin.join(".debug/prog.debug"),
            under_dir,
        ] {
            fs::create_dir_all(place.parent().unwrap()).unwrap();
            fs::copy(&built, &place).unwrap();
            let elf = load(&stripped, &[debug_dir.path()]);
            assert_eq!(
                data_at(&elf, &exe, "lock_b"),
                Some(("lock_b".into(), NameSource::DebugFile)),
                "{}",
                place.display()
            );
            assert_eq!(
                elf.name_origin().debug_file.as_deref(),
                place.to_str(),
                "{elf:?}"
            );
            fs::remove_file(&place).unwrap();
        }

        let other = compile(&bin, "other", &["-O1", "-Wl,--build-id=none"]);
        run(Command::new("objcopy")
            .arg("--only-keep-debug")
            .arg(&other)
            .arg(bin.join("prog.debug")));
        let elf = load(&stripped, &[debug_dir.path()]);
        assert_eq!(data_at(&elf, &exe, "lock_b"), None);
        let note = note_of(&elf, &stripped, "DIRS").unwrap();
        assert!(
            note.ends_with(
                "names from .dynsym only (no debug file found for debuglink prog.debug under DIRS)"
            ),
            "{note}"
        );
    }

    #[test]
    fn debug_file_candidates_in_gdbs_order() {
        let dirs = DebugDirs::given(vec![PathBuf::from("/dbg/"), PathBuf::from("/more")]);
        let wanted = DebugWanted {
            build_id: Some(&[0xab, 0xcd, 0x01]),
            link: Some(("prog.debug", 7)),
        };
        let candidates = debug_file_candidates("/opt/app/prog", &wanted, dirs);
        assert_eq!(
            candidates,
            [
                ("/dbg/.build-id/ab/cd01.debug".to_owned(), DebugVia::BuildId),
                (
                    "/more/.build-id/ab/cd01.debug".to_owned(),
                    DebugVia::BuildId
                ),
                ("/opt/app/prog.debug".to_owned(), DebugVia::Link),
                ("/opt/app/.debug/prog.debug".to_owned(), DebugVia::Link),
                ("/dbg/opt/app/prog.debug".to_owned(), DebugVia::Link),
                ("/more/opt/app/prog.debug".to_owned(), DebugVia::Link),
            ]
        );
        let default = debug_file_candidates(
            "/prog",
            &DebugWanted {
                build_id: Some(&[0x01, 0x02]),
                link: None,
            },
            DebugDirs::default(),
        );
        assert_eq!(
            default,
            [(
                "/usr/lib/debug/.build-id/01/02.debug".to_owned(),
                DebugVia::BuildId
            )]
        );
        // A one-byte build id names no file.
        assert!(
            debug_file_candidates(
                "/prog",
                &DebugWanted {
                    build_id: Some(&[0x01]),
                    link: None
                },
                DebugDirs::default()
            )
            .is_empty()
        );
        assert_eq!(DebugDirs::given(Vec::new()), DebugDirs::default());
        assert_eq!(DebugDirs::default().dirs(), ["/usr/lib/debug"]);
        assert_eq!(dirs.describe(), "/dbg/, /more");
    }

    /// Guards the per-object notes: one per object used to name something, none for an
    /// object never used, and none for lookups made only to unwind. (A non-PIE program's
    /// `.dynsym` has the C library's variables it copies, such as `stdout`.)
    #[test]
    fn name_notes_list_the_stripped_objects_used() {
        let dir = tempfile::tempdir().unwrap();
        let exe = compile(dir.path(), "prog", &["-no-pie"]);
        let stripped = strip(&exe);
        let inode = fs::metadata(&stripped).unwrap().ino();
        let lock_a = symbol_vaddr(&exe, "lock_a");
        let maps = parse_maps(&format!(
            "{:x}-{:x} rw-p {:08x} fd:01 {inode} {}\n",
            lock_a & !0xfff,
            (lock_a & !0xfff) + 0x1000,
            // The file offset of lock_a's page: -no-pie data is at vaddr = offset + base.
            {
                use object::{Object as _, ObjectSegment as _};
                let bytes = fs::read(&exe).unwrap();
                let file = object::File::parse(&*bytes).unwrap();
                let seg = file
                    .segments()
                    .find(|s| (s.address()..s.address() + s.size()).contains(&lock_a))
                    .unwrap();
                (lock_a & !0xfff) - seg.address() + seg.file_range().0
            },
            stripped.display()
        ));
        let mut sym = Symbolizer::from_maps(maps, PathBuf::from("/"))
            .with_debug_dirs(DebugDirs::given(vec![dir.path().join("none")]));
        assert!(sym.name_notes().is_empty());
        let _ = sym.frame_rule(lock_a);
        assert!(sym.name_notes().is_empty(), "unwinding names nothing");
        assert_eq!(sym.data_name(lock_a), None);
        assert_eq!(sym.lock_ref(lock_a).name, None);
        let notes = sym.name_notes();
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].starts_with(&format!(
                "{}: stripped; names from .dynsym only (no debug file found for build id ",
                stripped.display()
            )),
            "{notes:?}"
        );
        assert!(notes[0].contains("/none)"), "{notes:?}");
    }

    fn fake_maps() -> Vec<MapEntry> {
        parse_maps(
            "\
400000-401000 r--p 00000000 fd:01 99 /nonexistent/dir/prog
401000-402000 r-xp 00001000 fd:01 99 /nonexistent/dir/prog
403000-404000 rw-p 00002000 fd:01 99 /nonexistent/dir/prog
404000-405000 rw-p 00000000 00:00 0
1000000-1021000 rw-p 00000000 00:00 0 [heap]
7f0000000000-7f0000001000 rw-p 00000000 00:00 0
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]
7ffd00100000-7ffd00102000 r-xp 00000000 00:00 0 [vdso]
",
        )
    }

    #[test]
    fn bogus_paths_do_not_panic() {
        let mut sym = Symbolizer::from_maps(fake_maps(), PathBuf::from("/"));
        assert_eq!(sym.data_name(0x0040_3010), None);
        assert_eq!(sym.data_name(0x1000), None);
        assert_eq!(sym.location(0x1000), None);
        // Unreadable file: file offsets stand in for virtual addresses.
        assert_eq!(sym.location(0x0040_1234).as_deref(), Some("prog+0x1234"));
        assert_eq!(sym.location(0x1000_01f0).as_deref(), None);
        // Heap and anonymous memory: the address alone (issue 15: `[anon]+0x133bb8`).
        assert_eq!(sym.location(0x0100_01f0).as_deref(), None);
        assert_eq!(sym.location(0x7ffd_0000_0100).as_deref(), Some("[stack]"));
        assert_eq!(sym.location(0x7f00_0000_0010).as_deref(), None);
        assert_eq!(
            sym.location(0x7ffd_0010_0010).as_deref(),
            Some("[vdso]+0x10")
        );
        assert_eq!(
            sym.lock_ref(0x7f00_0000_0010).to_string(),
            "0x7f0000000010",
            "a heap lock is shown as its address"
        );

        let frame = sym.frame(0x0040_1234);
        assert_eq!(
            (frame.function.as_deref(), frame.object.as_deref()),
            (None, Some("prog"))
        );
        assert_eq!(frame.display(), "prog+0x1234");
        assert_eq!(sym.frame(0x7ffd_0010_0010).display(), "[vdso]+0x10");
        assert_eq!(sym.frame(0x7f00_0000_0010).display(), "0x7f0000000010");
        let unmapped = sym.frame(0xdead_0000);
        assert_eq!(
            (unmapped.display(), unmapped.function_name()),
            ("0xdead0000".to_owned(), "0xdead0000".to_owned())
        );
    }

    #[test]
    fn garbage_file_is_no_symbols() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("nonexistent/dir")).unwrap();
        fs::write(
            dir.path().join("nonexistent/dir/prog"),
            b"\x7fELF\x02\x01\x01garbage garbage garbage",
        )
        .unwrap();
        let mut sym = Symbolizer::from_maps(fake_maps(), dir.path().to_path_buf());
        assert_eq!(sym.data_name(0x0040_3010), None);
        assert_eq!(sym.frame(0x0040_1010).function, None);
        assert_eq!(sym.location(0x0040_1010).as_deref(), Some("prog+0x1010"));
    }

    /// Guards the return-address check once the target's memory is gone (issue 16's
    /// stale frames): the code before an address is read from the file mapped there, at
    /// the file offset the mapping gives, and only inside that one file mapping.
    #[test]
    fn code_before_an_address_comes_from_the_mapped_file() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("nonexistent/dir")).unwrap();
        let bytes: Vec<u8> = (0..0x3000u32).map(|i| (i % 251) as u8).collect();
        let file = dir.path().join("nonexistent/dir/prog");
        fs::write(&file, &bytes).unwrap();
        let inode = fs::metadata(&file).unwrap().ino();
        let maps = parse_maps(&format!(
            "400000-401000 r--p 00000000 fd:01 {inode} /nonexistent/dir/prog\n\
             401000-402000 r-xp 00001000 fd:01 {inode} /nonexistent/dir/prog\n\
             1000000-1021000 rw-p 00000000 00:00 0 [heap]\n\
             7ffd00100000-7ffd00102000 r-xp 00000000 00:00 0 [vdso]\n"
        ));
        let mut sym = Symbolizer::from_maps(maps, dir.path().to_path_buf());
        // 401000-402000 maps file offset 0x1000.
        let code = sym.code_before(0x0040_1234, 7).unwrap();
        assert_eq!(code, bytes[0x1234 - 7..0x1234]);
        // Not across the start of the mapping, not in anonymous or named memory.
        assert_eq!(sym.code_before(0x0040_1003, 7), None);
        // The first mapping, at file offset 0.
        assert_eq!(sym.code_before(0x0040_0010, 7).unwrap(), bytes[9..16]);
        assert_eq!(sym.code_before(0x0100_0100, 7), None);
        assert_eq!(sym.code_before(0x7ffd_0010_0010, 7), None);
        // An unreadable file: nothing.
        let mut missing = Symbolizer::from_maps(fake_maps(), PathBuf::from("/"));
        assert_eq!(missing.code_before(0x0040_1234, 7), None);
    }

    /// Preloading covers the main executable and the C library only, in a thread of its
    /// own; what it loaded is adopted unless loaded meanwhile, and then never asked for
    /// again.
    #[test]
    fn preload_takes_the_executable_and_the_c_library() {
        let maps = parse_maps(
            "\
400000-401000 r-xp 00000000 fd:01 99 /app/prog
7f0000000000-7f0000001000 r-xp 00000000 fd:01 7 /lib/libfoo.so.1
7f0000100000-7f0000101000 r-xp 00000000 fd:01 8 /lib/x86_64-linux-gnu/libc.so.6
7f0000101000-7f0000102000 r--p 00001000 fd:01 8 /lib/x86_64-linux-gnu/libc.so.6
",
        );
        let dir = tempfile::tempdir().unwrap();
        let mut sym = Symbolizer::from_maps(maps, dir.path().to_path_buf());
        let (roots, list) = sym.preload_list();
        assert_eq!(roots.root, dir.path());
        assert_eq!(
            list,
            [
                ("/app/prog".to_owned(), 99),
                ("/lib/x86_64-linux-gnu/libc.so.6".to_owned(), 8)
            ]
        );
        let preloaded = std::thread::spawn(move || preload(&roots, list, Duration::from_secs(5)))
            .join()
            .unwrap();
        assert_eq!(preloaded.0.len(), 2);
        // Looked up (and cached) while the preload ran: the preload's copy is dropped.
        let _ = sym.frame(0x0040_0010);
        sym.adopt(preloaded);
        assert!(sym.preload_list().1.is_empty());
        // A zero budget loads nothing.
        assert!(
            preload(
                &FileRoots {
                    root: dir.path().to_path_buf(),
                    mapped_files: None,
                    debug_dirs: DebugDirs::default(),
                },
                vec![("/x".into(), 1)],
                Duration::ZERO
            )
            .0
            .is_empty()
        );
        assert!(is_c_library("libc.so.6") && is_c_library("libpthread.so.0"));
        assert!(!is_c_library("libcrypto.so.3") && !is_c_library("libfoo.so.1"));
    }

    #[test]
    fn bss_continuation_is_attributed() {
        let regions = regions_from_maps(fake_maps());
        let bss = &regions[3];
        assert_eq!(
            bss.kind,
            RegionKind::Object {
                path: "/nonexistent/dir/prog".into(),
                inode: 99,
                bss: true
            }
        );
        assert_eq!(bss.offset, 0x3000);
        assert_eq!(regions[5].kind, RegionKind::Anonymous);
    }

    #[test]
    fn frame_display_forms() {
        let frame = Frame {
            addr: 0x1234,
            function: Some("worker_ab".into()),
            offset: 0x2a,
            file: Some("/src/abba.c".into()),
            line: Some(31),
            object: Some("abba".into()),
            inlined: vec![],
        };
        assert_eq!(frame.display(), "worker_ab+0x2a (abba.c:31)");
        assert_eq!(frame.function_name(), "worker_ab");
        let lib = Frame {
            file: None,
            line: None,
            object: Some("libc.so.6".into()),
            function: Some("pthread_mutex_lock".into()),
            offset: 0x82,
            ..frame.clone()
        };
        assert_eq!(lib.display(), "pthread_mutex_lock+0x82 (libc.so.6)");
        let unnamed = Frame {
            function: None,
            file: None,
            offset: 0x1234,
            object: Some("prog".into()),
            ..frame
        };
        assert_eq!(unnamed.display(), "prog+0x1234");
        assert_eq!(unnamed.function_name(), "prog+0x1234");
    }

    #[test]
    fn own_process() {
        let mut sym = Symbolizer::for_target(&LiveProcess::new(std::process::id())).unwrap();
        let frame = sym.frame(own_process as fn() as usize as u64);
        let name = frame.function.unwrap_or_default();
        assert!(name.ends_with("own_process"), "{name}");
        assert!(frame.file.is_some_and(|f| f.ends_with("mod.rs")));
    }

    #[test]
    fn symbolizer_is_send() {
        fn assert_send<T: Send>() {}
        assert_send::<Symbolizer>();
    }
}
