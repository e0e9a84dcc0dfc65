//! Handcrafted and corrupted tables: the parser must decode what the Go linker writes
//! and must neither panic nor over-allocate on anything else.
use std::time::{Duration, Instant};

use super::*;

const TEXT: u64 = 0x40_1000;

/// One pc-value table: (value, byte length of the pc range) runs, as Go encodes them.
fn pcvalue_table(runs: &[(i32, u32)]) -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, mut v: u32) {
        while v >= 0x80 {
            out.push(u8::try_from(v & 0x7f).unwrap() | 0x80);
            v >>= 7;
        }
        out.push(u8::try_from(v).unwrap());
    }
    let mut out = Vec::new();
    let mut prev = -1i32;
    for &(value, len) in runs {
        let delta = value - prev;
        #[allow(clippy::cast_sign_loss)]
        let zigzag = ((delta << 1) ^ (delta >> 31)) as u32;
        varint(&mut out, zigzag);
        varint(&mut out, len);
        prev = value;
    }
    out.push(0);
    out
}

fn put_u32(buf: &mut Vec<u8>, v: u32) {
    buf.extend_from_slice(&v.to_le_bytes());
}

fn len32(v: &[u8]) -> u32 {
    u32::try_from(v.len()).unwrap()
}

/// A two-function table: `main.outer` (0x40 bytes, with `main.inlined` inlined at
/// 0x10..0x20, called from outer's line 10) and `main.leaf` (0x20 bytes). Returns the
/// pclntab and the `go:func.*` bytes holding outer's inline tree.
#[allow(clippy::too_many_lines)] // one linear recipe reads better than helpers
fn synthetic(version: PclnVersion) -> (Vec<u8>, Vec<u8>) {
    let names = b"main.outer\0main.leaf\0main.inlined\0";
    let (outer_name, leaf_name, inlined_name) = (0u32, 11u32, 21u32);
    let files = b"/src/a.go\0/src/b.go\0";
    let cutab: [u32; 2] = [0, 10];

    let mut pctab = vec![0u8]; // offset 0 means "no table"
    let mut add = |runs: &[(i32, u32)]| {
        let off = len32(&pctab);
        pctab.extend(pcvalue_table(runs));
        off
    };
    let outer_file = add(&[(0, 0x10), (1, 0x10), (0, 0x20)]);
    let outer_line = add(&[(10, 0x10), (100, 0x10), (12, 0x20)]);
    let outer_inl = add(&[(-1, 0x10), (0, 0x10), (-1, 0x20)]);
    let leaf_file = add(&[(1, 0x20)]);
    let leaf_line = add(&[(200, 0x20)]);

    let func = |entry: u32, name: u32, pcfile: u32, pcln: u32, pcdata: &[u32], funcdata: &[u32]| {
        let mut f = Vec::new();
        for v in [
            entry,
            name,
            0,
            0,
            0,
            pcfile,
            pcln,
            u32::try_from(pcdata.len()).unwrap(),
            0,
        ] {
            put_u32(&mut f, v);
        }
        if version == PclnVersion::Go120 {
            put_u32(&mut f, 9); // startLine
        }
        f.extend_from_slice(&[0, 0, 0, u8::try_from(funcdata.len()).unwrap()]);
        for &v in pcdata.iter().chain(funcdata) {
            put_u32(&mut f, v);
        }
        f
    };
    let outer = func(
        0,
        outer_name,
        outer_file,
        outer_line,
        &[0, 0, outer_inl],
        &[u32::MAX, u32::MAX, u32::MAX, 0],
    );
    let leaf = func(0x40, leaf_name, leaf_file, leaf_line, &[], &[]);
    let functab_len = 5 * 4;
    let mut pcln = Vec::new();
    for v in [0, functab_len, 0x40, functab_len + len32(&outer), 0x60] {
        put_u32(&mut pcln, v);
    }
    pcln.extend(outer);
    pcln.extend(leaf);

    let mut data = Vec::new();
    let magic = match version {
        PclnVersion::Go118 => MAGIC_GO118,
        PclnVersion::Go120 => MAGIC_GO120,
    };
    put_u32(&mut data, magic);
    data.extend_from_slice(&[0, 0, 1, 8]);
    let header_len = 8 + 8 * 8;
    let funcname_off = header_len;
    let cu_off = funcname_off + names.len();
    let file_off = cu_off + 8;
    let pctab_off = file_off + files.len();
    let pcln_off = pctab_off + pctab.len();
    for v in [
        2,
        2,
        TEXT,
        funcname_off as u64,
        cu_off as u64,
        file_off as u64,
        pctab_off as u64,
        pcln_off as u64,
    ] {
        data.extend_from_slice(&v.to_le_bytes());
    }
    data.extend_from_slice(names);
    for v in cutab {
        put_u32(&mut data, v);
    }
    data.extend_from_slice(files);
    data.extend(pctab);
    data.extend(pcln);

    let mut gofunc = Vec::new();
    match version {
        PclnVersion::Go118 => {
            // parent, funcID, _, file, line, func_, parentPc
            data_i16(&mut gofunc, -1);
            gofunc.extend_from_slice(&[0, 0]);
            for v in [1, 100, inlined_name, 0x08] {
                put_u32(&mut gofunc, v);
            }
        }
        PclnVersion::Go120 => {
            gofunc.extend_from_slice(&[0, 0, 0, 0]);
            for v in [inlined_name, 0x08, 99] {
                put_u32(&mut gofunc, v);
            }
        }
    }
    (data, gofunc)
}

