//! Names of Go locks that live inside heap objects: `main.Store.mu` for the `mu` field of
//! a `*main.Store`, from the binary's DWARF. A global lock is named from its address
//! ([`DwarfNames::field_path`]); a heap lock's address says nothing, but the code
//! that locks it does: `s.mu.Lock()` compiles to `lock cmpxchg [reg+0x18]` (inlined) or
//! `call sync.(*RWMutex).Lock` with `AX = reg+0x18`, where `reg` holds `s`.
//!
//! For each place the address of a lock is in a register (the base register of a planned
//! atomic site, `AX` at a call of a lock method) the register is traced backwards through
//! the function's machine code: `mov reg, other` continues with `other`, `lea reg,
//! [other+d]` adds `d` to the offset, anything else writing it ends the trace. At each
//! instruction on the way, DWARF location lists say which variables sit in that
//! register there; a variable that points to a struct with a lock exactly at the offset
//! names the lock by the struct's type and field path. The trace stops at a branch target
//! (another path could bring another value) and at calls; nothing is guessed: a lock with
//! no such evidence keeps its address.
//!
//! The result maps a code address to a name: the probe address of an atomic site, or the
//! return address of a call to a lock method (what a stack or an entry site's `caller`
//! shows). The tracer looks up the sites an acquisition passes through.
use std::sync::Arc;

use iced_x86::Register;
use object::Object as _;
use rustc_hash::{FxHashMap, FxHashSet};
use tracer_common::GoOp;

use super::{
    GoSitePlan, Segment, atomic_sites::reg_slot, elf_segments, is_lock_internal, map_range,
};
use crate::{
    go::{
        lock_model::RW_READER_COUNT_OFFSET,
        sym::{GoFunc, GoTable},
    },
    lock_names::{
        DwarfNames,
        code::{CallSite, Decoded, GPRS, calls_to, dwarf_register},
    },
};

/// Lock methods whose receiver (in `AX` at the call, Go's register ABI) is the lock.
const LOCK_METHODS: [&str; 10] = [
    "sync.(*Mutex).Lock",
    "sync.(*Mutex).TryLock",
    "sync.(*Mutex).lockSlow",
    "internal/sync.(*Mutex).Lock",
    "internal/sync.(*Mutex).TryLock",
    "internal/sync.(*Mutex).lockSlow",
    "sync.(*RWMutex).Lock",
    "sync.(*RWMutex).RLock",
    "sync.(*RWMutex).TryLock",
    "sync.(*RWMutex).TryRLock",
];

/// Lock names by code address (file virtual addresses of the executable).
#[derive(Debug, Clone, Default)]
pub struct GoLockOwners {
    by_pc: FxHashMap<u64, Arc<str>>,
}

impl GoLockOwners {
    /// The name of the lock whose address is in play at `vaddr`: a planned site's probe
    /// address, or the return address of a call to a lock method.
    #[must_use]
    pub fn name_at(&self, vaddr: u64) -> Option<&Arc<str>> {
        self.by_pc.get(&vaddr)
    }

    /// Every (code address, lock name), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &str)> + '_ {
        self.by_pc.iter().map(|(&pc, name)| (pc, &**name))
    }

    /// How many code addresses name a lock.
    #[must_use]
    pub fn len(&self) -> usize {
        self.by_pc.len()
    }

    /// Whether no code address names a lock.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.by_pc.is_empty()
    }
}

/// Where a trace starts: before the instruction at `at`, `reg + offset` is the lock.
#[derive(Debug, Clone, Copy)]
struct Start {
    at: u64,
    reg: Register,
    offset: i64,
    /// For a call: the call to a lock method it must be (checked once decoded).
    calls: Option<CallSite>,
    /// What the name is filed under.
    key: u64,
}

