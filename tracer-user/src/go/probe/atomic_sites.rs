//! The site plan for a Go binary: every uprobe the tracer attaches for Go mutexes, with
//! the attach cookie that tells the one eBPF program what each site means.
//!
//! Go's fast paths (`Mutex.Lock`/`TryLock`/`Unlock`, `RWMutex.RLock`/`RUnlock`) are
//! inlined into their callers, so the sites are the instructions right after their
//! atomics: x86 uprobes refuse `lock`-prefixed instructions, and only after the atomic
//! is its outcome known (`ZF` after `cmpxchg`, the old value after `xadd`). Which
//! inlined function an atomic belongs to comes from the pclntab inline tree, so stripped
//! binaries plan the same sites. The slow path gets entry and `ret` sites instead
//! (`lockSlow`, and the semaphore acquire readers wait in).
//!
//! To stay fast on large binaries only functions whose inline tree mentions a lock
//! function ([`GoTable::funcs_inlining`]) and the out-of-line lock functions are decoded.
use iced_x86::{Instruction, Mnemonic, OpKind, Register};
use tracer_common::{GoOp, go_cookie, pt_reg};

use super::{GoProbeError, Segment, elf_segments, entry_and_returns, map_range};
use crate::{
    go::sym::{GoFrame, GoFunc, GoTable},
    lock_names::code::Decoded,
};

/// One uprobe of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GoLockSite {
    /// What the site means (the low byte of the cookie).
    pub op: GoOp,
    /// Where the uprobe goes: a function entry, a `ret`, or the instruction right after
    /// an atomic.
    pub vaddr: u64,
    /// File offset of `vaddr` (what the uprobe attach API takes).
    pub file_offset: u64,
    /// [`pt_reg`] slot of the register holding the address base, [`pt_reg::RIP`] for a
    /// RIP-relative operand, or [`pt_reg::NONE`] when the site carries no address.
    pub base: u8,
    /// [`pt_reg`] slot of the register holding a value ([`GoOp::RLockFast`]: the old
    /// reader count), or [`pt_reg::NONE`].
    pub value: u8,
    /// `addr = regs[base] + displacement`. For [`pt_reg::RIP`] this is the absolute
    /// target minus `vaddr` (in the handler `regs.ip` is the probe address).
    pub displacement: i32,
    /// The physical (pclntab) function the site is in.
    pub function: String,
}

impl GoLockSite {
    /// The attach cookie ([`go_cookie::pack`]).
    #[must_use]
    pub fn cookie(&self) -> u64 {
        go_cookie::pack(self.op, self.base, self.value, self.displacement)
    }
}

/// Whether a site of `op` begins a wait or a hold (which a later site ends).
fn begins_state(op: GoOp) -> bool {
    match op {
        GoOp::MutexLockFast
        | GoOp::RwLockFast
        | GoOp::RLockFast
        | GoOp::LockSlowEnter
        | GoOp::SemacquireEnter => true,
        GoOp::MutexUnlock
        | GoOp::RwUnlock
        | GoOp::RUnlock
        | GoOp::LockSlowReturn
        | GoOp::SemacquireReturn
        | GoOp::SemreleaseEnter => false,
    }
}

/// The (file offset, cookie) list to attach, in the order to attach it: the sites that
/// end a wait or a hold (and hand-overs) before those that begin one. The kernel puts
/// the uprobes of one link in one by one, over milliseconds; a wait whose start is seen
/// and whose end is not stays open in the model, and a goroutine's later park on the
/// same lock is taken for the same wait (a function entry run again after stack growth),
/// so it would keep its first start. The C library's lock functions are attached
/// releases first for the same reason (`probes`). Otherwise in plan order.
#[must_use]
pub fn attach_order(sites: &[GoLockSite]) -> Vec<(u64, u64)> {
    let mut ordered: Vec<&GoLockSite> = sites.iter().collect();
    // Stable: within each group, the plan's order.
    ordered.sort_by_key(|site| begins_state(site.op));
    ordered
        .into_iter()
        .map(|site| (site.file_offset, site.cookie()))
        .collect()
}

/// A lock atomic that gets no site, and why.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SkippedSite {
    /// Address of the atomic instruction (or, when a function did not decode to its
    /// end, of the first undecodable byte; when its code is not in the file, its entry).
    pub vaddr: u64,
    /// The physical function it is in.
    pub function: String,
    /// Why no uprobe is put after it.
    pub reason: &'static str,
}

/// Everything [`plan_go_lock_sites`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GoSitePlan {
    /// The sites, by address (then op).
    pub sites: Vec<GoLockSite>,
    /// Lock atomics left without a site (tracing misses those operations).
    pub skipped: Vec<SkippedSite>,
    /// Entry/return functions not in the binary, by their first candidate name.
    pub missing: Vec<&'static str>,
    /// Whether the pclntab inline trees could be read. Without them only the out-of-line
    /// lock functions are planned, and every inlined fast path is missed.
    pub has_inline_data: bool,
}

/// Candidates for the `lockSlow` entry and return sites.
const LOCK_SLOW: [&str; 2] = ["sync.(*Mutex).lockSlow", "internal/sync.(*Mutex).lockSlow"];
/// Functions whose returns end a reader's (or, before Go 1.20, anyone's) semaphore wait.
const SEMACQUIRE: [&str; 2] = [
    "sync.runtime_SemacquireMutex",
    "sync.runtime_SemacquireRWMutexR",
];

