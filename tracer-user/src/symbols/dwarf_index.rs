//! The DWARF of one object, decoded a compilation unit at a time.
//!
//! `addr2line::Context` decodes the header, abbreviations and line-program header of every
//! unit when it is built: for a C library's debug file (~2 000 units) ~25 MB of heap on top
//! of the ~10 MB of inflated sections, kept as long as the object is, in every session that
//! names a frame there (BENCHMARKS.md (i)). Lock stacks pass through a handful of units.
//! So the unit that holds an address is found in `.debug_aranges`, and a context is built
//! over a `.debug_info` in which that unit is the only one ([`SharedReader::unit_view`]);
//! the last [`MAX_UNIT_CONTEXTS`] are kept.
//!
//! One index serves every symbolizer of the process that reads the same DWARF ([`shared`]):
//! a `tracer serve` of several C programs reads the C library's debug file once.
//!
//! Units `.debug_aranges` does not list (clang writes none by default) have their ranges
//! read from their own entry at load. The whole object's context is still built when a
//! unit cannot answer: a lookup that fails, as one in a unit that refers into another
//! (`DW_FORM_ref_addr`) does in the one-unit view.

use std::{
    cell::{OnceCell, RefCell},
    collections::{HashMap, HashSet},
    sync::{Arc, LazyLock, Mutex, PoisonError, Weak},
};

use addr2line::gimli::{self, RunTimeEndian, SectionId};
use object::{Object as _, ObjectSection as _};

use super::{dwarf::SharedReader, elf::SourceInfo};

type Context = addr2line::Context<SharedReader>;

/// Units whose contexts are kept: a trace's stacks pass through few.
const MAX_UNIT_CONTEXTS: usize = 16;

/// Sections addr2line never reads (variables' locations, macros, name indexes): not
/// inflated. A C library's `.debug_loclists` alone is ~1.4 MB.
const UNREAD_SECTIONS: [SectionId; 6] = [
    SectionId::DebugLoc,
    SectionId::DebugLocLists,
    SectionId::DebugMacinfo,
    SectionId::DebugMacro,
    SectionId::DebugPubNames,
    SectionId::DebugPubTypes,
];

/// An index that symbolizers share: used by one at a time.
pub(crate) type SharedIndex = Arc<Mutex<DwarfIndex>>;

/// Which DWARF a file holds: the build id of the object it describes (a separate debug
/// file has its object's) and the file's length (a copy rewritten under the same build
/// id, by `objcopy` say, is another file).
type DwarfKey = (Vec<u8>, usize);

/// The indexes in use, by [`DwarfKey`]. Weak: an index lives as long as a symbolizer
/// holds it (a session of `tracer serve`), no longer.
static SHARED: LazyLock<Mutex<HashMap<DwarfKey, Weak<Mutex<DwarfIndex>>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The index of the DWARF with build id `build_id` in a file of `len` bytes: the one in
/// use if any, else `load`ed (and then shared). Without a build id nothing says two files
/// hold the same DWARF: loaded, not shared. `None` if `load` fails.
pub(crate) fn shared(
    build_id: Option<&[u8]>,
    len: usize,
    load: impl FnOnce() -> Option<DwarfIndex>,
) -> Option<SharedIndex> {
    let Some(build_id) = build_id.filter(|id| !id.is_empty()) else {
        return load().map(|index| Arc::new(Mutex::new(index)));
    };
    let key = (build_id.to_vec(), len);
    // Loaded under the lock: two sessions that ask at once load once.
    let mut indexes = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(index) = indexes.get(&key).and_then(Weak::upgrade) {
        return Some(index);
    }
    let index = Arc::new(Mutex::new(load()?));
    indexes.retain(|_, index| index.strong_count() > 0);
    indexes.insert(key, Arc::downgrade(&index));
    Some(index)
}

/// Addresses `[start, end)`, in the unit at offset `unit` of `.debug_info`.
#[derive(Debug, Clone, Copy)]
struct UnitSpan {
    start: u64,
    end: u64,
    unit: usize,
}

