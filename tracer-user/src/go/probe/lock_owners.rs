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

/// Beyond this many bytes into a receiver's struct a traced offset is taken for anything
/// but a field (a lock in a struct of a megabyte is no struct a method receives).
const MAX_RECEIVER_OFFSET: u64 = 1 << 20;

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
    let has_dwarf = file.section_by_name(".debug_info").is_some();
    let Ok(segments) = elf_segments(elf) else {
        let dwarf = if has_dwarf { DwarfNames::go(elf) } else { None };
        return (dwarf, GoLockOwners::default());
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
    // Without DWARF (a stripped build), only the receivers of methods name locks.
    let dwarf = if has_dwarf {
        DwarfNames::go_with_functions(elf, &functions)
    } else {
        None
    };
    let mut owners = GoLockOwners::default();
    for (func, starts) in starts.values() {
        name_in_function(elf, &segments, dwarf.as_ref(), func, starts, &mut owners);
    }
    (dwarf, owners)
}

/// Traces every start in `func` and files the names found.
fn name_in_function(
    elf: &[u8],
    segments: &[Segment],
    dwarf: Option<&DwarfNames>,
    func: &GoFunc,
    starts: &[Start],
    owners: &mut GoLockOwners,
) {
    let receiver = pointer_receiver_type(&func.name);
    if dwarf.is_none() && receiver.is_none() {
        return;
    }
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
        let points = code.trace_back(i, start.reg, start.offset);
        let from_dwarf = dwarf.and_then(|dwarf| {
            points.iter().find_map(|&(pc, reg, offset)| {
                dwarf.lock_member(func.entry, pc, dwarf_register(reg)?, offset)
            })
        });
        let name = from_dwarf.or_else(|| {
            let receiver = receiver?;
            match points.last() {
                Some(&(pc, Register::RAX, offset)) if pc == func.entry => {
                    receiver_member(receiver, offset)
                }
                _ => None,
            }
        });
        if let Some(name) = name {
            owners.by_pc.insert(start.key, Arc::from(name));
        }
    }
}

/// The struct type `pkg.T` of a method with a pointer receiver, `pkg.(*T).M`, whose
/// receiver is in `AX` at its entry (the first argument of Go's register ABI), as the
/// pclntab names it (stripped builds keep it). `None` for anything else: plain functions
/// (their arguments' types are unknown without DWARF), closures and method values
/// (`….func1`, `…-fm`: `AX` holds their context), and generic types (`AX` holds the
/// dictionary).
fn pointer_receiver_type(name: &str) -> Option<(&str, &str)> {
    let (package, rest) = name.rsplit_once(".(*")?;
    let (type_name, method) = rest.split_once(").")?;
    let identifier = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || c == '_');
    (!package.is_empty() && identifier(type_name) && identifier(method))
        .then_some((package, type_name))
}

/// The name of the lock `offset` bytes into the struct a method's receiver points to,
/// when no DWARF names the field: `main.Store+0x18`, from (`main`, `Store`) (see
/// [`pointer_receiver_type`]), as a symbol and an offset name a global's lock.
fn receiver_member((package, type_name): (&str, &str), offset: i64) -> Option<String> {
    let offset = u64::try_from(offset)
        .ok()
        .filter(|&o| o < MAX_RECEIVER_OFFSET)?;
    Some(format!("{package}.{type_name}+{offset:#x}"))
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
    fn only_plain_methods_on_pointers_name_their_receivers_type() {
        let cases = [
            ("main.(*Store).Put", Some("main.Store+0x18")),
            (
                "github.com/prometheus/prometheus/tsdb.(*Head).gc",
                Some("github.com/prometheus/prometheus/tsdb.Head+0x18"),
            ),
            ("sync.(*Map).Load", Some("sync.Map+0x18")),
            ("main.update", None),
            ("main.Store.Get", None),
            ("main.(*Store).Put.func1", None),
            ("main.(*Store).Put-fm", None),
            ("main.(*Cache[go.shape.int]).Get", None),
            ("main.(*Cache[...]).Get", None),
            (".(*T).M", None),
            ("main.(*).M", None),
        ];
        for (function, want) in cases {
            let got = pointer_receiver_type(function).and_then(|r| receiver_member(r, 0x18));
            assert_eq!(got.as_deref(), want, "{function}");
        }
        assert_eq!(receiver_member(("main", "Store"), -8), None);
        assert_eq!(receiver_member(("main", "Store"), 1 << 20), None);
        assert_eq!(
            receiver_member(("main", "Store"), 0).as_deref(),
            Some("main.Store+0x0")
        );
    }

    #[test]
    fn slots_name_general_registers() {
        assert_eq!(slot_register(pt_reg::RDX), Some(Register::RDX));
        assert_eq!(slot_register(pt_reg::R14), Some(Register::R14));
        assert_eq!(slot_register(pt_reg::NONE), None);
        assert_eq!(slot_register(pt_reg::RIP), None);
    }
}