/// Mutex acquire fast paths: their `lock cmpxchg` takes the lock when it sets `ZF`.
const MUTEX_ACQUIRE: [&str; 4] = [
    "sync.(*Mutex).Lock",
    "internal/sync.(*Mutex).Lock",
    "sync.(*Mutex).TryLock",
    "internal/sync.(*Mutex).TryLock",
];
/// Mutex release fast paths: their `lock xadd` drops the locked bit.
const MUTEX_RELEASE: [&str; 2] = ["sync.(*Mutex).Unlock", "internal/sync.(*Mutex).Unlock"];
const RLOCK: &str = "sync.(*RWMutex).RLock";
const RUNLOCK: &str = "sync.(*RWMutex).RUnlock";
/// Every function whose atomic is a site: callers inlining one of these are decoded.
const LOCK_FNS: [&str; 8] = [
    MUTEX_ACQUIRE[0],
    MUTEX_ACQUIRE[1],
    MUTEX_ACQUIRE[2],
    MUTEX_ACQUIRE[3],
    MUTEX_RELEASE[0],
    MUTEX_RELEASE[1],
    RLOCK,
    RUNLOCK,
];
/// Lock functions whose atomic Go 1.19 (at least) attributes to the caller's call site:
/// the first statement of their body is an `if` on an intrinsic atomic, and the atomic
/// gets the position of the inlined call, with no inline frame. Their atomics are
/// matched to the call site through the inline tree instead.
const CALL_SITE_FALLBACK: [&str; 5] = [
    MUTEX_ACQUIRE[0],
    MUTEX_ACQUIRE[1],
    MUTEX_ACQUIRE[2],
    MUTEX_ACQUIRE[3],
    RLOCK,
];
/// Packages whose functions wrap the atomic instruction itself (`rw.readerCount.Add`
/// is `sync/atomic.(*Int32).Add` inlined into `RLock`, from Go 1.20): they are looked
/// through to find the lock function.
const ATOMIC_PACKAGES: [&str; 3] = [
    "sync/atomic.",
    "internal/runtime/atomic.",
    "runtime/internal/atomic.",
];
/// Methods of this type make a `Mutex` fast path the write side of an `RWMutex`.
const RWMUTEX_METHOD: &str = "sync.(*RWMutex).";

/// Plans every Go mutex uprobe of an x86-64 Go ELF binary (stripped or not):
/// - entry of `sync.(*Mutex).lockSlow` / `internal/sync.(*Mutex).lockSlow`
///   ([`GoOp::LockSlowEnter`], receiver in `AX`) and each of their `ret`s
///   ([`GoOp::LockSlowReturn`]);
/// - each `ret` of `sync.runtime_SemacquireMutex` / `sync.runtime_SemacquireRWMutexR`
///   ([`GoOp::SemacquireReturn`]);
/// - the instruction after each `lock cmpxchg`/`lock xadd` of an inlined or out-of-line
///   `Mutex.Lock`/`TryLock`/`Unlock` or `RWMutex.RLock`/`RUnlock`, with the register
///   and displacement of its memory operand. Atomics whose next instruction could be
///   reached another way, or whose address cannot be recomputed after the atomic, are
///   listed in [`GoSitePlan::skipped`].
///
/// # Errors
/// If the file is not a 64-bit x86-64 ELF file, has no readable pclntab, or the code
/// of `lockSlow` or a semaphore function is not in the file.
pub fn plan_go_lock_sites(elf: &[u8]) -> Result<GoSitePlan, GoProbeError> {
    let table = GoTable::from_elf(elf).map_err(GoProbeError::GoSym)?;
    plan_go_lock_sites_with(elf, &table)
}

/// [`plan_go_lock_sites`] with the binary's pclntab already read (`table`, from `elf`),
/// so an attach reads it once.
///
/// # Errors
/// As [`plan_go_lock_sites`].
pub fn plan_go_lock_sites_with(elf: &[u8], table: &GoTable) -> Result<GoSitePlan, GoProbeError> {
    let segments = elf_segments(elf)?;
    plan_with_table(elf, &segments, table)
}

fn plan_with_table(
    elf: &[u8],
    segments: &[Segment],
    table: &GoTable,
) -> Result<GoSitePlan, GoProbeError> {
    let mut plan = GoSitePlan {
        has_inline_data: table.has_inline_data(),
        ..GoSitePlan::default()
    };
    let mut wanted: Vec<&str> = LOCK_SLOW.to_vec();
    wanted.extend(SEMACQUIRE);
    wanted.extend(LOCK_FNS);
    let named = table.funcs_named(&wanted);

    plan_entries_and_returns(
        elf,
        segments,
        &named,
        &[
            (
                &LOCK_SLOW,
                Some(GoOp::LockSlowEnter),
                Some(GoOp::LockSlowReturn),
            ),
            (&SEMACQUIRE, None, Some(GoOp::SemacquireReturn)),
        ],
        &mut plan,
    )?;

    // Out-of-line lock functions, plus every function that inlines one.
    let mut funcs: Vec<GoFunc> = named
        .into_iter()
        .filter(|f| LOCK_FNS.contains(&f.name.as_str()))
        .collect();
    funcs.extend(table.funcs_inlining(&LOCK_FNS));
    funcs.sort_by_key(|f| f.entry);
    funcs.dedup_by_key(|f| f.entry);
    for func in &funcs {
        let Some((entry_off, code)) = map_range(elf, segments, func.entry, func.end) else {
            plan.skipped.push(SkippedSite {
                vaddr: func.entry,
                function: func.name.clone(),
                reason: "the function's code is not in the file",
            });
            continue;
        };
        let call_sites = || {
            table
                .inlined_calls(func.entry)
                .into_iter()
                .filter(|call| CALL_SITE_FALLBACK.contains(&call.function.as_str()))
                .filter_map(|call| Some((call.function, table.frames(call.call_pc?))))
                .collect()
        };
        let (sites, skipped) = plan_function(
            code,
            func.entry,
            &func.name,
            |pc| table.frames(pc),
            call_sites,
        );
        plan.sites.extend(sites.into_iter().map(|mut site| {
            site.file_offset = entry_off + (site.vaddr - func.entry);
            site
        }));
        plan.skipped.extend(skipped);
    }
    plan.sites.sort_by_key(|s| (s.vaddr, s.op));
    Ok(plan)
}