/// Reads the DWARF of `elf` (a Go binary with pclntab `table` and site plan `plan`): the
/// names of globals ([`DwarfNames`]) and of locks in heap objects at each site and
/// lock-method call ([`GoLockOwners`]). `None` and no owners when the binary has no DWARF.
#[must_use]
pub fn go_lock_names(
    elf: &[u8],
    table: &GoTable,
    plan: &GoSitePlan,
) -> (Option<DwarfNames>, GoLockOwners) {
    let Ok(file) = object::File::parse(elf) else {
        return (None, GoLockOwners::default());
    };
    if file.section_by_name(".debug_info").is_none() {
        return (None, GoLockOwners::default());
    }
    let Ok(segments) = elf_segments(elf) else {
        return (DwarfNames::go(elf), GoLockOwners::default());
    };
    // Starts by function (entry address), each function with its pclntab entry; the
    // lock implementation's own functions are skipped (their receiver is the lock).
    let mut starts: FxHashMap<u64, (GoFunc, Vec<Start>)> = FxHashMap::default();
    let mut add = |start: Start| {
        let Some(func) = table.func_for_pc(start.at) else {
            return;
        };
        if is_lock_internal(&func.name) {
            return;
        }
        starts
            .entry(func.entry)
            .or_insert_with(|| (func, Vec::new()))
            .1
            .push(start);
    };
    for site in &plan.sites {
        let Some(reg) = slot_register(site.base) else {
            continue;
        };
        let lock_offset = match site.op {
            GoOp::RLockFast | GoOp::RUnlock => i64::try_from(RW_READER_COUNT_OFFSET).ok(),
            _ => Some(0),
        };
        let Some(offset) = lock_offset.map(|o| i64::from(site.displacement) - o) else {
            continue;
        };
        add(Start {
            at: site.vaddr,
            reg,
            offset,
            calls: None,
            key: site.vaddr,
        });
    }
    let methods: FxHashSet<u64> = table
        .funcs_named(&LOCK_METHODS)
        .iter()
        .map(|f| f.entry)
        .collect();
    for call in calls_to(&file, &methods, false) {
        add(Start {
            at: call.at,
            reg: Register::RAX,
            offset: 0,
            calls: Some(call),
            key: call.at + call.len,
        });
    }
    let functions = starts.keys().copied().collect();
    let Some(dwarf) = DwarfNames::go_with_functions(elf, &functions) else {
        return (None, GoLockOwners::default());
    };
    let mut owners = GoLockOwners::default();
    for (func, starts) in starts.values() {
        name_in_function(elf, &segments, &dwarf, func, starts, &mut owners);
    }
    (Some(dwarf), owners)
}

/// Traces every start in `func` and files the names found.
fn name_in_function(
    elf: &[u8],
    segments: &[Segment],
    dwarf: &DwarfNames,
    func: &GoFunc,
    starts: &[Start],
    owners: &mut GoLockOwners,
) {
    let Some((_, code)) = map_range(elf, segments, func.entry, func.end) else {
        return;
    };
    let code = Decoded::new(code, func.entry);
    for start in starts {
        let Some(i) = code.index_of(start.at) else {
            continue;
        };
        if start.calls.is_some_and(|call| !call.is(&code.instrs[i])) {
            continue;
        }
        let name = code
            .trace_back(i, start.reg, start.offset)
            .into_iter()
            .find_map(|(pc, reg, offset)| {
                dwarf.lock_member(func.entry, pc, dwarf_register(reg)?, offset)
            });
        if let Some(name) = name {
            owners.by_pc.insert(start.key, Arc::from(name));
        }
    }
}

/// The register in `pt_regs` slot `slot`, `None` for [`pt_reg::NONE`], [`pt_reg::RIP`]
/// and anything else that is not a general register.
fn slot_register(slot: u8) -> Option<Register> {
    GPRS.into_iter().find(|&r| reg_slot(r) == Some(slot))
}

#[cfg(test)]
mod tests {
    use tracer_common::pt_reg;

    use super::*;

    #[test]
    fn slots_name_general_registers() {
        assert_eq!(slot_register(pt_reg::RDX), Some(Register::RDX));
        assert_eq!(slot_register(pt_reg::R14), Some(Register::R14));
        assert_eq!(slot_register(pt_reg::NONE), None);
        assert_eq!(slot_register(pt_reg::RIP), None);
    }
}
