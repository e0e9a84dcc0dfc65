//! The DWARF of one object, decoded a compilation unit at a time.
//!
//! `addr2line::Context` decodes the header, abbreviations and line-program header of every
//! unit when it is built: for a C library's debug file (~2 000 units) ~25 MB of heap on top
//! of the ~10 MB of inflated sections, kept as long as the object is, in every session that
//! names a frame there (BENCHMARKS.md (i)). Lock stacks pass through a handful of units.
//! So the unit that holds an address is found in `.debug_aranges`, and a context is built
//! over a view of `.debug_info` that holds only that unit and the units its functions'
//! names lead to (an inlined function's origin, a method's declaration: often in another
//! unit in Rust, Go and `-flto` output) ([`SharedReader::units_view`]); the last
//! [`MAX_UNIT_CONTEXTS`] are kept.
//!
//! One index serves every symbolizer of the process that reads the same DWARF ([`shared`]):
//! a `tracer serve` of several C programs reads the C library's debug file once.
//!
//! Units `.debug_aranges` does not list (clang writes none by default) have their ranges
//! read from their own entry at load. The whole object's context is still built when a
//! view cannot answer: one whose names lead to more than [`MAX_VIEW_UNITS`] units, views
//! that would hold a quarter of the object's units together, or a lookup that fails in
//! one.

use std::{
    cell::{OnceCell, RefCell},
    collections::{BTreeSet, HashMap, HashSet, hash_map::Entry},
    sync::{Arc, LazyLock, Mutex, PoisonError, Weak},
};

use addr2line::gimli::{self, RunTimeEndian, SectionId};
use object::{Object as _, ObjectSection as _};

use super::{dwarf::SharedReader, elf::SourceInfo};

type Context = addr2line::Context<SharedReader>;

/// Units whose contexts are kept: a trace's stacks pass through few.
const MAX_UNIT_CONTEXTS: usize = 16;