/// Sites at the entries and `ret`s of whole functions: for each group of candidate
/// names, the entry (with the receiver, `AX`, as the address) when `entry_op` is set and
/// every `ret` when `return_op` is. A group with no candidate in the binary is listed in
/// [`GoSitePlan::missing`].
fn plan_entries_and_returns(
    elf: &[u8],
    segments: &[Segment],
    named: &[GoFunc],
    groups: &[(&[&'static str], Option<GoOp>, Option<GoOp>)],
    plan: &mut GoSitePlan,
) -> Result<(), GoProbeError> {
    for &(group, entry_op, return_op) in groups {
        let mut found = false;
        for &name in group {
            for func in named.iter().filter(|f| f.name == name) {
                found = true;
                let (entry, returns, _) = entry_and_returns(elf, segments, name, func)?;
                let bare = |op, vaddr, file_offset| GoLockSite {
                    op,
                    vaddr,
                    file_offset,
                    base: pt_reg::NONE,
                    value: pt_reg::NONE,
                    displacement: 0,
                    function: func.name.clone(),
                };
                if let Some(op) = entry_op {
                    plan.sites.push(GoLockSite {
                        // Go's register ABI: the first argument (the receiver, or the
                        // semaphore's address) is in AX.
                        base: pt_reg::RAX,
                        ..bare(op, entry.vaddr, entry.file_offset)
                    });
                }
                if let Some(op) = return_op {
                    plan.sites
                        .extend(returns.iter().map(|r| bare(op, r.vaddr, r.file_offset)));
                }
            }
        }
        if !found {
            plan.missing.push(group[0]);
        }
    }
    Ok(())
}

/// The `sync` semaphore acquires a goroutine parks in (Go 1.19 has the first only; 1.20
/// adds the `RWMutex` ones; 1.24 moves the mutex's into `internal/sync`).
const PARK: [&str; 4] = [
    "sync.runtime_SemacquireMutex",
    "internal/sync.runtime_SemacquireMutex",
    "sync.runtime_SemacquireRWMutexR",
    "sync.runtime_SemacquireRWMutex",
];
/// The `sync` semaphore releases that hand a lock over to parked goroutines.
const HAND_OVER: [&str; 2] = [
    "sync.runtime_Semrelease",
    "internal/sync.runtime_Semrelease",
];

/// Plans the default Go probes of an x86-64 Go binary: only where goroutines park on a
/// lock and where a lock is handed over to parked goroutines, so that the lock fast paths
/// (and the slow path's spinning) run untouched:
/// - entry of each `sync` semaphore acquire ([`GoOp::SemacquireEnter`], the semaphore in
///   `AX`; its caller says which lock and side) and each of its `ret`s
///   ([`GoOp::SemacquireReturn`]);
/// - entry of each `sync` semaphore release ([`GoOp::SemreleaseEnter`]).
///
/// # Errors
/// If the code of one of these functions is not in the file.
pub fn plan_go_park_sites(elf: &[u8], table: &GoTable) -> Result<GoSitePlan, GoProbeError> {
    let segments = elf_segments(elf)?;
    let mut wanted: Vec<&str> = PARK.to_vec();
    wanted.extend(HAND_OVER);
    let named = table.funcs_named(&wanted);
    let mut plan = GoSitePlan {
        has_inline_data: table.has_inline_data(),
        ..GoSitePlan::default()
    };
    plan_entries_and_returns(
        elf,
        &segments,
        &named,
        &[
            (
                &PARK,
                Some(GoOp::SemacquireEnter),
                Some(GoOp::SemacquireReturn),
            ),
            (&HAND_OVER, Some(GoOp::SemreleaseEnter), None),
        ],
        &mut plan,
    )?;
    plan.sites.sort_by_key(|s| (s.vaddr, s.op));
    Ok(plan)
}

/// Which atomic instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Atomic {
    Cmpxchg,
    Xadd,
}

/// What the atomic at a pc means, from the logical frames there (innermost first, the
/// physical function last); `None` when it is not a lock site.
fn classify(atomic: Atomic, frames: &[String]) -> Option<GoOp> {
    let lock_ix = frames
        .iter()
        .position(|f| !ATOMIC_PACKAGES.iter().any(|p| f.starts_with(p)))?;
    let lock = frames[lock_ix].as_str();
    let in_rwmutex = frames[lock_ix + 1..]
        .iter()
        .any(|f| f.starts_with(RWMUTEX_METHOD));
    match atomic {
        Atomic::Cmpxchg if MUTEX_ACQUIRE.contains(&lock) => Some(if in_rwmutex {
            GoOp::RwLockFast
        } else {
            GoOp::MutexLockFast
        }),
        Atomic::Xadd if MUTEX_RELEASE.contains(&lock) => Some(if in_rwmutex {
            GoOp::RwUnlock
        } else {
            GoOp::MutexUnlock
        }),
        Atomic::Xadd if lock == RLOCK => Some(GoOp::RLockFast),
        Atomic::Xadd if lock == RUNLOCK => Some(GoOp::RUnlock),
        _ => None,
    }
}

/// The `pt_regs` slot of a 64-bit general-purpose register.
pub(super) fn reg_slot(reg: Register) -> Option<u8> {
    Some(match reg {
        Register::R15 => pt_reg::R15,
        Register::R14 => pt_reg::R14,
        Register::R13 => pt_reg::R13,
        Register::R12 => pt_reg::R12,
        Register::RBP => pt_reg::RBP,
        Register::RBX => pt_reg::RBX,
        Register::R11 => pt_reg::R11,
        Register::R10 => pt_reg::R10,
        Register::R9 => pt_reg::R9,
        Register::R8 => pt_reg::R8,
        Register::RAX => pt_reg::RAX,
        Register::RCX => pt_reg::RCX,
        Register::RDX => pt_reg::RDX,
        Register::RSI => pt_reg::RSI,
        Register::RDI => pt_reg::RDI,
        Register::RSP => pt_reg::RSP,
        _ => return None,
    })
}

/// `(base slot, displacement, value slot)` of a lock site after `instr`, whose probe
/// goes at `probe` (the next instruction), or why the operand cannot be recomputed there.
fn operands(
    instr: &Instruction,
    atomic: Atomic,
    op: GoOp,
    probe: u64,
) -> Result<(u8, i32, u8), &'static str> {
    if instr.memory_index() != Register::None {
        return Err("the memory operand has an index register");
    }
    if instr.segment_prefix() != Register::None {
        return Err("the memory operand has a segment override");
    }
    let reg = instr.op1_register();
    let value = if op == GoOp::RLockFast {
        if reg.size() < 4 {
            return Err("the value register is narrower than 32 bits");
        }
        reg_slot(reg.full_register()).ok_or("the value register is not a general register")?
    } else {
        pt_reg::NONE
    };
    let too_far = "the displacement does not fit in 32 bits";
    if instr.is_ip_rel_memory_operand() {
        let target = instr.ip_rel_memory_address();
        #[expect(
            clippy::cast_possible_wrap,
            reason = "the wrapping difference is the signed distance"
        )]
        let delta = target.wrapping_sub(probe) as i64;
        return Ok((
            pt_reg::RIP,
            i32::try_from(delta).map_err(|_| too_far)?,
            value,
        ));
    }
    let base = instr.memory_base();
    if base == Register::None {
        return Err("the memory operand has no base register");
    }
    if !base.is_gpr64() {
        return Err("the memory operand uses 32-bit addressing");
    }
    // cmpxchg writes only RAX, and only when it fails (when nothing is reported), so
    // any base survives it; xadd always writes its register operand.
    if atomic == Atomic::Xadd && reg.full_register() == base {
        return Err("the xadd overwrites its base register");
    }
    let base_slot = reg_slot(base).ok_or("the base register is not a general register")?;
    #[expect(
        clippy::cast_possible_wrap,
        reason = "iced sign-extends the displacement to 64 bits"
    )]
    let disp = instr.memory_displacement64() as i64;
    Ok((base_slot, i32::try_from(disp).map_err(|_| too_far)?, value))
}

