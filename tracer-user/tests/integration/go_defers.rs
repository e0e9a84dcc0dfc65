//! The defer analysis (`go::defers`) on `tests/go_targets/go_defers`, built with every Go
//! toolchain we install, normal and stripped. No root needed: what each deferred closure
//! unlocks (from its code alone), which functions carry open-coded defer info, and the
//! `_defer`/`RWMutex` offsets of the version table against DWARF.

use std::{path::Path, sync::Arc};

use object::{Object as _, ObjectSymbol as _};
use tracer_user::{
    go::{
        defers::{
            ClosureAnalysis, DeferAnalyzer, DeferRecordLayout, LayoutSource, LockExpr,
            OpenDeferFormat, OpenDeferInfo, UnlockRecipe,
        },
        lock_model::GoLockMode,
        probe::{go_minor_version, go_struct_member_offset},
        sym::{FUNCDATA_OPEN_CODED_DEFER_INFO, GoTable, go_build_info},
    },
    target::FileBytes,
};

use crate::go_toolchain::{build, installed};

/// The funcval's first captured word: where a `defer x.Unlock()` wrapper finds `&x`.
fn captured_at_8() -> LockExpr {
    LockExpr::Load {
        addr: Box::new(LockExpr::Closure(8)),
        add: 0,
    }
}

/// The deferred closures of `main.*` (the functions nested in the holder functions) with
/// what the Go source says they unlock; `None` for other functions.
fn expected(closure: &str, symbols: &dyn Fn(&str) -> u64) -> Option<ClosureAnalysis> {
    let parent = closure
        .rsplit_once('.')
        .filter(|(_, last)| last.starts_with("func") || last.starts_with("deferwrap"))?
        .0;
    let write = |lock| {
        ClosureAnalysis::Unlocks(UnlockRecipe {
            lock,
            mode: GoLockMode::Write,
        })
    };
    let read = |lock| {
        ClosureAnalysis::Unlocks(UnlockRecipe {
            lock,
            mode: GoLockMode::Read,
        })
    };
    Some(match parent {
        "main.holdGlobal"
        | "main.(*store).holdField"
        | "main.holdWrite"
        | "main.holdTwo"
        | "main.holdClosure"
        | "main.holdLoop"
        | "main.holdNotTaken"
        | "main.lockAndRelease" => write(captured_at_8()),
        "main.holdRead" | "main.(*store).holdFieldRead" => read(captured_at_8()),
        "main.holdClosureGlobal" => write(LockExpr::Global(symbols("main.closureG"))),
        "main.holdOtherDefer" => ClosureAnalysis::NoUnlock,
        _ => return None,
    })
}

/// Guards the closure decoding: on real compiler output of Go 1.19 (`f.funcN` wrappers,
/// call to `Unlock`) and Go 1.25 (`f.deferwrapN`, unlock inlined to `lock xadd`), every
/// deferred closure of the target is read as the unlock (lock and mode) its source says,
/// a deferred atomic add is not taken for an unlock, and a stripped build reads the same.
#[test]
fn deferred_closures_name_their_locks() {
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("go_defers_static");
    std::fs::create_dir_all(&out_dir).unwrap();
    for tc in installed() {
        let dir = out_dir.join(tc.release);
        std::fs::create_dir_all(&dir).unwrap();
        let normal = std::fs::read(build(&tc, "go_defers", &dir, false)).unwrap();
        let stripped = std::fs::read(build(&tc, "go_defers", &dir, true)).unwrap();
        let version = go_build_info(&normal).unwrap().go_version;
        let mut seen = Vec::new();
        for (label, data) in [("normal", &normal), ("stripped", &stripped)] {
            let symbols = |name: &str| symbol_in(&normal, data, name);
            let table = Arc::new(GoTable::from_elf(data).unwrap());
            assert!(
                table.has_inline_data(),
                "{} {label}: no go:func.*",
                tc.release
            );
            let analyzer = DeferAnalyzer::new(
                &Arc::new(FileBytes::from(data.clone())),
                Arc::clone(&table),
                &version,
                0,
            )
            .unwrap();
            assert!(analyzer.reads_open_coded_defers());
            let mut checked = Vec::new();
            for func in table.functions() {
                let Some(want) = expected(&func.name, &symbols) else {
                    continue;
                };
                let got = analyzer.closure_analysis(func.entry).unwrap();
                assert_eq!(got, want, "{} {label}: {}", tc.release, func.name);
                checked.push((func.name.clone(), got));
            }
            checked.sort_by(|a, b| a.0.cmp(&b.0));
            // holdTwo has two closures; every other holder one.
            assert_eq!(checked.len(), 13, "{} {label}: {checked:#?}", tc.release);
            seen.push(
                checked
                    .into_iter()
                    .map(|(name, _)| name)
                    .collect::<Vec<_>>(),
            );
        }
        assert_eq!(seen[0], seen[1], "{}: stripped differs", tc.release);
    }
}

