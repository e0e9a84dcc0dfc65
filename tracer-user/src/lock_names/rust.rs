//! Names of Rust `std` locks that live inside heap objects: `app::Store.hits` for the
//! `hits` field of an `app::Store`, from the binary's DWARF, the way Go's heap locks are
//! named (`crate::go::probe::go_lock_names`).
//!
//! `std`'s `Mutex::lock` and `RwLock::read`/`write` are inlined into the code that locks;
//! only their contended slow paths (`std::sys::sync::mutex::futex::Mutex::lock_contended`,
//! `…::rwlock::futex::RwLock::read_contended`/`write_contended`) stay out of line, and a
//! thread that sleeps on a `std` lock is always inside one of them. Their argument (`rdi`)
//! is the lock's futex word, so at each call to one the register is traced back through
//! the calling function's machine code to a variable that DWARF says points to a struct
//! (`store: &app::Store` in `rbx`): the struct's field whose `Mutex`/`RwLock` has its
//! futex word at that offset names the lock. The slow path is a cold block after the
//! function's `ret`, reached only by jumps, so the trace follows each of them (see
//! [`Joins::FollowPaths`]) and a name holds when every path gives the same. Nothing is
//! guessed: a call whose argument no variable explains on some path names nothing.
//!
//! The result maps the return address of each such call (a file virtual address of the
//! executable) to the name; a waiting thread's stack shows it.
use std::{borrow::Cow, sync::Arc};

use iced_x86::Register;
use object::{Object as _, ObjectSection as _, ObjectSymbol as _, SymbolKind};
use rustc_hash::{FxHashMap, FxHashSet};

use super::{
    DwarfNames,
    code::{CallSite, Decoded, Joins, calls_to, dwarf_register},
};

/// The slow paths of `std`'s futex locks (demangled, without hash and angle brackets,
/// after the `std::` path that changed between versions).
const SLOW_PATHS: [&str; 3] = [
    "::Mutex::lock_contended",
    "::RwLock::read_contended",
    "::RwLock::write_contended",
];

/// Most call sites traced (a bound on hostile or huge binaries).
const MAX_CALLS: usize = 1 << 16;

/// Rust `std` lock names by the return address of the call to a slow path.
#[derive(Debug, Clone, Default)]
pub struct RustLockOwners {
    by_pc: FxHashMap<u64, Arc<str>>,
}

impl RustLockOwners {
    /// Reads the names from the executable `elf` (see the [module docs](self)); empty when
    /// it has no DWARF (stripped), no `std` lock slow paths, or no call whose lock a
    /// variable explains.
    #[must_use]
    pub fn new(elf: &[u8]) -> Self {
        let mut owners = Self::default();
        let Ok(file) = object::File::parse(elf) else {
            return owners;
        };
        if file.section_by_name(".debug_info").is_none() {
            return owners;
        }
        let slow_paths = slow_path_entries(&file);
        let mut calls = calls_to(&file, &slow_paths, true);
        calls.truncate(MAX_CALLS);
        if calls.is_empty() {
            return owners;
        }
        let functions = function_ranges(&file);
        let mut by_function: FxHashMap<(u64, u64), Vec<CallSite>> = FxHashMap::default();
        for call in calls {
            let i = functions.partition_point(|&(start, _)| start <= call.at);
            if let Some(&(start, end)) = i.checked_sub(1).and_then(|i| functions.get(i))
                && call.at < end
            {
                by_function.entry((start, end)).or_default().push(call);
            }
        }
        let entries: FxHashSet<u64> = by_function.keys().map(|&(start, _)| start).collect();
        let entries = entries.into_iter().collect();
        let Some(dwarf) = DwarfNames::rust_with_functions(elf, &entries) else {
            return owners;
        };
        for (&(start, end), calls) in &by_function {
            let Some(code) = code_of(&file, start, end) else {
                continue;
            };
            let code = Decoded::new(&code, start);
            for call in calls {
                let Some(i) = code.index_of(call.at) else {
                    continue;
                };
                if !call.is(&code.instrs[i]) {
                    continue;
                }
                let paths = code.trace_paths(i, Register::RDI, 0, Joins::FollowPaths);
                let mut names = paths.iter().map(|points| {
                    points.iter().find_map(|&(pc, reg, offset)| {
                        dwarf.lock_member(start, pc, dwarf_register(reg)?, offset)
                    })
                });
                let first = names.next().flatten();
                let name = first.filter(|first| names.all(|n| n.as_ref() == Some(first)));
                if let Some(name) = name {
                    owners.by_pc.insert(call.at + call.len, Arc::from(name));
                }
            }
        }
        owners
    }

