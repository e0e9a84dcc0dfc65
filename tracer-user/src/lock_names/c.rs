//! Names of C and C++ locks that live inside heap objects: `account.mu` for the `mu`
//! field of a `struct account`, `account.inner.mu` for one in a nested struct, from the
//! executable's DWARF (gcc or clang `-g`, any optimization level), as Rust's and Go's
//! heap locks are named.
//!
//! The C library's lock functions (`pthread_mutex_lock` and the other mutex and rwlock
//! acquisitions, [`LOCK_FUNCTIONS`]) take the lock's address in `rdi`. Each call the
//! executable makes to one — through its PLT entry, through its GOT slot (`-fno-plt`),
//! or directly (a static build) — has its argument traced back to a struct pointer
//! variable (see `super::owners`): the field of the struct at that offset that is a
//! `pthread_mutex_t`/`pthread_rwlock_t` (or a libstdc++ `std::mutex`) names the lock.
//! A lock taken through a bare `pthread_mutex_t *`, or a global's (named by its symbol
//! anyway), names nothing here.
//!
//! The result maps the return address of each such call (a file virtual address of the
//! executable) to the name: with `--holds` each acquisition carries it, and a waiting
//! thread's stack shows it.
use object::{Object as _, ObjectSection as _, ObjectSymbol as _, SymbolKind};
use rustc_hash::{FxHashMap, FxHashSet};

use super::{LockFlavor, code::calls_through, owners::LockOwners};

/// The C library functions that take a mutex or rwlock given in `rdi`.
pub const LOCK_FUNCTIONS: [&str; 12] = [
    "pthread_mutex_lock",
    "pthread_mutex_trylock",
    "pthread_mutex_timedlock",
    "pthread_mutex_clocklock",
    "pthread_rwlock_rdlock",
    "pthread_rwlock_wrlock",
    "pthread_rwlock_tryrdlock",
    "pthread_rwlock_trywrlock",
    "pthread_rwlock_timedrdlock",
    "pthread_rwlock_timedwrlock",
    "pthread_rwlock_clockrdlock",
    "pthread_rwlock_clockwrlock",
];

/// `endbr64`, which starts a PLT entry built for indirect branch tracking.
const ENDBR64: [u8; 4] = [0xf3, 0x0f, 0x1e, 0xfa];

impl LockOwners {
    /// C and C++ lock names by the return address of the call to a lock function, from
    /// the executable `elf` (see the [module docs](self)); empty when it has no DWARF,
    /// calls no lock function, or no call's lock a variable explains.
    #[must_use]
    pub fn c(elf: &[u8]) -> Self {
        let Ok(file) = object::File::parse(elf) else {
            return Self::default();
        };
        if file.section_by_name(".debug_info").is_none() {
            return Self::default();
        }
        let slots = import_slots(&file);
        let mut targets = plt_entries(&file, &slots);
        // A static build (or one that defines them): the functions themselves.
        targets.extend(
            file.symbols()
                .filter(|s| s.kind() == SymbolKind::Text && s.address() != 0)
                .filter(|s| s.name().is_ok_and(|name| LOCK_FUNCTIONS.contains(&name)))
                .map(|s| s.address()),
        );
        // `call [rip+slot]` (`-fno-plt`): the slot stands for the function.
        let slot_calls: FxHashMap<u64, u64> = slots.iter().map(|&slot| (slot, slot)).collect();
        let calls = calls_through(&file, &targets, &slot_calls);
        Self::from_calls(elf, &file, calls, LockFlavor::C)
    }
}

/// The GOT slots the dynamic loader fills with a lock function (`R_X86_64_JUMP_SLOT`
/// for the PLT, `R_X86_64_GLOB_DAT` for `-fno-plt` calls).
fn import_slots(file: &object::File<'_>) -> FxHashSet<u64> {
    const R_X86_64_GLOB_DAT: u32 = 6;
    const R_X86_64_JUMP_SLOT: u32 = 7;
    let wanted: FxHashSet<object::SymbolIndex> = file
        .dynamic_symbols()
        .filter(|s| s.name().is_ok_and(|name| LOCK_FUNCTIONS.contains(&name)))
        .map(|s| s.index())
        .collect();
    let mut slots = FxHashSet::default();
    if wanted.is_empty() {
        return slots;
    }
    let Some(relocations) = file.dynamic_relocations() else {
        return slots;
    };
    for (slot, relocation) in relocations {
        let object::RelocationFlags::Elf { r_type } = relocation.flags() else {
            continue;
        };
        if matches!(r_type, R_X86_64_GLOB_DAT | R_X86_64_JUMP_SLOT)
            && let object::RelocationTarget::Symbol(index) = relocation.target()
            && wanted.contains(&index)
        {
            slots.insert(slot);
        }
    }
    slots
}

/// The PLT entries that jump through one of `slots`: each `jmp [rip+disp32]` (with or
/// without a `bnd` prefix) of `.plt`, `.plt.sec` and `.plt.got` to a slot, from the
/// `endbr64` before it if there is one (where calls enter the entry).
fn plt_entries(file: &object::File<'_>, slots: &FxHashSet<u64>) -> FxHashSet<u64> {
    let mut entries = FxHashSet::default();
    if slots.is_empty() {
        return entries;
    }
    for name in [".plt", ".plt.sec", ".plt.got"] {
        let Some(section) = file.section_by_name(name) else {
            continue;
        };
        let Ok(data) = section.data() else {
            continue;
        };
        let base = section.address();
        for i in 0..data.len() {
            if data.get(i..i + 2) != Some(&[0xff, 0x25]) {
                continue;
            }
            let Some(bytes) = data.get(i + 2..i + 6) else {
                continue;
            };
            let Ok(rel) = <[u8; 4]>::try_from(bytes) else {
                continue;
            };
            let next = base + i as u64 + 6;
            let slot = next.wrapping_add_signed(i64::from(i32::from_le_bytes(rel)));
            if !slots.contains(&slot) {
                continue;
            }
            let mut start = i;
            if start > 0 && data.get(start - 1) == Some(&0xf2) {
                start -= 1;
            }
            if start >= 4 && data.get(start - 4..start) == Some(&ENDBR64[..]) {
                start -= 4;
            }
            entries.insert(base + start as u64);
        }
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_an_elf_file_names_nothing() {
        assert!(LockOwners::c(b"nope").is_empty());
    }
}
