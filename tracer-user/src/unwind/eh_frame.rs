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
    BaseAddresses, CfaRule, EhFrame, EhFrameHdr, LittleEndian, RegisterRule, UnwindContext,
    UnwindSection as _, X86_64,
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
        let row = match table_hdr.as_ref().and_then(gimli::ParsedEhFrameHdr::table) {
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

#[cfg(test)]
mod tests {
    use std::{path::Path, process::Command};

    use object::{ObjectSymbol as _, SymbolKind};

    use super::*;
    use crate::unwind::{cfi, ends_with_call};

    /// A chain `main → outer → middle → leaf`, built without frame pointers. `leaf`
    /// prints its instruction and stack pointers and the stack above. Before calling
    /// `middle`, `outer` calls `dirty`, whose big frame puts the return addresses of its
    /// own calls where `middle`'s unused buffer will be: stale return addresses in the
    /// copied stack, as a `printf` before a lock wait leaves them.
    const PROGRAM: &str = r#"
#include <stdio.h>
#define WORDS 160
static unsigned long copy[WORDS];
volatile int sink;

__attribute__((noinline)) void dirty_leaf(int x) { sink = x; }
__attribute__((noinline)) void dirty_mid(int x) { volatile char pad[48]; pad[0] = x; dirty_leaf(x); dirty_leaf(pad[0]); }
__attribute__((noinline)) void dirty(int x) { volatile char pad[300]; pad[0] = x; dirty_mid(x); dirty_mid(pad[0]); }

__attribute__((noinline)) void leaf(int x) {
    unsigned long ip, sp;
    __asm__ volatile("lea 0(%%rip), %0\n\tmov %%rsp, %1" : "=r"(ip), "=r"(sp));
    for (int i = 0; i < WORDS; i++) copy[i] = ((unsigned long *)sp)[i];
    printf("%lx %lx", ip, sp);
    for (int i = 0; i < WORDS; i++) printf(" %lx", copy[i]);
    printf("\n");
    sink = x;
}
__attribute__((noinline)) int middle(int x) { volatile char buf[512]; buf[0] = x; leaf(x); return buf[0]; }
__attribute__((noinline)) int outer(int x) { dirty(x); return middle(x) + 1; }
int main(void) { return outer(3) == 4 ? 0 : 1; }
"#;

    /// The executable's rules; no code counts as following a call (not needed without
    /// frame pointers).
    struct ExeOnly<'a>(&'a mut ObjectCfi);

    impl cfi::FrameSource for ExeOnly<'_> {
        fn rule_at(&mut self, addr: u64) -> Option<cfi::FrameRule> {
            self.0.rule_at(addr)
        }

        fn follows_call(&mut self, _: u64) -> bool {
            false
        }
    }

    /// Builds and runs [`PROGRAM`] (not position-independent: runtime addresses are the
    /// file's); returns the executable and the printed ip, sp and stack words.
    fn run_program(dir: &Path) -> (std::path::PathBuf, u64, u64, Vec<u64>) {
        let src = dir.join("chain.c");
        std::fs::write(&src, PROGRAM).unwrap();
        let exe = dir.join("chain");
        let status = Command::new("gcc")
            .args(["-O2", "-fomit-frame-pointer", "-fno-pie", "-no-pie", "-o"])
            .arg(&exe)
            .arg(&src)
            .status()
            .expect("gcc is missing (Debian package gcc): run `cargo xtask setup`");
        assert!(status.success(), "gcc failed: {status}");
        let out = Command::new(&exe).output().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        let mut numbers = text
            .split_whitespace()
            .map(|w| u64::from_str_radix(w, 16).unwrap());
        let ip = numbers.next().unwrap();
        let sp = numbers.next().unwrap();
        (exe, ip, sp, numbers.collect())
    }

    /// The function of the executable's symbol table that holds `addr`.
    fn function_at(file: &object::File<'_>, addr: u64) -> Option<String> {
        file.symbols()
            .filter(|s| s.kind() == SymbolKind::Text)
            .find(|s| (s.address()..s.address() + s.size()).contains(&addr))
            .and_then(|s| s.name().ok().map(str::to_owned))
    }

    /// Guards issue 16's stale frames with real `.eh_frame` from gcc: the CFI walk over a
    /// copied stack of code without frame pointers finds exactly the live frames, in
    /// order, while the stale return addresses `dirty` left in `middle`'s unused buffer
    /// (which the scan of every after-call word takes for frames: checked below, so the
    /// program does make stale words) are no frames.
    #[test]
    fn the_walk_over_real_cfi_finds_the_live_frames_only() {
        let dir = tempfile::tempdir().unwrap();
        let (exe, ip, sp, words) = run_program(dir.path());
        let bytes = FileBytes::open(&exe).unwrap();
        let mut cfi = ObjectCfi::parse(bytes).expect("gcc's output has .eh_frame");
        assert!(cfi.eh_frame_hdr.is_some(), "found through .eh_frame_hdr");
        let walk = cfi::walk(ip, sp, &words, &mut ExeOnly(&mut cfi), false);
        let data = std::fs::read(&exe).unwrap();
        let file = object::File::parse(&*data).unwrap();
        let functions: Vec<Option<String>> = walk
            .ips
            .iter()
            .enumerate()
            .map(|(i, &ip)| function_at(&file, if i == 0 { ip } else { ip - 1 }))
            .collect();
        let names: Vec<&str> = functions.iter().flatten().map(String::as_str).collect();
        assert_eq!(names, ["leaf", "middle", "outer", "main"], "{walk:x?}");
        // main returns into the C library, whose CFI this lookup does not have.
        assert_eq!(functions.len(), 5);
        assert_eq!(walk.end, cfi::WalkEnd::NoRule);

        // The scan of every after-call word in the executable sees dirty's frames.
        let text = file.section_by_name(".text").unwrap();
        let code = text.data().unwrap();
        let scanned: Vec<String> = words
            .iter()
            .filter(|&&w| w >= text.address() + 7 && w <= text.address() + code.len() as u64)
            .filter(|&&w| {
                let end = usize::try_from(w - text.address()).unwrap();
                ends_with_call(&code[end - 7..end])
            })
            .filter_map(|&w| function_at(&file, w - 1))
            .collect();
        assert!(
            scanned.iter().any(|f| f.starts_with("dirty")),
            "the program leaves stale return addresses: {scanned:?}"
        );
    }

    /// Guards objects without usable CFI: not ELF, or no `.eh_frame`, is `None`, never a
    /// panic.
    #[test]
    fn objects_without_cfi_have_none() {
        assert!(ObjectCfi::parse(FileBytes::from(b"not an object".to_vec())).is_none());
        assert!(ObjectCfi::parse(FileBytes::from(Vec::new())).is_none());
    }
}
