//! The defer analysis (`go::defers`) on a live `go_defers` target, as root (it reads the
//! target's memory): the locks each goroutine holds through pending deferred unlocks,
//! found from its frames and its `_defer` chain, against the locks the target printed.
//!
//! The goroutines and their frames are found here, independently of the tracer: the
//! goroutine list `runtime.allgs` (its address from the normal build's symbol table,
//! moved to the stripped build by section offset), each parked goroutine's saved
//! `g.sched` (offsets from the normal build's DWARF), and a plain frame-pointer walk.

use std::{collections::BTreeSet, path::Path, sync::Arc};

use tracer_user::{
    go::{
        defers::{DeferAnalyzer, G_DEFER_OFFSET},
        lock_model::GoLockMode,
        probe::{go_runtime_offsets, go_struct_member_offset},
        sym::{GoTable, go_build_info},
    },
    target::{FileBytes, LiveProcess, TargetProcess},
};

use crate::{common::Target, go_defers::symbol_in, go_toolchain::build_all};

/// `_Gdead` and the `_Gscan` bit of `g.atomicstatus`.
const G_DEAD: u32 = 6;
const G_SCAN: u32 = 0x1000;
/// `_Grunning`, `_Gsyscall`: their saved `sched` is stale.
const G_RUNNING: u32 = 2;
const G_SYSCALL: u32 = 3;

/// One (goroutine, function, lock, mode) hold.
type Hold = (u64, String, u64, GoLockMode);

fn parse_mode(mode: &str) -> GoLockMode {
    match mode {
        "read" => GoLockMode::Read,
        "write" => GoLockMode::Write,
        other => panic!("bad mode {other}"),
    }
}

/// The holds the target printed under `prefix` (`hold` or `chain`).
fn printed(target: &Target, prefix: &str) -> BTreeSet<Hold> {
    target
        .facts()
        .iter()
        .filter_map(|(key, value)| {
            let rest = key.strip_prefix(prefix)?.strip_prefix('.')?;
            let (goid, lock) = rest.split_once('.')?;
            let (func, mode) = value.rsplit_once(' ')?;
            Some((
                goid.parse().expect("goroutine id"),
                func.to_owned(),
                u64::from_str_radix(lock.trim_start_matches("0x"), 16).expect("lock address"),
                parse_mode(mode),
            ))
        })
        .collect()
}

/// Guards `frame_unlocks` and `chained_unlocks` on real goroutines (Go 1.19 and 1.25,
/// normal and stripped): every lock held through a pending open-coded deferred unlock is
/// found in the right frame with the right mode (global, heap-field, read, write, two in
/// one frame, user closures), the locks of a defer in a loop are found in the `_defer`
/// chain, and nothing is reported anywhere else: not for a conditional defer that was not
/// reached, a pending defer that does not unlock, a deferred unlock that already ran, nor
/// any other frame or goroutine of the process.
#[test]
fn deferred_unlocks_name_holders_on_live_goroutines() {
    crate::common::require_root();
    let dir = tempfile::Builder::new()
        .prefix("tracer-it-go_defers-")
        .tempdir()
        .unwrap();
    let builds = build_all("go_defers", dir.path(), false);
    for build in &builds {
        let what = &build.label;
        let data = std::fs::read(&build.path).unwrap();
        let normal_label = build.label.replace("-stripped", "");
        let normal_path = builds
            .iter()
            .find(|b| b.label == normal_label)
            .unwrap()
            .path
            .clone();
        let normal = std::fs::read(Path::new(&normal_path)).unwrap();
        let version = go_build_info(&data).unwrap().go_version;
        let table = Arc::new(GoTable::from_elf(&data).unwrap());
        let file = Arc::new(FileBytes::from(data.clone()));
        let analyzer = DeferAnalyzer::new(&file, Arc::clone(&table), &version, 0).unwrap();

        // Runtime layout, from the normal build's DWARF.
        let offsets = go_runtime_offsets(&normal, &version).unwrap();
        let sched = go_struct_member_offset(&normal, "runtime.g", "sched").unwrap();
        let gobuf_pc = go_struct_member_offset(&normal, "runtime.gobuf", "pc").unwrap();
        let gobuf_bp = go_struct_member_offset(&normal, "runtime.gobuf", "bp").unwrap();
        let allgs = symbol_in(&normal, &data, "runtime.allgs");

        let target = Target::spawn(&build.path, &[]);
        let process = LiveProcess::new(target.pid());
        let want_holds = printed(&target, "hold");
        let want_chain = printed(&target, "chain");
        assert!(
            want_holds.len() == 9 && want_chain.len() == 3,
            "{what}: {want_holds:?}"
        );
        let parked: BTreeSet<(u64, String)> = target
            .facts()
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix("park.")?.parse().unwrap(), v.clone())))
            .collect();

        let mut got_holds = BTreeSet::new();
        let mut got_chain = BTreeSet::new();
        let mut walked: BTreeSet<(u64, String)> = BTreeSet::new();
        let list = process.read_u64(allgs).unwrap();
        let len = process.read_u64(allgs + 8).unwrap();
        assert!(len > 0 && len < 10_000, "{what}: allgs len {len}");
        for i in 0..len {
            let g = process.read_u64(list + 8 * i).unwrap();
            let status = process.read_u32(g + offsets.atomicstatus).unwrap() & !G_SCAN;
            if matches!(status, G_DEAD | G_RUNNING | G_SYSCALL) {
                continue;
            }
            let goid = process.read_u64(g + offsets.goid).unwrap();
            let mut pc = process.read_u64(g + sched + gobuf_pc).unwrap();
            let mut bp = process.read_u64(g + sched + gobuf_bp).unwrap();
            for _ in 0..64 {
                let Some(func) = table.func_for_pc(pc.wrapping_sub(1)) else {
                    break;
                };
                walked.insert((goid, func.name.clone()));
                for held in analyzer.frame_unlocks(pc, bp, &process) {
                    assert!(
                        table
                            .func_for_pc(held.closure_fn)
                            .is_some_and(|f| f.entry == held.closure_fn),
                        "{what}: closure_fn {:#x} is no function entry",
                        held.closure_fn
                    );
                    got_holds.insert((goid, func.name.clone(), held.lock, held.mode));
                }
                if bp == 0 {
                    break;
                }
                let (Some(next_pc), Some(next_bp)) =
                    (process.read_u64(bp + 8), process.read_u64(bp))
                else {
                    break;
                };
                (pc, bp) = (next_pc, next_bp);
            }
            let first = process.read_u64(g + G_DEFER_OFFSET).unwrap();
            for held in analyzer.chained_unlocks(first, &process) {
                // The records do not say which frame deferred; the target printed the
                // function that ran the loop.
                got_chain.insert((goid, "main.holdLoop".to_owned(), held.lock, held.mode));
            }
        }
        // Every parked goroutine was walked through the function it parked in, so the
        // frames that must yield nothing were looked at.
        for p in &parked {
            assert!(
                walked.contains(p),
                "{what}: frame {p:?} not reached by the walk"
            );
        }
        assert_eq!(got_holds, want_holds, "{what}: open-coded holds");
        assert_eq!(got_chain, want_chain, "{what}: _defer chain holds");
        let stats = analyzer.stats();
        assert_eq!(stats.unreadable, 0, "{what}: {stats:?}");
        assert_eq!(stats.invalid_closures, 0, "{what}: {stats:?}");
        assert_eq!(stats.unresolved_unlocks, 0, "{what}: {stats:?}");
        drop(target);
    }
}