/// Whether an instruction's legacy prefixes include one that x86 uprobes refuse
/// (the kernel's `is_prefix_bad`: `lock` and the ES/CS/SS/DS segment overrides), and
/// which: `Some(true)` for `lock`.
fn bad_prefix(bytes: &[u8]) -> Option<bool> {
    let mut bad = None;
    for &b in bytes {
        match b {
            0xf0 => return Some(true),
            0x26 | 0x2e | 0x36 | 0x3e => bad = Some(false),
            0x64 | 0x65 | 0x66 | 0x67 | 0xf2 | 0xf3 => {}
            _ => break,
        }
    }
    bad
}

/// What the atomic at a pc with logical frames `here` means, when the frames alone do
/// not say: `here` is exactly the call site (same frames, files and lines) of an
/// inlined [`CALL_SITE_FALLBACK`] function, per `call_sites` (each such inlined call and
/// the caller's frames at its call). `Err` when calls with different meanings share it.
fn call_site_op(
    atomic: Atomic,
    here: &[GoFrame],
    call_sites: &[(String, Vec<GoFrame>)],
) -> Result<Option<GoOp>, &'static str> {
    let mut found = None;
    for (callee, caller) in call_sites {
        if caller.as_slice() != here {
            continue;
        }
        let chain: Vec<String> = std::iter::once(callee.clone())
            .chain(here.iter().map(|f| f.function.clone()))
            .collect();
        match (found, classify(atomic, &chain)) {
            (_, None) => {}
            (None, op) => found = op,
            (Some(a), Some(b)) if a != b => {
                return Err("inlined lock calls with different meanings share the call site");
            }
            (Some(_), Some(_)) => {}
        }
    }
    Ok(found)
}

/// Decodes one function (`code` at `entry`) and plans a site after each lock atomic.
/// `frames(pc)` gives the logical frames at `pc`, innermost first; `call_sites()` (asked
/// at most once) the inlined [`CALL_SITE_FALLBACK`] calls with the caller's frames at
/// each call. Sites come back with `file_offset` = offset from `entry` (the caller adds
/// the function's file offset).
fn plan_function(
    code: &[u8],
    entry: u64,
    function: &str,
    frames: impl Fn(u64) -> Vec<GoFrame>,
    call_sites: impl FnOnce() -> Vec<(String, Vec<GoFrame>)>,
) -> (Vec<GoLockSite>, Vec<SkippedSite>) {
    let decoded = Decoded::new(code, entry);
    let mut call_sites = Some(call_sites);
    let mut call_site_list: Vec<(String, Vec<GoFrame>)> = Vec::new();
    let mut sites = Vec::new();
    let mut skipped = Vec::new();
    let skip = |vaddr, reason| SkippedSite {
        vaddr,
        function: function.to_owned(),
        reason,
    };
    for (i, instr) in decoded.instrs.iter().enumerate() {
        let atomic = match instr.mnemonic() {
            Mnemonic::Cmpxchg => Atomic::Cmpxchg,
            Mnemonic::Xadd => Atomic::Xadd,
            _ => continue,
        };
        if !instr.has_lock_prefix() || instr.op0_kind() != OpKind::Memory {
            continue;
        }
        let at = instr.ip();
        let here = frames(at);
        let names: Vec<String> = here.iter().map(|f| f.function.clone()).collect();
        let op = if let Some(op) = classify(atomic, &names) {
            op
        } else {
            if let Some(load) = call_sites.take() {
                call_site_list = load();
            }
            match call_site_op(atomic, &here, &call_site_list) {
                Ok(Some(op)) => op,
                Ok(None) => continue,
                Err(reason) => {
                    skipped.push(skip(at, reason));
                    continue;
                }
            }
        };
        match decoded.site_after(i, atomic, op) {
            Ok((probe, base, displacement, value)) => sites.push(GoLockSite {
                op,
                vaddr: probe,
                file_offset: probe - entry,
                base,
                value,
                displacement,
                function: function.to_owned(),
            }),
            Err(reason) => skipped.push(skip(at, reason)),
        }
    }
    if let Some(stop) = decoded.stopped_at {
        skipped.push(skip(
            stop,
            "undecodable bytes: the rest of the function was not searched",
        ));
    }
    (sites, skipped)
}