/// An object's DWARF, ready to answer [`source`](Self::source).
pub(crate) struct DwarfIndex {
    /// The sections addr2line reads, inflated once.
    sections: Vec<(SectionId, SharedReader)>,
    /// `.debug_info`, for the one-unit views.
    info: Arc<[u8]>,
    endian: RunTimeEndian,
    /// `.debug_aranges`, sorted by start.
    spans: Vec<UnitSpan>,
    /// Contexts of single units by offset (`None`: could not be built), most recently
    /// used last.
    units: RefCell<Vec<(usize, Option<Context>)>>,
    /// The whole object's, built only when needed.
    whole: OnceCell<Option<Context>>,
}

impl DwarfIndex {
    /// Reads the DWARF of `file`; `None` without `.debug_info`.
    pub(crate) fn load(file: &object::File<'_>) -> Option<Self> {
        file.section_by_name(".debug_info")?;
        let endian = if file.is_little_endian() {
            RunTimeEndian::Little
        } else {
            RunTimeEndian::Big
        };
        let mut sections = Vec::new();
        let mut info: Arc<[u8]> = Arc::from(&[][..]);
        // Only to learn which sections gimli reads; each is then kept in `sections`.
        let loaded = gimli::Dwarf::load(|id| -> Result<SharedReader, gimli::Error> {
            // A missing or unreadable section reads as empty, which gimli treats as absent;
            // compressed sections (debug files are often zlib- or zstd-compressed) are
            // inflated here, the bulk of the time a debug file takes to load.
            let bytes: Arc<[u8]> = if UNREAD_SECTIONS.contains(&id) {
                Arc::from(&[][..])
            } else {
                file.section_by_name(id.name())
                    .and_then(|s| s.uncompressed_data().ok())
                    .map_or_else(|| Arc::from(&[][..]), |b| Arc::from(b.as_ref()))
            };
            if id == SectionId::DebugInfo {
                info = Arc::clone(&bytes);
            }
            let reader = SharedReader::new(bytes, endian);
            sections.push((id, reader.clone()));
            Ok(reader)
        });
        let spans = loaded
            .ok()
            .map(|dwarf| unit_spans(&dwarf))
            .unwrap_or_default();
        Some(Self {
            sections,
            info,
            endian,
            spans,
            units: RefCell::new(Vec::new()),
            whole: OnceCell::new(),
        })
    }

    /// File, line and inline chain of `vaddr`; `None` when the DWARF says nothing of it.
    pub(crate) fn source(&self, vaddr: u64) -> Option<SourceInfo> {
        // No unit has code there (as the whole object's context would find).
        let unit = self.unit_of(vaddr)?;
        if self.whole.get().is_none()
            && let Some(Ok(source)) = self.in_unit(unit, vaddr)
        {
            return source;
        }
        let whole = self.whole.get_or_init(|| {
            // Its memory is paid now: it answers everything from here on.
            self.units.borrow_mut().clear();
            self.context(&self.section(SectionId::DebugInfo))
        });
        frames(whole.as_ref()?, vaddr, Lookup::Lenient)
            .ok()
            .flatten()
    }

    /// The offset of the unit `.debug_aranges` puts `vaddr` in.
    fn unit_of(&self, vaddr: u64) -> Option<usize> {
        let after = self.spans.partition_point(|s| s.start <= vaddr);
        let span = self.spans.get(after.checked_sub(1)?)?;
        (vaddr < span.end).then_some(span.unit)
    }

    /// `vaddr` looked up in the unit at `unit` alone; `None` if its context cannot be
    /// built, an error if the lookup fails.
    fn in_unit(&self, unit: usize, vaddr: u64) -> Option<Result<Option<SourceInfo>, gimli::Error>> {
        let mut units = self.units.borrow_mut();
        if let Some(at) = units.iter().position(|(offset, _)| *offset == unit) {
            let used = units.remove(at);
            units.push(used);
        } else {
            if units.len() >= MAX_UNIT_CONTEXTS {
                units.remove(0);
            }
            let context = self.unit_end(unit).and_then(|end| {
                let view = SharedReader::unit_view(&self.info, unit, end, self.endian)?;
                self.context(&view)
            });
            units.push((unit, context));
        }
        let (_, context) = units.last()?;
        Some(frames(context.as_ref()?, vaddr, Lookup::Strict))
    }

