//! Uprobes through `uprobe_multi` links (Linux 6.6+): the Go lock sites, and the C
//! library's lock functions.
//!
//! Why not one perf-event uprobe per site, as aya attaches them: the kernel removes those
//! one at a time, each behind an RCU grace period taken under a global mutex, about 0.1 s
//! per site. A Go service has a thousand lock sites or more, so the tracer would take
//! minutes to exit. A `uprobe_multi` link attaches every site in one call and detaches
//! them all behind a single grace period. And since Linux 6.16 (and the stable kernels
//! that took kernel commit ba677dbe77af), a uprobe created through `perf_event_open`
//! needs `CAP_SYS_ADMIN`, while a `uprobe_multi` link needs only `CAP_BPF` and
//! `CAP_PERFMON`: the deployed capability set (`deploy/capabilities.txt`).
//!
//! aya 0.14 cannot load a program for `uprobe_multi` (its object parser knows no
//! `uprobe.multi` section, and the program must be loaded with that expected attach
//! type), so this loads a second copy of the program itself (`go_lock_site`,
//! `lock_entry`, ...): its instructions from the same object, followed by the functions
//! it calls, its map references pointed at the maps aya already created. A uprobe and a
//! uretprobe program load alike; a link's flag makes its probes return probes.
use std::{
    ffi::CString,
    os::{
        fd::{AsFd as _, AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd},
        unix::ffi::OsStrExt as _,
    },
    path::Path,
};

use aya::{Ebpf, maps::Map};
use aya_obj::generated::{
    BPF_F_UPROBE_MULTI_RETURN, bpf_attach_type, bpf_attr, bpf_cmd, bpf_prog_type,
};
use object::{
    Object as _, ObjectSection as _, ObjectSymbol as _, RelocationTarget, SectionIndex, SymbolKind,
};
use thiserror::Error;

