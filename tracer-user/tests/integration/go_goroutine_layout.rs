//! The goroutine reader's static parts (`go::goroutines`) against real Go binaries built
//! with every installed toolchain, normal and stripped: the `runtime.g` layout table
//! against DWARF, the lock layouts the classification assumes, and `runtime.allgs`
//! found from `runtime.allgadd`'s code against the symbol table. No root needed.
use object::{Object as _, ObjectSegment as _, ObjectSymbol as _};
use tracer_user::go::{
    goroutines::{
        AllgsSource, goroutine_layout, goroutine_layout_for_version, goroutine_layout_from_dwarf,
        locate_allgs, rip_relative_refs, select_allgs,
    },
    probe::{OffsetSource, go_struct_member_offset},
    sym::{GoTable, go_build_info},
};

use crate::{go_probe_sites::build_cached, go_toolchain::installed};

/// The address of symbol `name` in `data`'s symbol table.
fn symbol(data: &[u8], name: &str) -> u64 {
    let file = object::File::parse(data).expect("elf");
    file.symbol_by_name(name)
        .unwrap_or_else(|| panic!("no symbol {name}"))
        .address()
}

/// Guards against: the built-in `runtime.g` layout (stack bounds, `_defer`, `sched.sp`,
/// `sched.pc`, `sched.bp`, `atomicstatus`, `goid`, `waitsince`), which stripped binaries
/// depend on, disagreeing with DWARF for Go 1.19 and 1.25; a stripped binary not falling
/// back to it; and the `Mutex`/`RWMutex` semaphore offsets the classification subtracts
/// from a semaphore address changing unnoticed.
#[test]
fn goroutine_layout_table_matches_dwarf() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for tc in installed() {
        let normal = std::fs::read(build_cached(&tc, "go_abba", tmp.path(), false)).unwrap();
        let stripped = std::fs::read(build_cached(&tc, "go_abba", tmp.path(), true)).unwrap();
        let version = go_build_info(&normal).expect("build info").go_version;
        let dwarf = goroutine_layout_from_dwarf(&normal).expect("layout from DWARF");
        assert_eq!(dwarf.source, OffsetSource::Dwarf, "{version}");
        let table = goroutine_layout_for_version(&version).expect("version in the table");
        assert_eq!(
            (
                dwarf.stack_lo,
                dwarf.stack_hi,
                dwarf.defer,
                dwarf.sched_sp,
                dwarf.sched_pc,
                dwarf.sched_bp,
                dwarf.atomicstatus,
                dwarf.goid,
                dwarf.waitsince
            ),
            (
                table.stack_lo,
                table.stack_hi,
                table.defer,
                table.sched_sp,
                table.sched_pc,
                table.sched_bp,
                table.atomicstatus,
                table.goid,
                table.waitsince
            ),
            "{version}: table disagrees with DWARF"
        );
        assert_eq!(goroutine_layout_from_dwarf(&stripped), None, "{version}");
        assert_eq!(
            goroutine_layout(&stripped, &version),
            Some(table),
            "{version}"
        );

        // go_abba has no RWMutex; go_rwleak has both.
        let rwleak = std::fs::read(build_cached(&tc, "go_rwleak", tmp.path(), false)).unwrap();
        let member = |ty, name| go_struct_member_offset(&rwleak, ty, name);
        let mutex = if tc.release == "go1.19" {
            "sync.Mutex"
        } else {
            "internal/sync.Mutex"
        };
        assert_eq!(member(mutex, "sema"), Some(4), "{version}");
        assert_eq!(member("sync.RWMutex", "w"), Some(0), "{version}");
        assert_eq!(member("sync.RWMutex", "writerSem"), Some(8), "{version}");
        assert_eq!(member("sync.RWMutex", "readerSem"), Some(12), "{version}");
        assert_eq!(member("sync.RWMutex", "readerCount"), Some(16), "{version}");
    }
}

/// Guards against: `runtime.allgs` (and `runtime.allglen`) found from the code of
/// `runtime.allgadd` pointing elsewhere than the symbol table says, for Go 1.19 and
/// 1.25, and a stripped binary not using that path.
#[test]
fn allgs_from_allgadd_code_matches_symbols() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for tc in installed() {
        let normal = std::fs::read(build_cached(&tc, "go_abba", tmp.path(), false)).unwrap();
        let stripped = std::fs::read(build_cached(&tc, "go_abba", tmp.path(), true)).unwrap();
        let (allgs, allglen) = (
            symbol(&normal, "runtime.allgs"),
            symbol(&normal, "runtime.allglen"),
        );
        let label = tc.release;

        let table = GoTable::from_elf(&normal).expect("pclntab");
        let from_symbols = locate_allgs(&normal, &table).expect("allgs");
        assert_eq!(from_symbols.source, AllgsSource::Symtab, "{label}");
        assert_eq!(
            (from_symbols.allgs, from_symbols.allglen),
            (allgs, Some(allglen)),
            "{label}"
        );

        // The code path on the same binary, against its symbols.
        let func = table.find_func("runtime.allgadd").expect("allgadd");
        let file = object::File::parse(&*normal).unwrap();
        let code = file
            .segments()
            .find_map(|s| {
                s.data_range(func.entry, func.end - func.entry)
                    .ok()
                    .flatten()
            })
            .expect("allgadd's code");
        assert_eq!(
            select_allgs(&rip_relative_refs(code, func.entry)).expect("a candidate"),
            (allgs, Some(allglen)),
            "{label}: from allgadd's code"
        );

        // A stripped build of the same program: no symbols, the code path. Its data moves
        // a little (the build info differs), with allgs and allglen moving together; the
        // root test `go_goroutines` checks what is read there against the live runtime.
        let table = GoTable::from_elf(&stripped).expect("pclntab");
        let from_code = locate_allgs(&stripped, &table).expect("allgs");
        assert_eq!(from_code.source, AllgsSource::Disassembly, "{label}");
        assert_eq!(
            from_code
                .allglen
                .map(|len| len.wrapping_sub(from_code.allgs)),
            Some(allglen.wrapping_sub(allgs)),
            "{label}: stripped"
        );
        assert!(
            from_code.allgs.abs_diff(allgs) < 0x1000,
            "{label}: stripped allgs {:#x}, normal {allgs:#x}",
            from_code.allgs
        );
    }
}