    /// Where the unit at `unit` ends in `.debug_info`.
    fn unit_end(&self, unit: usize) -> Option<usize> {
        let info = gimli::DebugInfo::from(self.section(SectionId::DebugInfo));
        let header = info.header_from_offset(gimli::DebugInfoOffset(unit)).ok()?;
        unit.checked_add(header.length_including_self())
    }

    /// An addr2line context over the sections, with `info` as `.debug_info`.
    fn context(&self, info: &SharedReader) -> Option<Context> {
        let dwarf = gimli::Dwarf::load(|id| -> Result<SharedReader, gimli::Error> {
            Ok(if id == SectionId::DebugInfo {
                info.clone()
            } else {
                self.section(id)
            })
        })
        .ok()?;
        match Context::from_dwarf(dwarf) {
            Ok(context) => Some(context),
            Err(err) => {
                log::debug!("unusable DWARF: {err}");
                None
            }
        }
    }

    /// Section `id` as loaded (empty if gimli never asked for it).
    fn section(&self, id: SectionId) -> SharedReader {
        self.sections
            .iter()
            .find(|(loaded, _)| *loaded == id)
            .map_or_else(
                || SharedReader::new(Arc::from(&[][..]), self.endian),
                |(_, reader)| reader.clone(),
            )
    }

    /// Whether the whole object's context was built (tests: a unit answered instead).
    #[cfg(test)]
    pub(crate) fn whole_was_built(&self) -> bool {
        self.whole.get().is_some()
    }
}

/// The address ranges of every compilation unit, sorted by start (empty ones left out):
/// from `.debug_aranges`, and for a unit it does not list (or without one), from the
/// unit's own entry, read then dropped.
fn unit_spans(dwarf: &gimli::Dwarf<SharedReader>) -> Vec<UnitSpan> {
    let mut spans = Vec::new();
    let mut listed = HashSet::new();
    let push = |spans: &mut Vec<UnitSpan>, range: gimli::Range, unit: usize| {
        if range.begin < range.end {
            spans.push(UnitSpan {
                start: range.begin,
                end: range.end,
                unit,
            });
        }
    };
    let mut headers = dwarf.debug_aranges.headers();
    while let Ok(Some(header)) = headers.next() {
        let unit = header.debug_info_offset().0;
        listed.insert(unit);
        let mut entries = header.entries();
        while let Ok(Some(entry)) = entries.next() {
            push(&mut spans, entry.range(), unit);
        }
    }
    let mut units = dwarf.units();
    while let Ok(Some(header)) = units.next() {
        let Some(gimli::DebugInfoOffset(unit)) = header.offset().as_debug_info_offset() else {
            continue;
        };
        // As addr2line: only compilation units have code, and a listed unit's aranges are
        // taken as all of it.
        let compiles = matches!(
            header.type_(),
            gimli::UnitType::Compilation | gimli::UnitType::Skeleton(_)
        );
        if !compiles || listed.contains(&unit) {
            continue;
        }
        let Ok(parsed) = dwarf.unit(header) else {
            continue;
        };
        let Ok(mut ranges) = dwarf.unit_ranges(&parsed) else {
            continue;
        };
        while let Ok(Some(range)) = ranges.next() {
            push(&mut spans, range, unit);
        }
    }
    spans.sort_by_key(|s| s.start);
    spans
}

/// What a failed step of a lookup does.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lookup {
    /// Fails it: another context may answer.
    Strict,
    /// Ends it with what was found so far: no other context will.
    Lenient,
}

