//! The call frame information of one object file (`.eh_frame`, found through
//! `.eh_frame_hdr`'s binary search table when there is one), read with gimli and reduced
//! to the [`FrameRule`]s a walk over a stack copy can follow. Pure: the caller supplies the
//! file's bytes (mapped, see `FileBytes`: only the pages of the entries looked up become
//! resident).
//!
//! `.debug_frame` is not read: every object built by gcc or clang for Linux has
//! `.eh_frame` (C included, for unwinding through it), and a stripped library has lost
//! `.debug_frame` anyway.
use std::ops::Range;

use gimli::{
    BaseAddresses, CfaRule, EhFrame, EhFrameHdr, LittleEndian, RegisterRule,
    UnwindContext, UnwindSection as _, X86_64,
};
use object::{Object as _, ObjectSection as _};

use super::cfi::{CfaBase, FrameRule, ReturnAt, SavedAt};
use crate::target::FileBytes;

/// A section's bytes in the file and its virtual address.
#[derive(Clone, Debug)]
struct Section {
    file_range: Range<usize>,
    address: u64,
}

/// One object's CFI, ready for lookups by virtual address.
pub struct ObjectCfi {
    bytes: FileBytes,
    eh_frame: Section,
    eh_frame_hdr: Option<Section>,
    bases: BaseAddresses,
    /// Reused by every lookup (gimli's row evaluation state).
    context: Box<UnwindContext<usize>>,
}

impl std::fmt::Debug for ObjectCfi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectCfi")
            .field("eh_frame", &self.eh_frame)
            .field("eh_frame_hdr", &self.eh_frame_hdr)
            .finish_non_exhaustive()
    }
}

fn section(file: &object::File<'_>, name: &str) -> Option<Section> {
    let section = file.section_by_name(name)?;
    let (offset, size) = section.file_range()?;
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(usize::try_from(size).ok()?)?;
    Some(Section {
        file_range: start..end,
        address: section.address(),
    })
}

impl ObjectCfi {
    /// The CFI of the x86-64 little-endian ELF object in `bytes`; `None` when it is not one
    /// or has no `.eh_frame`.
    #[must_use]
    pub fn parse(bytes: FileBytes) -> Option<Self> {
        let file = object::File::parse(&*bytes).ok()?;
        if file.format() != object::BinaryFormat::Elf
            || file.architecture() != object::Architecture::X86_64
        {
            return None;
        }
        let eh_frame = section(&file, ".eh_frame")?;
        bytes.get(eh_frame.file_range.clone())?;
        let eh_frame_hdr =
            section(&file, ".eh_frame_hdr").filter(|s| bytes.get(s.file_range.clone()).is_some());
        let mut bases = BaseAddresses::default().set_eh_frame(eh_frame.address);
        if let Some(hdr) = &eh_frame_hdr {
            bases = bases.set_eh_frame_hdr(hdr.address);
        }
        if let Some(text) = file.section_by_name(".text") {
            bases = bases.set_text(text.address());
        }
        if let Some(got) = file.section_by_name(".got") {
            bases = bases.set_got(got.address());
        }
        Some(Self {
            bytes,
            eh_frame,
            eh_frame_hdr,
            bases,
            context: Box::new(UnwindContext::new()),
        })
    }

    /// The rules at virtual address `vaddr` of the object; `None` when no FDE covers it or
    /// its rules need more than `rsp` and `rbp` (see [`FrameRule`]).
    pub fn rule_at(&mut self, vaddr: u64) -> Option<FrameRule> {
        let eh_frame = EhFrame::new(
            self.bytes.get(self.eh_frame.file_range.clone())?,
            LittleEndian,
        );
        let table_hdr = self.eh_frame_hdr.as_ref().and_then(|hdr| {
            EhFrameHdr::new(self.bytes.get(hdr.file_range.clone())?, LittleEndian)
                .parse(&self.bases, 8)
                .ok()
        });
        let row = match table_hdr.as_ref().and_then(|hdr| hdr.table()) {
            Some(table) => table.unwind_info_for_address(
                &eh_frame,
                &self.bases,
                &mut self.context,
                vaddr,
                EhFrame::cie_from_offset,
            ),
            None => eh_frame.unwind_info_for_address(
                &self.bases,
                &mut self.context,
                vaddr,
                EhFrame::cie_from_offset,
            ),
        }
        .ok()?;
        let (cfa_base, cfa_offset) = match *row.cfa() {
            CfaRule::RegisterAndOffset { register, offset } if register == X86_64::RSP => {
                (CfaBase::Rsp, offset)
            }
            CfaRule::RegisterAndOffset { register, offset } if register == X86_64::RBP => {
                (CfaBase::Rbp, offset)
            }
            _ => return None,
        };
        let return_at = match row.register(X86_64::RA) {
            RegisterRule::Offset(offset) => ReturnAt::CfaOffset(offset),
            RegisterRule::Undefined => ReturnAt::Outermost,
            _ => return None,
        };
        let rbp_at = match row.register(X86_64::RBP) {
            RegisterRule::Offset(offset) => SavedAt::CfaOffset(offset),
            RegisterRule::Undefined | RegisterRule::SameValue => SavedAt::Unchanged,
            _ => SavedAt::Unknown,
        };
        Some(FrameRule {
            cfa_base,
            cfa_offset,
            return_at,
            rbp_at,
        })
    }
}
