//! Where `runtime.allgs` (the runtime's list of every `g`, a `[]*g`) and `runtime.allglen`
//! (its length, stored atomically after each append) are, in the file's addresses.
//!
//! From `.symtab` when the binary has one. A stripped binary has none, but its pclntab
//! still names `runtime.allgadd`, whose body is `allgs = append(allgs, gp)` followed by
//! atomic stores to `allgptr` and `allglen`: it reads and writes the slice header's three
//! words through RIP-relative operands, so the slice is the address `A` whose `A+8` (len)
//! and `A+16` (cap) it references too. `allglen` is the target of the last atomic
//! exchange (`xchg`, Go's `atomic.Storeuintptr` on amd64) outside the slice; `allgptr`,
//! the other one, comes before it. Checked on Go 1.19 and 1.25 binaries by
//! `tests/integration/go_goroutine_layout.rs`.
use iced_x86::{Decoder, DecoderOptions, Instruction, Mnemonic, OpKind, Register};
use object::{Object as _, ObjectSegment as _, ObjectSymbol as _};

use super::GoroutineScanError;
use crate::go::sym::GoTable;

/// How [`AllgsLocation`] was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AllgsSource {
    /// The ELF symbol table.
    Symtab,
    /// The RIP-relative operands of `runtime.allgadd` (stripped binaries).
    Disassembly,
}

/// The addresses (as the file gives them: add the load bias for a position-independent
/// binary) of `runtime.allgs` and, when found, `runtime.allglen`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AllgsLocation {
    /// The slice header `{ptr, len, cap}`.
    pub allgs: u64,
    /// `runtime.allglen` (a cross-check of the slice's length).
    pub allglen: Option<u64>,
    /// How they were found.
    pub source: AllgsSource,
}

/// One RIP-relative data reference of a function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DataRef {
    /// Address of the instruction.
    pub ip: u64,
    /// The data address it reads, writes or takes.
    pub target: u64,
    /// Whether the address is the destination of an atomic exchange: the instruction is
    /// an `xchg` on it, or a `lea` of it into a register the next instruction `xchg`s
    /// through.
    pub exchanged: bool,
}

/// Locates `runtime.allgs` in a Go ELF file: by symbol when there is a symbol table, else
/// from the code of `runtime.allgadd` (found through the pclntab `table`).
///
/// # Errors
/// [`GoroutineScanError::Object`] for a file that does not parse,
/// [`GoroutineScanError::NoAllgadd`] / [`GoroutineScanError::AllgaddNotMapped`] when the
/// function or its code is missing, and the errors of [`select_allgs`].
pub fn locate_allgs(elf: &[u8], table: &GoTable) -> Result<AllgsLocation, GoroutineScanError> {
    let file = object::File::parse(elf).map_err(GoroutineScanError::Object)?;
    if let Some(allgs) = file.symbol_by_name("runtime.allgs") {
        return Ok(AllgsLocation {
            allgs: allgs.address(),
            allglen: file.symbol_by_name("runtime.allglen").map(|s| s.address()),
            source: AllgsSource::Symtab,
        });
    }
    let func = table
        .find_func("runtime.allgadd")
        .ok_or(GoroutineScanError::NoAllgadd)?;
    let not_mapped = GoroutineScanError::AllgaddNotMapped {
        entry: func.entry,
        end: func.end,
    };
    let size = func.end.checked_sub(func.entry).ok_or(not_mapped)?;
    let code = file
        .segments()
        .find_map(|seg| seg.data_range(func.entry, size).ok().flatten())
        .ok_or(GoroutineScanError::AllgaddNotMapped {
            entry: func.entry,
            end: func.end,
        })?;
    let (allgs, allglen) = select_allgs(&rip_relative_refs(code, func.entry))?;
    Ok(AllgsLocation {
        allgs,
        allglen,
        source: AllgsSource::Disassembly,
    })
}

/// The RIP-relative data references of the function whose bytes are `code`, loaded at
/// `entry`, in address order (a linear sweep that stops at the first undecodable byte).
#[must_use]
pub fn rip_relative_refs(code: &[u8], entry: u64) -> Vec<DataRef> {
    let mut decoder = Decoder::with_ip(64, code, entry, DecoderOptions::NONE);
    let mut refs: Vec<DataRef> = Vec::new();
    // The register the last instruction loaded a RIP-relative address into with `lea`.
    let mut lea_into: Option<(Register, usize)> = None;
    let mut instr = Instruction::default();
    while decoder.can_decode() {
        decoder.decode_out(&mut instr);
        if instr.is_invalid() {
            break;
        }
        let is_xchg = instr.mnemonic() == Mnemonic::Xchg;
        if is_xchg
            && let Some((reg, at)) = lea_into
            && (0..instr.op_count()).any(|i| instr.op_kind(i) == OpKind::Memory)
            && instr.memory_base() == reg
            && instr.memory_index() == Register::None
            && instr.memory_displacement64() == 0
        {
            refs[at].exchanged = true;
        }
        lea_into = None;
        if instr.is_ip_rel_memory_operand() {
            let target = instr.ip_rel_memory_address();
            if instr.mnemonic() == Mnemonic::Lea {
                lea_into = Some((instr.op0_register().full_register(), refs.len()));
            }
            refs.push(DataRef {
                ip: instr.ip(),
                target,
                exchanged: is_xchg,
            });
        }
    }
    refs
}