/// Most units one view may hold (the unit looked up and those its names lead to): past
/// this, the whole object's context costs little more.
const MAX_VIEW_UNITS: usize = 64;

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
    endian: RunTimeEndian,
    /// The code ranges of the compilation units, sorted by start.
    spans: Vec<UnitSpan>,
    /// Every unit's `[start, end)` in `.debug_info`, sorted.
    unit_bounds: Vec<(usize, usize)>,
    /// [`MAX_VIEW_UNITS`] (tests lower it).
    max_view_units: usize,
    /// Views' contexts by the offset of the unit looked up, with how many units each
    /// holds (`None`: could not be built), most recently used last.
    units: RefCell<Vec<(usize, usize, Option<Context>)>>,
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
            let reader = SharedReader::new(bytes, endian);
            sections.push((id, reader.clone()));
            Ok(reader)
        });
        let (spans, unit_bounds) = loaded
            .ok()
            .map(|dwarf| (unit_spans(&dwarf), unit_bounds(&dwarf)))
            .unwrap_or_default();
        Some(Self {
            sections,
            endian,
            spans,
            unit_bounds,
            max_view_units: MAX_VIEW_UNITS,
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

    /// The offset of the compilation unit whose code ranges hold `vaddr`.
    fn unit_of(&self, vaddr: u64) -> Option<usize> {
        let after = self.spans.partition_point(|s| s.start <= vaddr);
        let span = self.spans.get(after.checked_sub(1)?)?;
        (vaddr < span.end).then_some(span.unit)
    }

    /// `vaddr` looked up in the unit at `unit` alone; `None` if its context cannot be
    /// built, an error if the lookup fails.
    fn in_unit(&self, unit: usize, vaddr: u64) -> Option<Result<Option<SourceInfo>, gimli::Error>> {
        let mut units = self.units.borrow_mut();
        if let Some(at) = units.iter().position(|(offset, _, _)| *offset == unit) {
            let used = units.remove(at);
            units.push(used);
        } else {
            if units.len() >= MAX_UNIT_CONTEXTS {
                units.remove(0);
            }
            let kept = self.view_units(unit)?;
            // Views that together decode a large part of the object cost what its whole
            // context does, or more (a unit in several views is decoded in each): past
            // that, the whole context answers.
            let held: usize = units.iter().map(|(_, held, _)| held).sum();
            if held + kept.len() > self.max_view_units_in_all() {
                return None;
            }
            let context = self
                .section(SectionId::DebugInfo)
                .units_view(&kept)
                .and_then(|view| self.context(&view));
            units.push((unit, kept.len(), context));
        }
        let (_, _, context) = units.last()?;
        Some(frames(context.as_ref()?, vaddr, Lookup::Strict))
    }

    /// The units a view for a lookup in the unit at `unit` must hold, as `[start, end)`,
    /// sorted: that unit, and those the names of its entries lead to
    /// (`DW_AT_abstract_origin`, `DW_AT_specification`, followed from entry to entry as
    /// addr2line does). `None` past [`max_view_units`](Self::max_view_units), or if a unit
    /// cannot be read.
    fn view_units(&self, unit: usize) -> Option<Vec<(usize, usize)>> {
        let dwarf = self.dwarf_with(&self.section(SectionId::DebugInfo))?;
        let mut kept = BTreeSet::from([unit]);
        let mut parsed: HashMap<usize, gimli::Unit<SharedReader>> = HashMap::new();
        let mut seen = HashSet::new();
        let mut pending = Vec::new();
        let first = parse_unit(&dwarf, unit)?;
        let mut entries = first.entries();
        while let Ok(Some((_, entry))) = entries.next_dfs() {
            // Within the unit, every entry is scanned anyway.
            name_refs(entry, unit, false, &mut pending);
        }
        parsed.insert(unit, first);
        while let Some(target) = pending.pop() {
            if !seen.insert(target) {
                continue;
            }
            let owner = self.unit_containing(target)?;
            kept.insert(owner);
            if kept.len() > self.max_view_units {
                return None;
            }
            let owner_unit = match parsed.entry(owner) {
                Entry::Occupied(known) => known.into_mut(),
                Entry::Vacant(new) => new.insert(parse_unit(&dwarf, owner)?),
            };
            if let Ok(entry) = owner_unit.entry(gimli::UnitOffset(target - owner)) {
                name_refs(&entry, owner, true, &mut pending);
            }
        }
        kept.into_iter()
            .map(|start| {
                let at = self
                    .unit_bounds
                    .binary_search_by_key(&start, |b| b.0)
                    .ok()?;
                self.unit_bounds.get(at).copied()
            })
            .collect()
    }

    /// Most units the cached views may hold together: a quarter of the object's, at least
    /// [`MAX_VIEW_UNITS`] (tests lower it with [`max_view_units`](Self::max_view_units)).
    fn max_view_units_in_all(&self) -> usize {
        (self.unit_bounds.len() / 4).max(self.max_view_units)
    }

    /// The start of the unit holding `.debug_info` offset `offset`.
    fn unit_containing(&self, offset: usize) -> Option<usize> {
        let after = self.unit_bounds.partition_point(|b| b.0 <= offset);
        let (start, end) = *self.unit_bounds.get(after.checked_sub(1)?)?;
        (offset < end).then_some(start)
    }

    /// The sections, with `info` as `.debug_info`.
    fn dwarf_with(&self, info: &SharedReader) -> Option<gimli::Dwarf<SharedReader>> {
        gimli::Dwarf::load(|id| -> Result<SharedReader, gimli::Error> {
            Ok(if id == SectionId::DebugInfo {
                info.clone()
            } else {
                self.section(id)
            })
        })
        .ok()
    }

    /// An addr2line context over the sections, with `info` as `.debug_info`.
    fn context(&self, info: &SharedReader) -> Option<Context> {
        let dwarf = self.dwarf_with(info)?;
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

/// Every unit's `[start, end)` in `.debug_info`, sorted (headers only: nothing is decoded).
fn unit_bounds(dwarf: &gimli::Dwarf<SharedReader>) -> Vec<(usize, usize)> {
    let mut bounds = Vec::new();
    let mut units = dwarf.units();
    while let Ok(Some(header)) = units.next() {
        if let Some(gimli::DebugInfoOffset(start)) = header.offset().as_debug_info_offset() {
            bounds.push((start, start + header.length_including_self()));
        }
    }
    bounds
}

/// The unit at `.debug_info` offset `offset`, decoded.
fn parse_unit(
    dwarf: &gimli::Dwarf<SharedReader>,
    offset: usize,
) -> Option<gimli::Unit<SharedReader>> {
    let header = dwarf
        .debug_info
        .header_from_offset(gimli::DebugInfoOffset(offset))
        .ok()?;
    dwarf.unit(header).ok()
}

/// Adds to `found` the `.debug_info` offset of each entry `entry`'s name may come from
/// (`DW_AT_abstract_origin`, `DW_AT_specification`): those in other units, and with
/// `same_unit`, those in its own unit (at `unit`) too.
fn name_refs(
    entry: &gimli::DebuggingInformationEntry<'_, '_, SharedReader>,
    unit: usize,
    same_unit: bool,
    found: &mut Vec<usize>,
) {
    let mut attrs = entry.attrs();
    while let Ok(Some(attr)) = attrs.next() {
        if attr.name() != gimli::DW_AT_abstract_origin && attr.name() != gimli::DW_AT_specification
        {
            continue;
        }
        match attr.value() {
            gimli::AttributeValue::DebugInfoRef(gimli::DebugInfoOffset(target)) => {
                found.push(target);
            }
            gimli::AttributeValue::UnitRef(gimli::UnitOffset(offset)) if same_unit => {
                found.push(unit + offset);
            }
            _ => {}
        }
    }
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

    /// Looks every code address of the program built with `flags` up both ways, views
    /// holding at most `max_view_units` units.
    /// Returns how many had source information, and whether the whole context was built.
    fn compare(flags: &[&str], max_view_units: usize) -> (usize, bool) {
        let dir = tempfile::tempdir().unwrap();
        let bytes = build(dir.path(), flags);
        let file = object::File::parse(&*bytes).unwrap();
        let mut index = DwarfIndex::load(&file).unwrap();
        index.max_view_units = max_view_units;
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

    /// Guards the views of a few units: for every code address, file, line and inline
    /// chain must be what the whole object's context says, in DWARF 5 and 4, with
    /// compressed sections, and with functions inlined across units by the linker
    /// (`-flto`, whose units' names lead into other units), without building the whole
    /// context (the memory this exists to save); and where a view cannot answer (held to
    /// one unit), the whole context must.
    #[test]
    fn units_alone_answer_as_the_whole_object_does() {
        for flags in [
            &["-g"][..],
            &["-gdwarf-4"],
            &["-g", "-gz=zlib"],
            &["-g", "-ffunction-sections"],
        ] {
            let (named, whole_built) = compare(flags, MAX_VIEW_UNITS);
            assert!(named > 50, "{flags:?}: {named} addresses named");
            assert!(!whole_built, "{flags:?}: the whole context was built");
        }
        // Units whose names lead into other units: the views hold those too.
        let (named, whole_built) = compare(&["-g", "-flto"], MAX_VIEW_UNITS);
        assert!(named > 20, "-flto: {named} addresses named");
        assert!(!whole_built, "-flto: the whole context was built");
        // And views held to one unit cannot answer there: the whole context does.
        let (named, whole_built) = compare(&["-g", "-flto"], 1);
        assert!(named > 20, "-flto, one unit: {named} addresses named");
        assert!(whole_built, "-flto, one unit: the fallback went untested");
    }

    /// Guards the bound on the views' memory: views that would together hold more units
    /// than allowed give way to the whole context (which then answers, the same), so
    /// views never cost much more than it.
    #[test]
    fn views_give_way_to_the_whole_context_past_their_bound() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = build(dir.path(), &["-g"]);
        let file = object::File::parse(&*bytes).unwrap();
        let mut index = DwarfIndex::load(&file).unwrap();
        // One unit in all: the second unit looked up is one too many.
        index.max_view_units = 1;
        let at = |name: &str| {
            file.symbols()
                .find(|s| s.name() == Ok(name))
                .unwrap()
                .address()
        };
        let first = index.source(at("helper_sum"));
        assert!(first.is_some());
        assert!(!index.whole_was_built());
        assert_eq!(
            format!("{first:?}"),
            format!("{:?}", whole_source(&index, at("helper_sum")))
        );
        let second = index.source(at("helper_scale"));
        assert!(index.whole_was_built());
        let second = second.unwrap();
        assert!(
            second.functions.iter().any(|f| f == "helper_scale"),
            "{second:?}"
        );
        assert_eq!(
            format!("{:?}", Some(second)),
            format!("{:?}", whole_source(&index, at("helper_scale")))
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
        crate::symbols::tests::run(
            Command::new("objcopy")
                .arg("--remove-section=.debug_aranges")
                .arg(&exe)
                .arg(&bare),
        );
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