fn data_i16(buf: &mut Vec<u8>, v: i16) {
    buf.extend_from_slice(&v.to_le_bytes());
}

fn table(version: PclnVersion) -> GoTable {
    let (data, gofunc) = synthetic(version);
    let mut t = GoTable::from_pclntab(&data).unwrap();
    t.gofunc = Some(GoFuncRegion {
        bytes: crate::target::FileSlice::copy_of(&gofunc),
    });
    t
}

#[test]
fn decodes_synthetic_tables() {
    for version in [PclnVersion::Go118, PclnVersion::Go120] {
        let t = table(version);
        assert_eq!(t.version(), version);
        let funcs: Vec<GoFunc> = t.functions().collect();
        assert_eq!(funcs.len(), 2);
        assert_eq!(
            funcs[0],
            GoFunc {
                entry: TEXT,
                end: TEXT + 0x40,
                name: "main.outer".into()
            }
        );
        assert_eq!(funcs[1].name, "main.leaf");
        assert_eq!(t.find_func("main.leaf").unwrap().entry, TEXT + 0x40);
        assert_eq!(t.func_for_pc(TEXT + 0x3f).unwrap().name, "main.outer");
        assert_eq!(t.func_for_pc(TEXT + 0x5f).unwrap().name, "main.leaf");
        assert!(t.func_for_pc(TEXT + 0x60).is_none());
        assert!(t.func_for_pc(TEXT - 1).is_none());
        assert_eq!(t.file_line(TEXT + 0x5), Some(("/src/a.go".into(), 10)));
        assert_eq!(t.file_line(TEXT + 0x25), Some(("/src/a.go".into(), 12)));
        assert_eq!(t.file_line(TEXT + 0x45), Some(("/src/b.go".into(), 200)));

        let frames = t.frames(TEXT + 0x15);
        assert_eq!(
            frames,
            vec![
                GoFrame {
                    function: "main.inlined".into(),
                    file: Some("/src/b.go".into()),
                    line: Some(100),
                    inlined: true
                },
                GoFrame {
                    function: "main.outer".into(),
                    file: Some("/src/a.go".into()),
                    line: Some(10),
                    inlined: false
                },
            ]
        );
        assert_eq!(t.frames(TEXT + 0x25).len(), 1);
        assert!(t.frames(TEXT + 0x100).is_empty());

        // Without go:func.* only the physical frame is known.
        let bare = GoTable::from_pclntab(&synthetic(version).0).unwrap();
        assert!(!bare.has_inline_data());
        assert_eq!(bare.frames(TEXT + 0x15).len(), 1);
    }
}