/// The address of symbol `name` of the `normal` build in `build` (the same program,
/// maybe stripped): the linker may place the sections of a stripped build elsewhere but
/// lays out each section's contents the same, so the symbol keeps its offset in its
/// section, which `-s -w` keeps the headers of.
pub(crate) fn symbol_in(normal: &[u8], build: &[u8], name: &str) -> u64 {
    use object::ObjectSection as _;
    let normal_file = object::File::parse(normal).expect("parse the normal build");
    let sym = normal_file
        .symbols()
        .find(|s| s.name() == Ok(name))
        .unwrap_or_else(|| panic!("no symbol {name}"));
    let section = normal_file
        .section_by_index(sym.section_index().expect("symbol in a section"))
        .expect("the symbol's section");
    let section_name = section.name().expect("section name");
    let other = object::File::parse(build).expect("parse the build");
    let same = other
        .section_by_name(section_name)
        .unwrap_or_else(|| panic!("no section {section_name} in the build"));
    assert_eq!(
        same.size(),
        section.size(),
        "{section_name} differs in size"
    );
    same.address() + (sym.address() - section.address())
}

/// Guards the funcdata access and the two defer-info encodings: the functions with
/// open-coded defers (and only those) have `FUNCDATA_OpenCodedDeferInfo`, and it decodes
/// to as many closure slots as the function has `defer` statements, in both builds.
#[test]
fn open_coded_defer_info_per_function() {
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("go_defers_funcdata");
    std::fs::create_dir_all(&out_dir).unwrap();
    // Function, number of open-coded defers (0: none, e.g. a defer in a loop).
    let functions = [
        ("main.holdGlobal", 1),
        ("main.holdTwo", 2),
        ("main.holdClosure", 1),
        ("main.holdNotTaken", 1),
        ("main.holdLoop", 0),
        ("main.holdReleased", 0),
        ("main.(*parker).park", 0),
    ];
    for tc in installed() {
        let dir = out_dir.join(tc.release);
        std::fs::create_dir_all(&dir).unwrap();
        for stripped in [false, true] {
            let data = std::fs::read(build(&tc, "go_defers", &dir, stripped)).unwrap();
            let version = go_build_info(&data).unwrap().go_version;
            let format = OpenDeferFormat::for_minor(go_minor_version(&version).unwrap()).unwrap();
            let table = GoTable::from_elf(&data).unwrap();
            for (name, defers) in functions {
                let func = table.find_func(name).unwrap();
                let info = table.funcdata(func.entry, FUNCDATA_OPEN_CODED_DEFER_INFO);
                let label = format!("{} stripped={stripped} {name}", tc.release);
                if defers == 0 {
                    assert!(info.is_none(), "{label}: unexpected open-coded defer info");
                    continue;
                }
                let info = OpenDeferInfo::decode(format, info.expect(&label)).expect(&label);
                // All bits set: one slot per defer the function has, all below varp.
                let varp = 0x10_0000;
                let slots = info.pending_slots(varp, 0xff);
                if format == OpenDeferFormat::PerDeferOffsets {
                    assert_eq!(slots.len(), defers, "{label}");
                }
                let bits = info.defer_bits_addr(varp).unwrap();
                for (_, slot) in &slots[..defers] {
                    assert!(*slot < varp && *slot != bits, "{label}: slot {slot:#x}");
                }
            }
        }
    }
}

/// Guards the version tables: `runtime._defer` (`fn`, `link`, `openDefer`) and
/// `RWMutex.readerCount` offsets of the table match each toolchain's DWARF, and a stripped
/// build (no DWARF) falls back to the table.
#[test]
fn defer_record_layout_matches_dwarf() {
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("go_defers_layout");
    std::fs::create_dir_all(&out_dir).unwrap();
    for tc in installed() {
        let dir = out_dir.join(tc.release);
        std::fs::create_dir_all(&dir).unwrap();
        let normal = std::fs::read(build(&tc, "go_defers", &dir, false)).unwrap();
        let stripped = std::fs::read(build(&tc, "go_defers", &dir, true)).unwrap();
        let version = go_build_info(&normal).unwrap().go_version;
        let minor = go_minor_version(&version).unwrap();
        let dwarf = DeferRecordLayout::from_dwarf(&normal).expect("runtime._defer in DWARF");
        let table = DeferRecordLayout::for_minor(minor).unwrap();
        assert_eq!(dwarf.source, LayoutSource::Dwarf);
        assert_eq!(
            (dwarf.fn_offset, dwarf.link_offset, dwarf.open_defer_offset),
            (table.fn_offset, table.link_offset, table.open_defer_offset),
            "{}",
            tc.release
        );
        assert_eq!(
            go_struct_member_offset(&normal, "sync.RWMutex", "readerCount"),
            Some(16),
            "{}",
            tc.release
        );
        assert_eq!(
            go_struct_member_offset(&normal, "runtime.g", "_defer"),
            Some(tracer_user::go::defers::G_DEFER_OFFSET),
            "{}",
            tc.release
        );
        assert_eq!(DeferRecordLayout::from_dwarf(&stripped), None);
        let table_arc = Arc::new(GoTable::from_elf(&stripped).unwrap());
        let analyzer = DeferAnalyzer::new(
            &Arc::new(FileBytes::from(stripped.clone())),
            table_arc,
            &version,
            0,
        )
        .unwrap();
        assert_eq!(analyzer.record_layout(), Some(table));
    }
}