/// The frames of `vaddr` in `context`, innermost first, as a [`SourceInfo`].
fn frames(
    context: &Context,
    vaddr: u64,
    lookup: Lookup,
) -> Result<Option<SourceInfo>, gimli::Error> {
    // Split DWARF (.dwo) is not loaded: what the skeleton units have is good enough.
    let mut frames = context.find_frames(vaddr).skip_all_loads()?;
    let mut info = SourceInfo::default();
    loop {
        let frame = match frames.next() {
            Ok(Some(frame)) => frame,
            Err(err) if lookup == Lookup::Strict => return Err(err),
            // The end, or what was found before a failed step.
            Ok(None) | Err(_) => break,
        };
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
    Ok((info.file.is_some() || !info.functions.is_empty()).then_some(info))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]
mod tests {
    use std::{path::Path, process::Command};

    use object::{Object as _, ObjectSymbol as _, SymbolKind};

    use super::*;

    /// Three units calling into each other, with functions inlined into others (and one
    /// inlined across units by `-flto`, when given), so that frames have inline chains.
    const SOURCES: [(&str, &str); 3] = [
        (
            "main.c",
            r#"
#include <stdio.h>
int helper_sum(int n);
int helper_scale(int n);
static inline int twice(int x) { return x * 2 + (x & 1); }
static inline int thrice_twice(int x) { return twice(x) * 3 - twice(x + 1); }
int main(int argc, char **argv) {
    (void)argv;
    int total = 0;
    for (int i = 0; i < argc * 1000; i++) total += thrice_twice(i) ^ helper_sum(i);
    printf("%d\n", total + helper_scale(argc));
    return 0;
}
"#,
        ),
        (
            "sum.c",
            r"
static inline int square(int x) { return x * x; }
static inline int square_plus(int x) { return square(x) + square(x - 1); }
int helper_sum(int n) {
    int s = 0;
    for (int i = 0; i < n; i++) s += square_plus(i);
    return s;
}
",
        ),
        (
            "scale.c",
            r"
struct pair { int a, b; };
static inline int mix(struct pair p) { return p.a * 31 + p.b; }
int helper_scale(int n) {
    struct pair p = { n, n + 1 };
    int s = 0;
    for (int i = 0; i < n; i++) { p.a += i; s += mix(p); }
    return s;
}
",
        ),
    ];

    /// Builds the program with `flags`; fails the test without gcc.
    fn build(dir: &Path, flags: &[&str]) -> Vec<u8> {
        for (name, text) in SOURCES {
            std::fs::write(dir.join(name), text).unwrap();
        }
        let exe = dir.join("prog");
        let status = Command::new("gcc")
            .args(["-O2", "-o"])
            .arg(&exe)
            .args(flags)
            .args(SOURCES.iter().map(|(name, _)| dir.join(name)))
            .status()
            .expect("gcc (Debian package gcc): run `cargo xtask setup`");
        assert!(status.success(), "gcc {flags:?}: {status}");
        std::fs::read(&exe).unwrap()
    }

    /// Every address of every function in `.text` (one in four bytes).
    fn code_addresses(file: &object::File<'_>) -> Vec<u64> {
        file.symbols()
            .filter(|s| s.kind() == SymbolKind::Text && s.size() > 0)
            .flat_map(|s| (s.address()..s.address() + s.size()).step_by(4))
            .collect()
    }

    /// The answer of the whole object's context, as before units were decoded alone.
    fn whole_source(index: &DwarfIndex, vaddr: u64) -> Option<SourceInfo> {
        let whole = index.context(&index.section(SectionId::DebugInfo)).unwrap();
        frames(&whole, vaddr, Lookup::Lenient).ok().flatten()
    }

    /// Looks every code address of the program built with `flags` up both ways.
    /// Returns how many had source information, and whether the whole context was built.
    fn compare(flags: &[&str]) -> (usize, bool) {
        let dir = tempfile::tempdir().unwrap();
        let bytes = build(dir.path(), flags);
        let file = object::File::parse(&*bytes).unwrap();
        let index = DwarfIndex::load(&file).unwrap();
        let addresses = code_addresses(&file);
        assert!(
            addresses.len() > 50,
            "{flags:?}: {} addresses",
            addresses.len()
        );
        let mut named = 0;
        for &vaddr in &addresses {
            let by_unit = index.source(vaddr);
            let whole = whole_source(&index, vaddr);
            assert_eq!(
                format!("{by_unit:?}"),
                format!("{whole:?}"),
                "{flags:?} at {vaddr:#x}"
            );
            named += usize::from(by_unit.is_some());
        }
        (named, index.whole_was_built())
    }

    /// Guards the one-unit contexts: for every code address, file, line and inline chain
    /// must be what the whole object's context says, in DWARF 5 and 4, with compressed
    /// sections, and with units inlined into each other by the linker (`-flto`, whose
    /// units refer into each other); and with `.debug_aranges` the whole context is not
    /// built (the memory this exists to save).
    #[test]
    fn units_alone_answer_as_the_whole_object_does() {
        for flags in [
            &["-g"][..],
            &["-gdwarf-4"],
            &["-g", "-gz=zlib"],
            &["-g", "-ffunction-sections"],
        ] {
            let (named, whole_built) = compare(flags);
            assert!(named > 50, "{flags:?}: {named} addresses named");
            assert!(!whole_built, "{flags:?}: the whole context was built");
        }
        // Units that refer into each other: the answers must still agree (the whole
        // context answers where a unit cannot).
        let (named, whole_built) = compare(&["-g", "-flto"]);
        assert!(named > 20, "-flto: {named} addresses named");
        assert!(
            whole_built,
            "-flto: no unit lookup failed, so the fallback went untested"
        );
    }

    /// Guards the sharing of indexes between symbolizers: the same build id and length
    /// load once while one holds it, and again once none does (its memory went with the
    /// last); another length or no build id is not shared.
    #[test]
    fn one_index_per_dwarf_while_it_is_held() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = build(dir.path(), &["-g"]);
        let loads = std::cell::Cell::new(0);
        let load = || {
            loads.set(loads.get() + 1);
            DwarfIndex::load(&object::File::parse(&*bytes).unwrap())
        };
        // Unique to this test: other tests' programs may share a real build id.
        let id = b"one_index_per_dwarf_while_it_is_held";
        let first = shared(Some(id), 1, load).unwrap();
        let second = shared(Some(id), 1, load).unwrap();
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!(loads.get(), 1);
        let other_length = shared(Some(id), 2, load).unwrap();
        assert!(!Arc::ptr_eq(&first, &other_length));
        let unnamed = shared(None, 1, load).unwrap();
        let unnamed_again = shared(None, 1, load).unwrap();
        assert!(!Arc::ptr_eq(&unnamed, &unnamed_again));
        assert_eq!(loads.get(), 4);
        drop((first, second));
        let reloaded = shared(Some(id), 1, load).unwrap();
        assert_eq!(loads.get(), 5);
        assert!(Arc::ptr_eq(
            &reloaded,
            &shared(Some(id), 1, || None).unwrap()
        ));
        // A failed load is not shared: the next asks again.
        assert!(shared(Some(b"fails"), 1, || None).is_none());
        assert!(shared(Some(b"fails"), 1, load).is_some());
    }

    /// Guards objects without `.debug_aranges` (as clang writes by default): their units'
    /// ranges come from the units themselves, and still one unit answers.
    #[test]
    fn without_aranges_the_whole_object_answers() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = build(dir.path(), &["-g"]);
        let exe = dir.path().join("prog");
        let bare = dir.path().join("bare");
        let status = Command::new("objcopy")
            .arg("--remove-section=.debug_aranges")
            .arg(&exe)
            .arg(&bare)
            .status()
            .unwrap();
        assert!(status.success());
        let bare_bytes = std::fs::read(&bare).unwrap();
        let file = object::File::parse(&*bare_bytes).unwrap();
        let index = DwarfIndex::load(&file).unwrap();
        let main = object::File::parse(&*bytes)
            .unwrap()
            .symbols()
            .find(|s| s.name() == Ok("helper_sum"))
            .unwrap()
            .address();
        let source = index.source(main).unwrap();
        assert!(
            source.file.as_deref().is_some_and(|f| f.ends_with("sum.c")),
            "{source:?}"
        );
        assert!(
            source.functions.iter().any(|f| f == "helper_sum"),
            "{source:?}"
        );
        assert!(!index.whole_was_built());
    }
}