#[test]
fn rejects_bad_headers() {
    let (data, _) = synthetic(PclnVersion::Go120);
    assert!(matches!(
        GoTable::from_pclntab(&[]),
        Err(GoSymError::Truncated { .. })
    ));
    let mut old = data.clone();
    old[..4].copy_from_slice(&MAGIC_GO116.to_le_bytes());
    assert!(matches!(
        GoTable::from_pclntab(&old),
        Err(GoSymError::UnsupportedVersion { magic: MAGIC_GO116 })
    ));
    let mut bad = data.clone();
    bad[0] = 0;
    assert!(matches!(
        GoTable::from_pclntab(&bad),
        Err(GoSymError::BadMagic { .. })
    ));
    let mut lc = data.clone();
    lc[6] = 3;
    assert!(matches!(
        GoTable::from_pclntab(&lc),
        Err(GoSymError::BadHeader(_))
    ));
    // nfunc far beyond the section must be rejected before anything is sized by it.
    let mut huge = data.clone();
    huge[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(
        GoTable::from_pclntab(&huge),
        Err(GoSymError::Truncated { .. })
    ));
    let mut off = data;
    off[8 + 7 * 8..8 + 8 * 8].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(
        GoTable::from_pclntab(&off),
        Err(GoSymError::Truncated { .. })
    ));
    assert!(matches!(
        GoTable::from_elf(b"garbage"),
        Err(GoSymError::Object(_))
    ));
}

/// Runs every query on a table; the results do not matter, only that nothing panics.
fn exercise(t: &GoTable) {
    let text = t.text_start();
    for f in t.functions().take(64) {
        let _ = t.file_line(f.entry);
        let _ = t.frames(f.entry.wrapping_add(1));
    }
    for pc in (0..0x80).step_by(3) {
        let pc = text.wrapping_add(pc);
        let _ = t.func_for_pc(pc);
        let _ = t.file_line(pc);
        let _ = t.frames(pc);
    }
    let _ = t.find_func("main.leaf");
}

#[test]
fn truncated_tables_do_not_panic() {
    for version in [PclnVersion::Go118, PclnVersion::Go120] {
        let (data, gofunc) = synthetic(version);
        for cut in 0..=data.len() {
            if let Ok(mut t) = GoTable::from_pclntab(&data[..cut]) {
                t.gofunc = Some(GoFuncRegion {
                    bytes: crate::target::FileSlice::copy_of(&gofunc[..cut.min(gofunc.len())]),
                });
                exercise(&t);
            }
        }
    }
}

/// Xorshift64: a dependency-free PRNG for the mutator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % (n.max(1) as u64)).unwrap()
    }
}

/// One mutation of `data`: byte flips, random words (often hitting header fields,
/// functab entries or `_func` offsets), or truncation.
fn mutate(rng: &mut Rng, data: &mut Vec<u8>) {
    for _ in 0..=rng.below(4) {
        match rng.below(5) {
            0 => {
                let i = rng.below(data.len());
                if let Some(b) = data.get_mut(i) {
                    *b ^= 1 << rng.below(8);
                }
            }
            1 => {
                // Header fields: nfunc, textStart and the table offsets.
                let i = 8 + 8 * rng.below(8);
                let v = match rng.below(3) {
                    0 => rng.next(),
                    1 => rng.next() % 4096,
                    _ => u64::MAX - rng.next() % 16,
                };
                if let Some(w) = data.get_mut(i..i + 8) {
                    w.copy_from_slice(&v.to_le_bytes());
                }
            }
            2 => {
                let i = rng.below(data.len()) & !3;
                let v = u32::try_from(rng.next() >> 32).unwrap();
                if let Some(w) = data.get_mut(i..i + 4) {
                    w.copy_from_slice(&v.to_le_bytes());
                }
            }
            3 => {
                let len = rng.below(data.len() + 1);
                data.truncate(len);
            }
            _ => {
                let i = rng.below(data.len());
                if let Some(b) = data.get_mut(i) {
                    *b = u8::try_from(rng.next() & 0xff).unwrap();
                }
            }
        }
    }
}

/// Bounded fuzz target (~2 s): mutated synthetic tables and inline trees through
/// parsing and every query.
#[test]
fn fuzz_pclntab_bounded() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let seeds = [synthetic(PclnVersion::Go118), synthetic(PclnVersion::Go120)];
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut runs = 0u64;
    while Instant::now() < deadline {
        let (data, gofunc) = &seeds[rng.below(2)];
        let mut data = data.clone();
        let mut gofunc = gofunc.clone();
        mutate(&mut rng, &mut data);
        if rng.below(4) == 0 {
            mutate(&mut rng, &mut gofunc);
        }
        if let Ok(mut t) = GoTable::from_pclntab(&data) {
            t.gofunc = Some(GoFuncRegion {
                bytes: crate::target::FileSlice::copy_of(&gofunc),
            });
            exercise(&t);
        }
        let _ = GoTable::from_elf(&data);
        runs += 1;
    }
    assert!(runs > 1000, "only {runs} fuzz iterations ran");
}