/// Picks `allgs` (and `allglen`, when it shows) among `runtime.allgadd`'s data
/// references: `allgs` is the one address `A` with `A+8` and `A+16` referenced too;
/// `allglen` the last exchanged address outside `A..A+24`.
///
/// # Errors
/// [`GoroutineScanError::NoAllgsCandidate`] when no address qualifies,
/// [`GoroutineScanError::AmbiguousAllgs`] when several do.
pub fn select_allgs(refs: &[DataRef]) -> Result<(u64, Option<u64>), GoroutineScanError> {
    let targets: std::collections::BTreeSet<u64> = refs.iter().map(|r| r.target).collect();
    let candidates: Vec<u64> = targets
        .iter()
        .copied()
        .filter(|&a| {
            a.checked_add(8).is_some_and(|a8| targets.contains(&a8))
                && a.checked_add(16).is_some_and(|a16| targets.contains(&a16))
        })
        .collect();
    let allgs = match candidates.as_slice() {
        [] => return Err(GoroutineScanError::NoAllgsCandidate),
        [one] => *one,
        _ => return Err(GoroutineScanError::AmbiguousAllgs { candidates }),
    };
    let allglen = refs
        .iter()
        .rev()
        .find(|r| r.exchanged && !(allgs..allgs + 24).contains(&r.target))
        .map(|r| r.target);
    Ok((allgs, allglen))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENTRY: u64 = 0x40_0000;

    /// Assembles a function: each instruction with RIP-relative operands gets its
    /// displacement computed so it refers to the absolute address given.
    struct Code(Vec<u8>);

    impl Code {
        fn new() -> Self {
            Self(Vec::new())
        }

        /// `opcode` bytes then a 32-bit displacement to `target`, nothing after.
        fn rip(mut self, opcode: &[u8], target: u64) -> Self {
            let end = ENTRY + (self.0.len() + opcode.len() + 4) as u64;
            let disp = i32::try_from(target.cast_signed() - end.cast_signed()).unwrap();
            self.0.extend_from_slice(opcode);
            self.0.extend_from_slice(&disp.to_le_bytes());
            self
        }

        fn raw(mut self, bytes: &[u8]) -> Self {
            self.0.extend_from_slice(bytes);
            self
        }

        /// `mov rax, [rip+…]`.
        fn load(self, target: u64) -> Self {
            self.rip(&[0x48, 0x8b, 0x05], target)
        }

        /// `mov [rip+…], rcx`.
        fn store(self, target: u64) -> Self {
            self.rip(&[0x48, 0x89, 0x0d], target)
        }

        /// `lea rdx, [rip+…]`.
        fn lea_rdx(self, target: u64) -> Self {
            self.rip(&[0x48, 0x8d, 0x15], target)
        }

        /// `xchg [rdx], rcx`.
        fn xchg_rdx(self) -> Self {
            self.raw(&[0x48, 0x87, 0x0a])
        }
    }

    /// Guards the shape of `allgadd` both toolchains emit: the slice's three words read
    /// and written, `allgptr` compared then exchanged, `allglen` exchanged last, the lock
    /// taken by address. allgs must be the slice, allglen the last exchange.
    #[test]
    fn allgs_is_the_address_with_len_and_cap_referenced() {
        let (lock, allgs, allgptr, allglen) = (0x56_4350, 0x53_56c0, 0x53_5230, 0x56_4348);
        let code = Code::new()
            .lea_rdx(lock)
            .load(allgs + 8)
            .load(allgs)
            .load(allgs + 16)
            .store(allgs + 16)
            .store(allgs)
            .store(allgs + 8)
            .load(allgptr)
            .lea_rdx(allgptr)
            .xchg_rdx()
            .load(allgs + 8)
            .lea_rdx(allglen)
            .xchg_rdx()
            .lea_rdx(lock)
            .raw(&[0xc3]);
        let refs = rip_relative_refs(&code.0, ENTRY);
        assert_eq!(refs.len(), 12);
        assert_eq!(
            refs.iter()
                .filter(|r| r.exchanged)
                .map(|r| r.target)
                .collect::<Vec<_>>(),
            [allgptr, allglen]
        );
        assert_eq!(select_allgs(&refs).unwrap(), (allgs, Some(allglen)));
    }

    /// Guards against taking a `lea` followed by something else than an exchange through
    /// the same register as an atomic store, and against picking an address that lacks
    /// its cap word.
    #[test]
    fn no_candidate_and_ambiguity_are_errors() {
        let lone = Code::new()
            .load(0x1000)
            .load(0x1008)
            .lea_rdx(0x2000)
            .raw(&[0x48, 0x87, 0x08]) // xchg [rax], rcx: not through rdx
            .raw(&[0xc3]);
        let refs = rip_relative_refs(&lone.0, ENTRY);
        assert!(refs.iter().all(|r| !r.exchanged));
        assert!(matches!(
            select_allgs(&refs),
            Err(GoroutineScanError::NoAllgsCandidate)
        ));
        let two = Code::new()
            .load(0x1000)
            .load(0x1008)
            .load(0x1010)
            .load(0x1018);
        let err = select_allgs(&rip_relative_refs(&two.0, ENTRY)).unwrap_err();
        assert!(
            matches!(&err, GoroutineScanError::AmbiguousAllgs { candidates } if candidates == &[0x1000, 0x1008])
        );
        assert!(err.to_string().contains("0x1008"), "{err}");
    }
}