    /// The name of the lock a slow-path call returning to `vaddr` waits for.
    #[must_use]
    pub fn name_at(&self, vaddr: u64) -> Option<&Arc<str>> {
        self.by_pc.get(&vaddr)
    }

    /// Every (return address, lock name), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &str)> + '_ {
        self.by_pc.iter().map(|(&pc, name)| (pc, &**name))
    }

    /// How many return addresses name a lock.
    #[must_use]
    pub fn len(&self) -> usize {
        self.by_pc.len()
    }

    /// Whether no return address names a lock.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.by_pc.is_empty()
    }
}

/// Whether a demangled function name is one of `std`'s lock slow paths: `std::` first,
/// then any module path (it moved between versions), then one of [`SLOW_PATHS`]; the
/// v0 scheme's `<std::…::Mutex>::lock_contended` and the legacy one's hash suffix
/// (`::h0123…`) are both accepted.
#[must_use]
pub fn is_std_lock_slow_path(demangled: &str) -> bool {
    let name = match demangled.rsplit_once("::h") {
        Some((head, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            head
        }
        _ => demangled,
    };
    let name: String = name.chars().filter(|&c| c != '<' && c != '>').collect();
    name.starts_with("std::") && SLOW_PATHS.iter().any(|path| name.ends_with(path))
}

/// Entry addresses of `std`'s lock slow paths, from the symbol table.
fn slow_path_entries(file: &object::File<'_>) -> FxHashSet<u64> {
    file.symbols()
        .filter(|symbol| symbol.kind() == SymbolKind::Text && symbol.address() != 0)
        .filter(|symbol| {
            symbol.name().is_ok_and(|name| {
                // Cheap test before demangling.
                name.contains("contended")
                    && is_std_lock_slow_path(&addr2line::demangle_auto(Cow::Borrowed(name), None))
            })
        })
        .map(|symbol| symbol.address())
        .collect()
}

/// `[start, end)` of every function with a size in the symbol table, by start.
fn function_ranges(file: &object::File<'_>) -> Vec<(u64, u64)> {
    let mut ranges: Vec<(u64, u64)> = file
        .symbols()
        .filter(|symbol| {
            symbol.kind() == SymbolKind::Text && symbol.address() != 0 && symbol.size() != 0
        })
        .filter_map(|symbol| {
            Some((
                symbol.address(),
                symbol.address().checked_add(symbol.size())?,
            ))
        })
        .collect();
    ranges.sort_unstable();
    ranges.dedup_by_key(|&mut (start, _)| start);
    ranges
}

/// The bytes of `[start, end)` from the section holding them.
fn code_of<'a>(file: &object::File<'a>, start: u64, end: u64) -> Option<Cow<'a, [u8]>> {
    let section = file
        .sections()
        .find(|s| s.address() <= start && end <= s.address().saturating_add(s.size()))?;
    let data = section.data_range(start, end - start).ok()??;
    Some(Cow::Borrowed(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_paths_by_demangled_name_of_any_std_version() {
        for name in [
            "<std::sys::sync::mutex::futex::Mutex>::lock_contended",
            "<std::sys::sync::rwlock::futex::RwLock>::read_contended",
            "<std::sys::sync::rwlock::futex::RwLock>::write_contended",
            "std::sys::unix::locks::futex_mutex::Mutex::lock_contended::h0123456789abcdef",
            "std::sys::pal::unix::locks::futex_rwlock::RwLock::write_contended",
        ] {
            assert!(is_std_lock_slow_path(name), "{name}");
        }
        for name in [
            "<std::sys::sync::mutex::futex::Mutex>::lock",
            "<std::sys::sync::rwlock::futex::RwLock>::read",
            "<app::Mutex>::lock_contended",
            "parking_lot::raw_mutex::RawMutex::lock_slow",
            "std::sys::sync::mutex::futex::Mutex::lock_contended_x",
        ] {
            assert!(!is_std_lock_slow_path(name), "{name}");
        }
    }

    #[test]
    fn not_an_elf_file_names_nothing() {
        assert!(RustLockOwners::new(b"nope").is_empty());
    }
}
