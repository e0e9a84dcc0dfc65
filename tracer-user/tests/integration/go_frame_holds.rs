//! The frame-variable analysis (`go::frame_holds`) on `tests/go_targets/go_abba`, built with
//! every Go toolchain we install, normal and stripped. No root needed: at each call of
//! `main.(*Provider).Refresh`, `main.(*Store).GC` and `main.(*Store).Put`, which locks a
//! frame stopped there holds, from the code alone, against what the Go source says.

use std::{path::Path, sync::Arc};

use iced_x86::{Decoder, DecoderOptions, FlowControl};
use tracer_user::{
    go::{
        frame_holds::{FrameHoldAnalyzer, LockBase, LockKey, SlotHold},
        lock_model::GoLockMode,
        probe::plan_go_lock_sites_with,
        sym::GoTable,
    },
    target::FileBytes,
};

use crate::go_toolchain::{build, installed};

/// The receiver's argument spill slot, `BP + 16`, plus 0: `&p.mu`/`&s.mu` (`mu` is the
/// first field of both structs).
fn receiver_mutex() -> SlotHold {
    SlotHold {
        key: LockKey {
            base: LockBase::Slot(16),
            disp: 0,
        },
        mode: GoLockMode::Write,
    }
}

/// Each direct call of `func` in the binary: (callee name, return address).
fn calls_in(table: &GoTable, data: &[u8], func: &str) -> Vec<(String, u64)> {
    use object::{Object as _, ObjectSegment as _};
    let f = table
        .find_func(func)
        .unwrap_or_else(|| panic!("{func} in the pclntab"));
    let file = object::File::parse(data).expect("an ELF file");
    let code = file
        .segments()
        .find_map(|s| s.data_range(f.entry, f.end - f.entry).ok().flatten())
        .unwrap_or_else(|| panic!("the code of {func} in the file"));
    let mut out = Vec::new();
    for ins in &mut Decoder::with_ip(64, code, f.entry, DecoderOptions::NONE) {
        if ins.flow_control() == FlowControl::Call {
            let name = table
                .func_for_pc(ins.near_branch_target())
                .map_or_else(|| "?".to_owned(), |f| f.name);
            out.push((name, ins.next_ip()));
        }
    }
    out
}

/// What a frame of `func` stopped after a call of `callee` holds, by the Go source:
/// `Some(true)` the receiver's mutex, `Some(false)` nothing; `None`: no claim (calls of the
/// stack growth path).
fn expected(func: &str, callee: &str) -> Option<bool> {
    if callee.starts_with("runtime.morestack") {
        return None;
    }
    let taking = callee.ends_with(".lockSlow");
    let after_release = callee.ends_with(".unlockSlow");
    Some(match func {
        // Everything between p.mu.Lock() and p.mu.Unlock() (mapassign, closechan,
        // chanrecv1, Put) holds p.mu; lockSlow waits for it, unlockSlow comes after.
        "main.(*Provider).Refresh"
        | "main.(*Store).GC"
        | "main.(*Store).Put"
        | "main.(*Provider).Evict" => !taking && !after_release,
        _ => return None,
    })
}

/// Guards the frame-variable evidence on real compiler output (Go 1.19's `SUBQ/LEAQ`
/// frames, Go 1.25's `PUSHQ BP` frames; `internal/sync` lock calls from 1.24): a frame
/// stopped at any call between the inlined `mu.Lock()` and `mu.Unlock()` holds the
/// receiver's mutex (its argument spill slot), one stopped in `lockSlow` (waiting for it)
/// or after the unlock holds nothing, and the stripped build says the same.
#[test]
fn parked_frames_hold_their_receivers_mutex() {
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("go_frame_holds");
    std::fs::create_dir_all(&out_dir).unwrap();
    for tc in installed() {
        let dir = out_dir.join(tc.release);
        std::fs::create_dir_all(&dir).unwrap();
        let mut seen = Vec::new();
        for stripped in [false, true] {
            let label = format!("{} stripped={stripped}", tc.release);
            let data = std::fs::read(build(&tc, "go_abba", &dir, stripped)).unwrap();
            let table = GoTable::from_elf(&data).unwrap();
            let plan = plan_go_lock_sites_with(&data, &table).unwrap();
            let file = Arc::new(FileBytes::from(data.clone()));
            let table = Arc::new(table);
            let analyzer = FrameHoldAnalyzer::new(Arc::clone(&table), &file, &plan, 0).unwrap();
            let mut checked = Vec::new();
            for func in [
                "main.(*Provider).Refresh",
                "main.(*Store).GC",
                "main.(*Store).Put",
                "main.(*Provider).Evict",
            ] {
                let entry = table.find_func(func).unwrap().entry;
                let flow = analyzer
                    .function_flow(entry)
                    .unwrap_or_else(|| panic!("{label}: {func} not analysed"));
                let calls = calls_in(&table, &data, func);
                assert!(calls.len() >= 3, "{label}: {func}: {calls:?}");
                for (callee, ret) in calls {
                    let Some(holds) = expected(func, &callee) else {
                        continue;
                    };
                    let got = flow.holds_at(ret);
                    let want = if holds {
                        vec![receiver_mutex()]
                    } else {
                        Vec::new()
                    };
                    assert_eq!(
                        got.holds,
                        want,
                        "{label}: {func} at {ret:#x} after {callee}: ops {:?}",
                        flow.lock_ops()
                    );
                    assert!(!got.acquiring_unresolved, "{label}: {func} at {ret:#x}");
                    checked.push((func, callee, holds));
                }
            }
            // Each function has a lockSlow call, and a held call.
            assert!(
                checked.iter().filter(|c| c.2).count() >= 5,
                "{label}: {checked:?}"
            );
            assert!(
                checked.iter().filter(|c| !c.2).count() >= 4,
                "{label}: {checked:?}"
            );
            seen.push(checked);
        }
        assert_eq!(seen[0], seen[1], "{}: stripped differs", tc.release);
    }
}
