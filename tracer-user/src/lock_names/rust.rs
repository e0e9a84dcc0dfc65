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
//! [`super::code::Joins::FollowPaths`]) and a name holds when every path gives the same. Nothing is
//! guessed: a call whose argument no variable explains on some path names nothing.
//!
//! The result ([`LockOwners`], shared with C programs) maps the return address of each
//! such call (a file virtual address of the executable) to the name; a waiting thread's
//! stack shows it.
use std::borrow::Cow;

use object::{Object as _, ObjectSymbol as _, SymbolKind};
use rustc_hash::FxHashSet;

use super::{LockFlavor, code::calls_to, owners::LockOwners};

/// The slow paths of `std`'s futex locks (demangled, without hash and angle brackets,
/// after the `std::` path that changed between versions).
const SLOW_PATHS: [&str; 3] = [
    "::Mutex::lock_contended",
    "::RwLock::read_contended",
    "::RwLock::write_contended",
];

impl LockOwners {
    /// Rust `std` lock names by the return address of the call to a slow path, from the
    /// executable `elf` (see the [module docs](self)); empty when it has no DWARF
    /// (stripped), no `std` lock slow paths, or no call whose lock a variable explains.
    #[must_use]
    pub fn rust(elf: &[u8]) -> Self {
        let Ok(file) = object::File::parse(elf) else {
            return Self::default();
        };
        if file.section_by_name(".debug_info").is_none() {
            return Self::default();
        }
        let slow_paths = slow_path_entries(&file);
        let calls = calls_to(&file, &slow_paths, true);
        Self::from_calls(elf, &file, calls, LockFlavor::Rust)
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
        assert!(LockOwners::rust(b"nope").is_empty());
    }
}