impl Decoded<'_> {
    /// `(probe address, base slot, displacement, value slot)` of the site after the lock
    /// atomic `instrs[i]`, or why it gets none.
    fn site_after(
        &self,
        i: usize,
        atomic: Atomic,
        op: GoOp,
    ) -> Result<(u64, u8, i32, u8), &'static str> {
        if self.stopped_at.is_some() {
            return Err("the function did not decode to its end");
        }
        let next = self
            .instrs
            .get(i + 1)
            .ok_or("the atomic is the function's last instruction")?;
        let probe = next.ip();
        let next_bytes = usize::try_from(probe - self.entry)
            .ok()
            .and_then(|off| self.code.get(off..off + next.len()))
            .unwrap_or_default();
        match bad_prefix(next_bytes) {
            Some(true) => return Err("the next instruction has a lock prefix"),
            Some(false) => return Err("the next instruction has a segment prefix uprobes refuse"),
            None => {}
        }
        if self.targets.contains(&probe) {
            return Err("a branch targets the next instruction");
        }
        let (base, displacement, value) = operands(&self.instrs[i], atomic, op, probe)?;
        Ok((probe, base, displacement, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: u64 = 0x40_1000;

    fn site_of(op: GoOp, vaddr: u64) -> GoLockSite {
        GoLockSite {
            op,
            vaddr,
            file_offset: vaddr - BASE,
            base: pt_reg::NONE,
            value: pt_reg::NONE,
            displacement: 0,
            function: String::new(),
        }
    }

    /// Guards the attach order of Go sites: a park's entry attached before its return
    /// leaves a wait open for every park that returns in between, which later parks on
    /// the same lock then extend. Every site that ends a wait or a hold (and hand-overs)
    /// must come before every site that begins one, each group in plan order.
    #[test]
    fn sites_that_end_a_wait_or_hold_are_attached_first() {
        let plan = [
            site_of(GoOp::SemacquireEnter, BASE + 0x10),
            site_of(GoOp::SemacquireReturn, BASE + 0x20),
            site_of(GoOp::MutexLockFast, BASE + 0x30),
            site_of(GoOp::SemreleaseEnter, BASE + 0x40),
            site_of(GoOp::LockSlowEnter, BASE + 0x50),
            site_of(GoOp::MutexUnlock, BASE + 0x60),
            site_of(GoOp::LockSlowReturn, BASE + 0x70),
        ];
        let ops: Vec<u32> = attach_order(&plan)
            .iter()
            .map(|&(offset, cookie)| {
                let site = plan.iter().find(|s| s.file_offset == offset).unwrap();
                assert_eq!(cookie, site.cookie());
                go_cookie::op(cookie)
            })
            .collect();
        let want = [
            GoOp::SemacquireReturn,
            GoOp::SemreleaseEnter,
            GoOp::MutexUnlock,
            GoOp::LockSlowReturn,
            GoOp::SemacquireEnter,
            GoOp::MutexLockFast,
            GoOp::LockSlowEnter,
        ];
        assert_eq!(ops, want.map(|op| op as u32));
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    /// Frames named `list` (innermost first), all on line 1 of `f.go`.
    fn frames(list: &[&str]) -> Vec<GoFrame> {
        list.iter()
            .enumerate()
            .map(|(i, name)| GoFrame {
                function: (*name).to_owned(),
                file: Some("f.go".to_owned()),
                line: Some(1),
                inlined: i + 1 < list.len(),
            })
            .collect()
    }

    /// Plans `code` as one function whose every pc has the frames `list`.
    fn plan(code: &[u8], list: &[&str]) -> (Vec<GoLockSite>, Vec<SkippedSite>) {
        let frames = frames(list);
        plan_function(code, BASE, "main.f", |_| frames.clone(), Vec::new)
    }

    #[test]
    fn classify_by_lock_frame_and_outer_frames() {
        use Atomic::{Cmpxchg, Xadd};
        let c = |atomic, list: &[&str]| classify(atomic, &names(list));
        assert_eq!(
            c(Cmpxchg, &["sync.(*Mutex).Lock", "main.f"]),
            Some(GoOp::MutexLockFast)
        );
        assert_eq!(
            c(Cmpxchg, &["sync.(*Mutex).TryLock", "main.f"]),
            Some(GoOp::MutexLockFast)
        );
        // Go 1.24+: sync.Mutex.Lock wraps internal/sync's, both inlined.
        assert_eq!(
            c(
                Cmpxchg,
                &[
                    "internal/sync.(*Mutex).Lock",
                    "sync.(*Mutex).Lock",
                    "main.f"
                ]
            ),
            Some(GoOp::MutexLockFast)
        );
        // Out-of-line copy: the lock function is the physical frame.
        assert_eq!(
            c(Cmpxchg, &["sync.(*Mutex).Lock"]),
            Some(GoOp::MutexLockFast)
        );
        assert_eq!(
            c(
                Cmpxchg,
                &[
                    "internal/sync.(*Mutex).Lock",
                    "sync.(*Mutex).Lock",
                    "sync.(*RWMutex).Lock"
                ]
            ),
            Some(GoOp::RwLockFast)
        );
        assert_eq!(
            c(
                Cmpxchg,
                &["sync.(*Mutex).TryLock", "sync.(*RWMutex).TryLock", "main.f"]
            ),
            Some(GoOp::RwLockFast)
        );
        assert_eq!(
            c(Xadd, &["sync.(*Mutex).Unlock", "main.f"]),
            Some(GoOp::MutexUnlock)
        );
        assert_eq!(
            c(
                Xadd,
                &[
                    "internal/sync.(*Mutex).Unlock",
                    "sync.(*Mutex).Unlock",
                    "sync.(*RWMutex).Unlock",
                    "main.f"
                ]
            ),
            Some(GoOp::RwUnlock)
        );
        // Go 1.20+: readerCount.Add is an inlined sync/atomic method.
        assert_eq!(
            c(
                Xadd,
                &[
                    "sync/atomic.(*Int32).Add",
                    "sync.(*RWMutex).RLock",
                    "main.f"
                ]
            ),
            Some(GoOp::RLockFast)
        );
        assert_eq!(
            c(Xadd, &["sync.(*RWMutex).RLock", "main.f"]),
            Some(GoOp::RLockFast)
        );
        assert_eq!(
            c(
                Xadd,
                &["sync/atomic.(*Int32).Add", "sync.(*RWMutex).RUnlock"]
            ),
            Some(GoOp::RUnlock)
        );
        // Not lock sites: the wrong instruction for the function, the slow path,
        // RWMutex.Lock's own readerCount add, no frames at all.
        assert_eq!(c(Xadd, &["sync.(*Mutex).Lock", "main.f"]), None);
        assert_eq!(c(Cmpxchg, &["sync.(*Mutex).Unlock", "main.f"]), None);
        assert_eq!(c(Cmpxchg, &["sync.(*RWMutex).RLock", "main.f"]), None);
        assert_eq!(c(Cmpxchg, &["sync.(*Mutex).lockSlow"]), None);
        assert_eq!(
            c(
                Xadd,
                &["sync/atomic.(*Int32).Add", "sync.(*RWMutex).Lock", "main.f"]
            ),
            None
        );
        assert_eq!(c(Xadd, &["sync/atomic.AddInt32"]), None);
        assert_eq!(c(Xadd, &[]), None);
    }

    #[test]
    fn cmpxchg_site_after_the_atomic() {
        let code = [
            0xb9, 0x01, 0x00, 0x00, 0x00, // mov ecx, 1
            0xf0, 0x0f, 0xb1, 0x4b, 0x18, // lock cmpxchg [rbx+0x18], ecx   @5
            0x0f, 0x94, 0xc1, // sete cl                                     @10
            0xc3, // ret
        ];
        let (sites, skipped) = plan(&code, &["sync.(*Mutex).Lock", "main.f"]);
        assert!(skipped.is_empty(), "{skipped:?}");
        assert_eq!(
            sites,
            vec![GoLockSite {
                op: GoOp::MutexLockFast,
                vaddr: BASE + 10,
                file_offset: 10,
                base: pt_reg::RBX,
                value: pt_reg::NONE,
                displacement: 0x18,
                function: "main.f".to_owned(),
            }]
        );
        assert_eq!(
            sites[0].cookie(),
            go_cookie::pack(GoOp::MutexLockFast, pt_reg::RBX, pt_reg::NONE, 0x18)
        );
    }

    #[test]
    fn cmpxchg_with_rax_base_is_fine() {
        // lock cmpxchg [rax], ecx; sete cl
        let code = [0xf0, 0x0f, 0xb1, 0x08, 0x0f, 0x94, 0xc1, 0xc3];
        let (sites, skipped) = plan(&code, &["sync.(*Mutex).Lock", "main.f"]);
        assert!(skipped.is_empty());
        assert_eq!((sites[0].base, sites[0].vaddr), (pt_reg::RAX, BASE + 4));
    }

    #[test]
    fn rlock_xadd_value_register_and_negative_displacement() {
        let code = [
            0xba, 0x01, 0x00, 0x00, 0x00, // mov edx, 1
            0xf0, 0x41, 0x0f, 0xc1, 0x50, 0xf0, // lock xadd [r8-0x10], edx   @5
            0xff, 0xc2, // inc edx                                          @11
            0xc3,
        ];
        let (sites, skipped) = plan(
            &code,
            &[
                "sync/atomic.(*Int32).Add",
                "sync.(*RWMutex).RLock",
                "main.f",
            ],
        );
        assert!(skipped.is_empty());
        assert_eq!(sites.len(), 1);
        let s = &sites[0];
        assert_eq!(s.op, GoOp::RLockFast);
        assert_eq!(s.vaddr, BASE + 11);
        assert_eq!(
            (s.base, s.displacement, s.value),
            (pt_reg::R8, -0x10, pt_reg::RDX)
        );
        assert_eq!(go_cookie::value(s.cookie()), pt_reg::RDX);
        assert_eq!(go_cookie::displacement(s.cookie()), -0x10);
    }

    #[test]
    fn unlock_xadd_on_r14_and_rsp() {
        // mov ebx, -1; lock xadd [r14+8], ebx; dec ebx; lock xadd [rsp+0x20], ebx; dec ebx
        let code = [
            0xbb, 0xff, 0xff, 0xff, 0xff, // @0
            0xf0, 0x41, 0x0f, 0xc1, 0x5e, 0x08, // @5
            0xff, 0xcb, // @11
            0xf0, 0x0f, 0xc1, 0x5c, 0x24, 0x20, // @13
            0xff, 0xcb, // @19
            0xc3,
        ];
        let (sites, skipped) = plan(&code, &["sync.(*Mutex).Unlock", "main.f"]);
        assert!(skipped.is_empty());
        let got: Vec<_> = sites
            .iter()
            .map(|s| (s.op, s.vaddr - BASE, s.base, s.displacement, s.value))
            .collect();
        assert_eq!(
            got,
            vec![
                (GoOp::MutexUnlock, 11, pt_reg::R14, 8, pt_reg::NONE),
                (GoOp::MutexUnlock, 19, pt_reg::RSP, 0x20, pt_reg::NONE),
            ]
        );
    }

    #[test]
    fn rip_relative_displacement_is_from_the_probe() {
        // lock cmpxchg [rip+0x1000], ecx  (7 bytes + 1 lock = 8) @0; target = 8 + 0x1000
        let code = [
            0xf0, 0x0f, 0xb1, 0x0d, 0x00, 0x10, 0x00, 0x00, // @0..8
            0x0f, 0x94, 0xc1, // sete cl @8
            0xc3,
        ];
        let (sites, _) = plan(&code, &["sync.(*Mutex).Lock", "main.f"]);
        let s = &sites[0];
        assert_eq!((s.base, s.vaddr), (pt_reg::RIP, BASE + 8));
        // addr = probe + displacement = absolute target.
        assert_eq!(
            s.vaddr.wrapping_add_signed(i64::from(s.displacement)),
            BASE + 8 + 0x1000
        );
        assert_eq!(s.displacement, 0x1000);
    }

    #[test]
    fn skips_with_reasons() {
        let reasons = |code: &[u8], frames: &[&str]| -> Vec<&'static str> {
            let (sites, skipped) = plan(code, frames);
            assert!(sites.is_empty(), "{sites:?}");
            skipped.iter().map(|s| s.reason).collect()
        };
        let lock = ["sync.(*Mutex).Lock", "main.f"];
        let unlock = ["sync.(*Mutex).Unlock", "main.f"];
        // Indexed operand: lock cmpxchg [rbx+rcx*4], edx; sete al
        assert_eq!(
            reasons(&[0xf0, 0x0f, 0xb1, 0x14, 0x8b, 0x0f, 0x94, 0xc0], &lock),
            ["the memory operand has an index register"]
        );
        // FS override: fs lock cmpxchg [rbx], edx; sete al
        assert_eq!(
            reasons(&[0x64, 0xf0, 0x0f, 0xb1, 0x13, 0x0f, 0x94, 0xc0], &lock),
            ["the memory operand has a segment override"]
        );
        // xadd overwrites its own base: lock xadd [rbx], ebx; nop
        assert_eq!(
            reasons(&[0xf0, 0x0f, 0xc1, 0x1b, 0x90], &unlock),
            ["the xadd overwrites its base register"]
        );
        // Last instruction of the function.
        assert_eq!(
            reasons(&[0xf0, 0x0f, 0xc1, 0x0b], &unlock),
            ["the atomic is the function's last instruction"]
        );
        // Followed by another locked instruction: lock xadd [rbx], ecx; lock xadd [rbx], ecx
        let twice = [0xf0, 0x0f, 0xc1, 0x0b, 0xf0, 0x0f, 0xc1, 0x0b, 0x90];
        let (sites, skipped) = plan(&twice, &unlock);
        assert_eq!(skipped[0].reason, "the next instruction has a lock prefix");
        assert_eq!(skipped[0].vaddr, BASE);
        assert_eq!(sites.len(), 1);
        assert_eq!(sites[0].vaddr, BASE + 8);
        // Followed by a DS-prefixed instruction: ds nop
        assert_eq!(
            reasons(&[0xf0, 0x0f, 0xc1, 0x0b, 0x3e, 0x90], &unlock),
            ["the next instruction has a segment prefix uprobes refuse"]
        );
        // A jump lands on the next instruction: jmp +4 (over the atomic); lock xadd; nop
        assert_eq!(
            reasons(&[0xeb, 0x04, 0xf0, 0x0f, 0xc1, 0x0b, 0x90, 0xc3], &unlock),
            ["a branch targets the next instruction"]
        );
        // A conditional jump back to it from later in the function.
        assert_eq!(
            reasons(&[0xf0, 0x0f, 0xc1, 0x0b, 0x90, 0x75, 0xfd, 0xc3], &unlock),
            ["a branch targets the next instruction"]
        );
        // 32-bit addressing: lock xadd [ebx], ecx (67 prefix)
        assert_eq!(
            reasons(&[0x67, 0xf0, 0x0f, 0xc1, 0x0b, 0x90], &unlock),
            ["the memory operand uses 32-bit addressing"]
        );
        // Absolute address, no base: lock xadd [0x1000], ecx (SIB without base/index)
        assert_eq!(
            reasons(
                &[0xf0, 0x0f, 0xc1, 0x0c, 0x25, 0x00, 0x10, 0x00, 0x00, 0x90],
                &unlock
            ),
            ["the memory operand has no base register"]
        );
        // Undecodable bytes after the atomic.
        let (sites, skipped) = plan(&[0xf0, 0x0f, 0xc1, 0x0b, 0x90, 0x06], &unlock);
        assert!(sites.is_empty());
        let got: Vec<_> = skipped.iter().map(|s| (s.vaddr - BASE, s.reason)).collect();
        assert_eq!(
            got,
            vec![
                (0, "the function did not decode to its end"),
                (
                    5,
                    "undecodable bytes: the rest of the function was not searched"
                ),
            ]
        );
    }

    #[test]
    fn ignores_non_lock_atomics_and_unlocked_forms() {
        let unlock = ["sync.(*Mutex).Unlock", "main.f"];
        // Plain xadd (no lock prefix), lock add, xchg: no site, nothing skipped.
        let code = [
            0x0f, 0xc1, 0x0b, // xadd [rbx], ecx
            0xf0, 0x01, 0x0b, // lock add [rbx], ecx
            0x87, 0x0b, // xchg [rbx], ecx
            0xc3,
        ];
        assert_eq!(plan(&code, &unlock), (vec![], vec![]));
        // A lock atomic in a function that is no lock function.
        let code = [0xf0, 0x0f, 0xc1, 0x0b, 0x90];
        assert_eq!(plan(&code, &["main.f"]), (vec![], vec![]));
        // cmpxchg16b is not cmpxchg.
        let code = [0xf0, 0x48, 0x0f, 0xc7, 0x0b, 0x90];
        assert_eq!(
            plan(&code, &["sync.(*Mutex).Lock", "main.f"]),
            (vec![], vec![])
        );
    }

    #[test]
    fn frames_are_asked_at_the_atomic() {
        // Two atomics with different inline frames: only the Unlock one is a site.
        let code = [
            0xf0, 0x0f, 0xc1, 0x0b, 0x90, // lock xadd [rbx], ecx @0 (RWMutex.Lock's add)
            0xf0, 0x0f, 0xc1, 0x0e, 0x90, // lock xadd [rsi], ecx @5 (Unlock)
            0xc3,
        ];
        let (sites, skipped) = plan_function(
            &code,
            BASE,
            "main.f",
            |pc| {
                if pc == BASE + 5 {
                    frames(&["sync.(*Mutex).Unlock", "main.f"])
                } else {
                    frames(&["sync/atomic.(*Int32).Add", "sync.(*RWMutex).Lock", "main.f"])
                }
            },
            Vec::new,
        );
        assert!(skipped.is_empty());
        assert_eq!(sites.len(), 1);
        assert_eq!((sites[0].vaddr, sites[0].base), (BASE + 9, pt_reg::RSI));
    }

    #[test]
    fn atomics_at_an_inlined_call_site() {
        // Go 1.19 gives the CAS of an inlined Mutex.Lock and the xadd of an inlined
        // RLock the caller's position (line 41 / 73 here) and no inline frame.
        let code = [
            0xf0, 0x0f, 0xb1, 0x51, 0x18, // lock cmpxchg [rcx+0x18], edx   @0
            0x0f, 0x94, 0xc2, // sete dl                                     @5
            0xf0, 0x0f, 0xc1, 0x50, 0x10, // lock xadd [rax+0x10], edx       @8
            0xff, 0xc2, // inc edx                                           @13
            0xf0, 0x0f, 0xc1, 0x5e, 0x10, // lock xadd [rsi+0x10], ebx       @15
            0x90, // nop                                                     @20
            0xc3,
        ];
        let at_line = |line| {
            vec![GoFrame {
                function: "main.f".to_owned(),
                file: Some("main.go".to_owned()),
                line: Some(line),
                inlined: false,
            }]
        };
        let pc_frames = |pc: u64| match pc - BASE {
            0..8 => at_line(41),
            8..15 => at_line(73),
            _ => at_line(80),
        };
        let calls = || {
            vec![
                ("sync.(*Mutex).Lock".to_owned(), at_line(41)),
                ("sync.(*RWMutex).RLock".to_owned(), at_line(73)),
                // Same line as the third atomic, but an xadd is not TryLock's.
                ("sync.(*Mutex).TryLock".to_owned(), at_line(80)),
            ]
        };
        let (sites, skipped) = plan_function(&code, BASE, "main.f", pc_frames, calls);
        assert!(skipped.is_empty(), "{skipped:?}");
        let got: Vec<_> = sites
            .iter()
            .map(|s| (s.op, s.vaddr - BASE, s.base, s.value))
            .collect();
        assert_eq!(
            got,
            vec![
                (GoOp::MutexLockFast, 5, pt_reg::RCX, pt_reg::NONE),
                (GoOp::RLockFast, 13, pt_reg::RAX, pt_reg::RDX),
            ]
        );

        // Calls at another call site (different caller frames) do not match.
        let elsewhere = || {
            let mut caller = frames(&["sync.(*RWMutex).Lock"]);
            caller[0].inlined = true;
            caller.extend(at_line(41));
            vec![("sync.(*Mutex).Lock".to_owned(), caller)]
        };
        let (sites, skipped) = plan_function(&code[..8], BASE, "main.f", pc_frames, elsewhere);
        assert!(sites.is_empty() && skipped.is_empty());
        let twice = || {
            vec![
                ("sync.(*Mutex).Lock".to_owned(), at_line(41)),
                ("sync.(*Mutex).TryLock".to_owned(), at_line(41)),
            ]
        };
        let (sites, skipped) = plan_function(&code[..8], BASE, "main.f", pc_frames, twice);
        assert_eq!(sites.len(), 1, "same meaning: one site");
        assert!(skipped.is_empty());
        // Without the inlined call, the same atomic is no site at all.
        let (sites, skipped) = plan_function(&code, BASE, "main.f", pc_frames, Vec::new);
        assert!(sites.is_empty() && skipped.is_empty());
    }

    #[test]
    fn call_site_matching() {
        let here = frames(&["sync.(*RWMutex).Lock"]);
        let calls = vec![
            ("sync.(*Mutex).Lock".to_owned(), here.clone()),
            ("sync.(*RWMutex).RLock".to_owned(), here.clone()),
        ];
        // A cmpxchg: only Mutex.Lock classifies (RLock wants an xadd).
        assert_eq!(
            call_site_op(Atomic::Cmpxchg, &here, &calls),
            Ok(Some(GoOp::RwLockFast))
        );
        let calls = vec![
            ("sync.(*Mutex).Lock".to_owned(), here.clone()),
            ("sync.(*Mutex).TryLock".to_owned(), here.clone()),
        ];
        assert_eq!(
            call_site_op(Atomic::Cmpxchg, &here, &calls),
            Ok(Some(GoOp::RwLockFast))
        );
        let main = frames(&["main.f"]);
        let calls = vec![
            ("sync.(*Mutex).Lock".to_owned(), main.clone()),
            ("sync.(*Mutex).Lock".to_owned(), here.clone()),
        ];
        assert_eq!(
            call_site_op(Atomic::Cmpxchg, &main, &calls),
            Ok(Some(GoOp::MutexLockFast))
        );
        assert_eq!(call_site_op(Atomic::Xadd, &main, &calls), Ok(None));
    }

    #[test]
    fn prefix_scan() {
        assert_eq!(bad_prefix(&[0x90]), None);
        assert_eq!(bad_prefix(&[0x66, 0x90]), None);
        assert_eq!(bad_prefix(&[0x64, 0x48, 0x8b, 0x00]), None);
        assert_eq!(bad_prefix(&[0x2e, 0x74, 0x00]), Some(false));
        assert_eq!(bad_prefix(&[0x66, 0xf0, 0x0f, 0xc1, 0x0b]), Some(true));
        // Bytes after the opcode are not prefixes.
        assert_eq!(bad_prefix(&[0xb0, 0xf0]), None);
        assert_eq!(bad_prefix(&[]), None);
    }

    #[test]
    fn reg_slots_cover_every_gpr() {
        let gprs = [
            Register::RAX,
            Register::RCX,
            Register::RDX,
            Register::RBX,
            Register::RSP,
            Register::RBP,
            Register::RSI,
            Register::RDI,
            Register::R8,
            Register::R9,
            Register::R10,
            Register::R11,
            Register::R12,
            Register::R13,
            Register::R14,
            Register::R15,
        ];
        let mut slots: Vec<u8> = gprs.iter().filter_map(|&r| reg_slot(r)).collect();
        assert_eq!(slots.len(), 16);
        slots.sort_unstable();
        slots.dedup();
        assert_eq!(slots.len(), 16);
        assert_eq!(reg_slot(Register::EAX), None);
        assert_eq!(reg_slot(Register::RIP), None);
    }
}