/// What went wrong on the `uprobe_multi` path (the caller then falls back to one
/// perf-event uprobe per site).
#[derive(Debug, Error)]
pub(super) enum MultiError {
    #[error("the eBPF object cannot be parsed")]
    Object(#[source] object::Error),
    #[error("the eBPF object has no program symbol {0}")]
    NoProgram(&'static str),
    #[error("relocation at byte {offset} of {program} names something other than a map")]
    Relocation { program: &'static str, offset: u64 },
    #[error("map {0} is not loaded")]
    NoMap(String),
    #[error("BPF_PROG_LOAD for uprobe_multi failed: {log}")]
    Load {
        log: String,
        #[source]
        source: std::io::Error,
    },
    #[error("BPF_LINK_CREATE (uprobe_multi) failed")]
    Link(#[source] std::io::Error),
    #[error("the probed file's path contains a NUL byte")]
    Path,
}

/// `BPF_PSEUDO_MAP_FD`: `ld_imm64` of a map by file descriptor.
const PSEUDO_MAP_FD: u8 = 1;
/// `BPF_PSEUDO_MAP_VALUE`: `ld_imm64` of an address inside an array map's value.
const PSEUDO_MAP_VALUE: u8 = 2;
/// `BPF_PSEUDO_CALL`: the source register of a call to a function of the program.
const PSEUDO_CALL: u8 = 1;
/// Opcode of `call` (`BPF_JMP | BPF_CALL`).
const CALL: u8 = 0x85;
/// Size of one BPF instruction.
const INSN: usize = 8;
/// Verifier log buffer for the error message.
const LOG_SIZE: usize = 64 * 1024;

/// The attached sites; dropping it detaches all of them at once (each link holds its
/// program, which goes with the last link).
#[derive(Default)]
pub(super) struct MultiLink {
    _links: Vec<OwnedFd>,
}

/// Where a link's probes fire.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Probe {
    /// At the instruction (a uprobe).
    Entry,
    /// When the function entered there returns (a uretprobe).
    Return,
}

/// One link to make: `program` at every `(file offset, cookie)` of `sites`.
pub(super) struct LinkSpec<'a> {
    pub program: &'static str,
    pub probe: Probe,
    pub sites: &'a [(u64, u64)],
}

/// Loads `program` from `object` for `uprobe_multi` and attaches it at every
/// `(file offset, cookie)` of `sites` in `exe`, for process `pid` only.
///
/// # Errors
/// When the object cannot be relocated, the kernel refuses the program or the link
/// (kernels before 6.6 have no `uprobe_multi`).
pub(super) fn attach(
    object_bytes: &[u8],
    program: &'static str,
    ebpf: &Ebpf,
    exe: &Path,
    pid: u32,
    sites: &[(u64, u64)],
) -> Result<MultiLink, MultiError> {
    let spec = LinkSpec {
        program,
        probe: Probe::Entry,
        sites,
    };
    attach_all(object_bytes, ebpf, exe, pid, &[spec])
}

/// Makes every link of `specs` in `exe`, for process `pid` only, in order (a program
/// named by several is loaded once). A spec without sites is skipped: the kernel refuses
/// an empty `uprobe_multi` list.
///
/// Every program is loaded (and verified, which takes milliseconds) before the first
/// link is made, so that the links follow each other closely: a call made between the
/// links of an entry and of a return probe is seen entering but not returning, and it
/// stays the lock call in flight for its thread (see `lock_entry`). The first link,
/// which creates the uprobes, took 11 ms for the C library's lock functions; the next
/// ones, which only add their programs to them, 60 µs or less.
///
/// # Errors
/// As [`attach`]. The links made before the failure are detached.
pub(super) fn attach_all(
    object_bytes: &[u8],
    ebpf: &Ebpf,
    exe: &Path,
    pid: u32,
    specs: &[LinkSpec<'_>],
) -> Result<MultiLink, MultiError> {
    let specs: Vec<&LinkSpec<'_>> = specs.iter().filter(|spec| !spec.sites.is_empty()).collect();
    let mut programs: Vec<(&'static str, OwnedFd)> = Vec::new();
    for spec in &specs {
        if programs.iter().all(|(name, _)| *name != spec.program) {
            let insns = relocated_program(object_bytes, spec.program, ebpf)?;
            programs.push((spec.program, load(spec.program, &insns)?));
        }
    }
    let mut links = Vec::new();
    for spec in specs {
        let Some((_, prog)) = programs.iter().find(|(name, _)| *name == spec.program) else {
            continue;
        };
        links.push(link(prog.as_fd(), exe, pid, spec.sites, spec.probe)?);
    }
    Ok(MultiLink { _links: links })
}

/// The program's instructions, followed by those of every function it calls (BPF-to-BPF
/// calls, linked as aya links them: the `aya-log` messages of the programs' diagnostics
/// are such functions), with each call pointed at its callee and every map reference
/// resolved to the maps of `ebpf`.
fn relocated_program(
    object_bytes: &[u8],
    program: &'static str,
    ebpf: &Ebpf,
) -> Result<Vec<u8>, MultiError> {
    let file = object::File::parse(object_bytes).map_err(MultiError::Object)?;
    let symbol = file
        .symbols()
        .find(|s| s.name() == Ok(program))
        .ok_or(MultiError::NoProgram(program))?;
    let main = symbol
        .section_index()
        .and_then(|section| function_at(&file, section, symbol.address()))
        .ok_or(MultiError::NoProgram(program))?;
    let mut linker = Linker {
        file: &file,
        program,
        ebpf,
        insns: Vec::new(),
        linked: Vec::new(),
    };
    linker.link(main)?;
    // Relocating a function may link more (its callees), which are relocated in turn.
    let mut next = 0;
    while let Some(&(function, first)) = linker.linked.get(next) {
        linker.relocate(function, first)?;
        next += 1;
    }
    Ok(linker.insns)
}

/// A function of the object: its section, and where it lies there (bytes).
#[derive(Clone, Copy, PartialEq, Eq)]
struct Function {
    section: SectionIndex,
    start: u64,
    end: u64,
}

/// The function whose symbol starts at `address` in `section`.
fn function_at(file: &object::File<'_>, section: SectionIndex, address: u64) -> Option<Function> {
    file.symbols()
        .find(|s| {
            s.kind() == SymbolKind::Text
                && s.section_index() == Some(section)
                && s.address() == address
                && s.size() > 0
        })
        .map(|s| Function {
            section,
            start: address,
            end: address + s.size(),
        })
}

/// Copies a program and the functions it calls out of the object into one instruction
/// stream.
struct Linker<'a, 'data> {
    file: &'a object::File<'data>,
    program: &'static str,
    ebpf: &'a Ebpf,
    insns: Vec<u8>,
    /// Every function copied into `insns`, with the index of its first instruction there.
    linked: Vec<(Function, usize)>,
}

impl Linker<'_, '_> {
    /// The error for the instruction at byte `offset` of the object's section.
    fn bad(&self, offset: u64) -> MultiError {
        MultiError::Relocation {
            program: self.program,
            offset,
        }
    }

    /// Copies `function` to the end of the stream unless it is there already; the index
    /// of its first instruction there.
    fn link(&mut self, function: Function) -> Result<usize, MultiError> {
        if let Some(&(_, first)) = self.linked.iter().find(|(f, _)| *f == function) {
            return Ok(first);
        }
        let code = self
            .file
            .section_by_index(function.section)
            .and_then(|section| section.data())
            .map_err(MultiError::Object)?
            .get(usize::try_from(function.start).unwrap_or(usize::MAX)..)
            .and_then(|code| code.get(..usize::try_from(function.end - function.start).ok()?))
            .ok_or_else(|| self.bad(function.start))?;
        let first = self.insns.len() / INSN;
        self.insns.extend_from_slice(code);
        self.linked.push((function, first));
        Ok(first)
    }

    /// Resolves the map references and calls of `function`, copied at instruction
    /// `first`, linking the functions it calls. As in aya, a call with a relocation goes
    /// to `symbol + (imm + 1)` instructions (a function symbol comes with imm = -1), and
    /// one without is pc-relative within the section.
    fn relocate(&mut self, function: Function, first: usize) -> Result<(), MultiError> {
        let section = self
            .file
            .section_by_index(function.section)
            .map_err(MultiError::Object)?;
        for (index, at) in (first..).zip((function.start..function.end).step_by(INSN)) {
            let insn = self
                .insns
                .get(index * INSN..(index + 1) * INSN)
                .ok_or_else(|| self.bad(at))?;
            let imm = i64::from(i32::from_le_bytes([insn[4], insn[5], insn[6], insn[7]]));
            let is_call = insn[0] == CALL && insn[1] >> 4 == PSEUDO_CALL;
            let relocation = section.relocations().find(|&(offset, _)| offset == at);
            let (callee_section, callee_start) = match relocation {
                Some((_, reloc)) if is_call => {
                    let target = self.symbol(&reloc).ok_or_else(|| self.bad(at))?;
                    let section = target.section_index().ok_or_else(|| self.bad(at))?;
                    (section, target.address().checked_add_signed((imm + 1) * 8))
                }
                Some((_, reloc)) => {
                    self.relocate_map_reference(&reloc, index, at)?;
                    continue;
                }
                None if is_call => (function.section, at.checked_add_signed((imm + 1) * 8)),
                None => continue,
            };
            let callee = callee_start
                .and_then(|start| function_at(self.file, callee_section, start))
                .ok_or_else(|| self.bad(at))?;
            let callee_first = self.link(callee)?;
            let jump = i64::try_from(callee_first).unwrap_or(i64::MAX)
                - i64::try_from(index).unwrap_or(i64::MAX)
                - 1;
            let jump = i32::try_from(jump).map_err(|_| self.bad(at))?;
            self.insns[index * INSN + 4..index * INSN + 8].copy_from_slice(&jump.to_le_bytes());
        }
        Ok(())
    }

    /// The symbol a relocation names.
    fn symbol(&self, reloc: &object::Relocation) -> Option<object::Symbol<'_, '_>> {
        let RelocationTarget::Symbol(target) = reloc.target() else {
            return None;
        };
        self.file.symbol_by_index(target).ok()
    }

    /// Points the `ld_imm64` at instruction `index` (object byte `at`) at the map or
    /// global that `reloc` names.
    fn relocate_map_reference(
        &mut self,
        reloc: &object::Relocation,
        index: usize,
        at: u64,
    ) -> Result<(), MultiError> {
        let target = self.symbol(reloc).ok_or_else(|| self.bad(at))?;
        let target_section = target
            .section_index()
            .and_then(|i| self.file.section_by_index(i).ok())
            .and_then(|s| s.name().ok().map(str::to_owned))
            .ok_or_else(|| self.bad(at))?;
        let insn = self
            .insns
            .get(index * INSN..(index + 2) * INSN)
            .ok_or_else(|| self.bad(at))?;
        // Only `ld_imm64` (opcode 0x18) can load a map.
        if insn[0] != 0x18 {
            return Err(self.bad(at));
        }
        let (src, fd, value_offset) = if target_section == "maps" {
            let name = target.name().map_err(|_| self.bad(at))?;
            (PSEUDO_MAP_FD, map_fd(self.ebpf, name)?, None)
        } else if target_section.starts_with(".rodata")
            || target_section.starts_with(".data")
            || target_section.starts_with(".bss")
        {
            // A global: the address `symbol + addend` inside the section's array map.
            let addend = i32::from_le_bytes([insn[4], insn[5], insn[6], insn[7]]);
            let inside = u32::try_from(target.address())
                .ok()
                .and_then(|a| a.checked_add_signed(addend))
                .ok_or_else(|| self.bad(at))?;
            (
                PSEUDO_MAP_VALUE,
                map_fd(self.ebpf, &target_section)?,
                Some(inside),
            )
        } else {
            return Err(self.bad(at));
        };
        let insn = &mut self.insns[index * INSN..(index + 2) * INSN];
        insn[1] = (insn[1] & 0x0f) | (src << 4);
        insn[4..8].copy_from_slice(&fd.to_le_bytes());
        insn[INSN + 4..INSN + 8].copy_from_slice(&value_offset.unwrap_or(0).to_le_bytes());
        Ok(())
    }
}

/// The file descriptor of map `name` of `ebpf`.
fn map_fd(ebpf: &Ebpf, name: &str) -> Result<i32, MultiError> {
    let Some(
        Map::Array(data)
        | Map::PerCpuArray(data)
        | Map::RingBuf(data)
        | Map::StackTraceMap(data)
        | Map::HashMap(data)
        | Map::LruHashMap(data)
        | Map::PerCpuHashMap(data),
    ) = ebpf.map(name)
    else {
        return Err(MultiError::NoMap(name.to_owned()));
    };
    Ok(data.fd().as_fd().as_raw_fd())
}

/// `bpf(2)`.
///
/// # Safety
/// `attr` must be valid for `cmd`: every pointer in it points at live memory of the
/// size the kernel will read or write.
unsafe fn sys_bpf(cmd: bpf_cmd, attr: &mut bpf_attr) -> std::io::Result<OwnedFd> {
    let size = u32::try_from(size_of::<bpf_attr>()).unwrap_or(u32::MAX);
    // SAFETY: the caller vouches for `attr`; the kernel reads at most `size` bytes of it.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            std::ptr::from_mut(attr),
            size,
        )
    };
    if ret < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let fd = i32::try_from(ret).map_err(|_| std::io::Error::other("fd out of range"))?;
    // SAFETY: a successful BPF_PROG_LOAD / BPF_LINK_CREATE returns a new descriptor that
    // nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn load(program: &'static str, insns: &[u8]) -> Result<OwnedFd, MultiError> {
    let license = c"GPL";
    let mut log = vec![0u8; LOG_SIZE];
    // SAFETY: bpf_attr is plain integers and unions of them; all-zero is its default.
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    // SAFETY: writing the BPF_PROG_LOAD member of the zeroed union.
    let load = unsafe { &mut attr.__bindgen_anon_3 };
    load.prog_type = bpf_prog_type::BPF_PROG_TYPE_KPROBE as u32;
    load.expected_attach_type = bpf_attach_type::BPF_TRACE_UPROBE_MULTI as u32;
    load.insn_cnt = u32::try_from(insns.len() / INSN).unwrap_or(0);
    load.insns = insns.as_ptr() as u64;
    load.license = license.as_ptr() as u64;
    for (dst, src) in load.prog_name.iter_mut().zip(program.bytes().take(15)) {
        *dst = src.cast_signed();
    }
    // SAFETY: `attr` points at `insns` and `license`, both alive across the call.
    if let Ok(fd) = unsafe { sys_bpf(bpf_cmd::BPF_PROG_LOAD, &mut attr) } {
        return Ok(fd);
    }
    // Again with the verifier's log, for the error message.
    // SAFETY: as above.
    let load = unsafe { &mut attr.__bindgen_anon_3 };
    load.log_level = 1;
    load.log_size = u32::try_from(log.len()).unwrap_or(0);
    load.log_buf = log.as_mut_ptr() as u64;
    // SAFETY: as above, plus the log buffer of `log_size` bytes, alive across the call.
    unsafe { sys_bpf(bpf_cmd::BPF_PROG_LOAD, &mut attr) }.map_err(|source| MultiError::Load {
        log: String::from_utf8_lossy(&log)
            .trim_end_matches('\0')
            .lines()
            .rev()
            .take(8)
            .collect::<Vec<_>>()
            .join(" | "),
        source,
    })
}

fn link(
    prog: BorrowedFd<'_>,
    exe: &Path,
    pid: u32,
    sites: &[(u64, u64)],
    probe: Probe,
) -> Result<OwnedFd, MultiError> {
    let path = CString::new(exe.as_os_str().as_bytes()).map_err(|_| MultiError::Path)?;
    let offsets: Vec<u64> = sites.iter().map(|&(offset, _)| offset).collect();
    let cookies: Vec<u64> = sites.iter().map(|&(_, cookie)| cookie).collect();
    // SAFETY: all-zero is a valid bpf_attr.
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    // SAFETY: writing the BPF_LINK_CREATE member of the zeroed union.
    let create = unsafe { &mut attr.link_create };
    create.__bindgen_anon_1.prog_fd = u32::try_from(prog.as_raw_fd()).unwrap_or(u32::MAX);
    create.attach_type = bpf_attach_type::BPF_TRACE_UPROBE_MULTI as u32;
    // SAFETY: writing the uprobe_multi member of the zeroed inner union.
    let multi = unsafe { &mut create.__bindgen_anon_3.uprobe_multi };
    multi.path = path.as_ptr() as u64;
    multi.offsets = offsets.as_ptr() as u64;
    multi.cookies = cookies.as_ptr() as u64;
    multi.cnt = u32::try_from(sites.len()).unwrap_or(0);
    multi.pid = pid;
    if probe == Probe::Return {
        multi.flags = BPF_F_UPROBE_MULTI_RETURN;
    }
    // SAFETY: path, offsets and cookies live until after the call; `cnt` is their length.
    unsafe { sys_bpf(bpf_cmd::BPF_LINK_CREATE, &mut attr) }.map_err(MultiError::Link)
}
