//! Which C library the target runs on: glibc or musl, shared or linked into the
//! executable, or neither. It decides how lock memory is read (the two keep their locks
//! differently) and where the lock uprobes go.
use std::fmt;

use object::{Object as _, ObjectSymbol as _};

use super::{MapEntry, TargetProcess};

/// A C library whose lock layouts the tracer knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LibcFlavor {
    Glibc,
    Musl,
}

/// The target's C library, as found at attach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CLibrary {
    /// A shared library the target maps, at `path` as the target sees it (open it
    /// through [`TargetProcess::host_path`]).
    Shared { flavor: LibcFlavor, path: String },
    /// Linked into the executable (`gcc -static`), known by its symbols.
    Static { flavor: LibcFlavor },
    /// Neither glibc nor musl, or nothing says which.
    Unrecognised(UnrecognisedLibc),
}

impl CLibrary {
    /// Its flavour, when recognised.
    #[must_use]
    pub fn flavor(&self) -> Option<LibcFlavor> {
        match self {
            Self::Shared { flavor, .. } | Self::Static { flavor } => Some(*flavor),
            Self::Unrecognised(_) => None,
        }
    }
}

/// Why no C library was recognised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UnrecognisedLibc {
    /// A C library is mapped, but its symbols are neither glibc's nor musl's.
    OtherShared(String),
    /// No C library is mapped, and the executable has no symbol table to tell.
    StaticWithoutSymbols,
    /// No C library is mapped, and the executable's symbols are neither glibc's nor
    /// musl's (or it could not be read).
    StaticOther,
}

impl fmt::Display for UnrecognisedLibc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OtherShared(path) => {
                write!(f, "{path} is neither glibc nor musl")
            }
            Self::StaticWithoutSymbols => f.write_str(
                "no C library is mapped and the executable has no symbol table to tell which one it was linked with",
            ),
            Self::StaticOther => f.write_str(
                "no C library is mapped and the executable's symbols are neither glibc's nor musl's",
            ),
        }
    }
}

/// Symbols only musl defines (its futex wait helpers).
const MUSL_SYMBOLS: [&str; 2] = ["__timedwait_cp", "__timedwait"];
/// Symbols only glibc defines (`_IO_stdin_used` comes with glibc's startup files into
/// every program linked with it).
const GLIBC_SYMBOLS: [&str; 3] = [
    "gnu_get_libc_version",
    "_IO_stdin_used",
    "__libc_start_call_main",
];

/// The flavour a file name alone says: `ld-musl-ARCH.so.1` and `libc.musl-ARCH.so.1`
/// (Alpine), a `libc.so` under a directory named for musl (Debian's `musl`), glibc's
/// `libc.so.6` and `libc-2.31.so`. `None` for other names, and for a bare `libc.so`
/// elsewhere (its symbols tell).
fn flavor_by_name(path: &str) -> Option<LibcFlavor> {
    let name = path.rsplit('/').next().unwrap_or(path);
    if name.starts_with("ld-musl-") || name.starts_with("libc.musl-") {
        return Some(LibcFlavor::Musl);
    }
    if name == "libc.so" && path.contains("musl") {
        return Some(LibcFlavor::Musl);
    }
    let old_glibc = name
        .strip_prefix("libc-")
        .and_then(|n| n.strip_suffix(".so"))
        .is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit() || b == b'.'));
    (name == "libc.so.6" || old_glibc).then_some(LibcFlavor::Glibc)
}

/// Whether a file name is one a C library may have (checked by its symbols when the name
/// does not say which).
fn may_be_libc(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    flavor_by_name(path).is_some() || name == "libc.so" || name.starts_with("libc.so.")
}

/// What an ELF file's symbols say it is or was linked with. `Err(())` when it has no
/// symbols at all (or is no ELF).
fn flavor_by_symbols(elf: &[u8]) -> Result<Option<LibcFlavor>, ()> {
    let file = object::File::parse(elf).map_err(|_| ())?;
    let mut any = false;
    let mut musl = false;
    let mut glibc = false;
    for symbol in file.symbols().chain(file.dynamic_symbols()) {
        any = true;
        let Ok(name) = symbol.name() else { continue };
        musl |= MUSL_SYMBOLS.contains(&name);
        glibc |= GLIBC_SYMBOLS.contains(&name);
    }
    if !any {
        return Err(());
    }
    Ok(match (musl, glibc) {
        (true, false) => Some(LibcFlavor::Musl),
        (false, true) => Some(LibcFlavor::Glibc),
        _ => None,
    })
}

/// Finds the target's C library from its `maps` (a mapped glibc or musl) or, when none
/// is mapped, from its executable's symbols (a static program).
pub fn identify_c_library(target: &dyn TargetProcess, maps: &[MapEntry]) -> CLibrary {
    let mapped = maps
        .iter()
        .filter(|m| m.is_file())
        .filter_map(|m| m.path.as_deref())
        .find(|p| may_be_libc(p));
    if let Some(path) = mapped {
        let flavor = flavor_by_name(path).or_else(|| {
            let bytes = std::fs::read(target.host_path(path)).ok()?;
            flavor_by_symbols(&bytes).ok().flatten()
        });
        return match flavor {
            Some(flavor) => CLibrary::Shared {
                flavor,
                path: path.to_owned(),
            },
            None => CLibrary::Unrecognised(UnrecognisedLibc::OtherShared(path.to_owned())),
        };
    }
    let Ok(exe) = target.executable() else {
        return CLibrary::Unrecognised(UnrecognisedLibc::StaticOther);
    };
    match flavor_by_symbols(&exe.data) {
        Ok(Some(flavor)) => CLibrary::Static { flavor },
        Ok(None) => CLibrary::Unrecognised(UnrecognisedLibc::StaticOther),
        Err(()) => CLibrary::Unrecognised(UnrecognisedLibc::StaticWithoutSymbols),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards musl recognition from the maps: Alpine maps its C library as
    /// `ld-musl-x86_64.so.1` (the glibc name check missed it), Debian as
    /// `.../x86_64-linux-musl/libc.so`; glibc keeps its names.
    #[test]
    fn names_say_musl_or_glibc() {
        assert_eq!(
            flavor_by_name("/lib/ld-musl-x86_64.so.1"),
            Some(LibcFlavor::Musl)
        );
        assert_eq!(
            flavor_by_name("/usr/lib/libc.musl-x86_64.so.1"),
            Some(LibcFlavor::Musl)
        );
        assert_eq!(
            flavor_by_name("/usr/lib/x86_64-linux-musl/libc.so"),
            Some(LibcFlavor::Musl)
        );
        assert_eq!(
            flavor_by_name("/usr/lib/x86_64-linux-gnu/libc.so.6"),
            Some(LibcFlavor::Glibc)
        );
        assert_eq!(
            flavor_by_name("/lib/x86_64-linux-gnu/libc-2.31.so"),
            Some(LibcFlavor::Glibc)
        );
        assert_eq!(flavor_by_name("/opt/other/libc.so"), None);
        assert!(may_be_libc("/opt/other/libc.so"));
        assert!(!may_be_libc("/usr/lib/libcrypt.so.1"));
        assert!(!may_be_libc("/x/libc-client.so"));
    }

    /// Guards the choice of layout at attach: a mapped musl (Alpine's name) is musl, a
    /// mapped glibc is glibc, and a program with no C library mapped is told by its
    /// executable's symbols, or is unrecognised (with the reason the note gives).
    #[test]
    fn the_c_library_comes_from_the_maps_or_the_executable() {
        use crate::target::fake::FakeProcess;
        let mapped =
            |path: &str| FakeProcess::new(42).region(0x1000, vec![0; 16], "r-xp", Some(path));
        assert_eq!(
            identify_c_library(
                &mapped("/lib/ld-musl-x86_64.so.1"),
                &mapped("/lib/ld-musl-x86_64.so.1").maps().unwrap()
            ),
            CLibrary::Shared {
                flavor: LibcFlavor::Musl,
                path: "/lib/ld-musl-x86_64.so.1".to_owned()
            }
        );
        let glibc = mapped("/usr/lib/x86_64-linux-gnu/libc.so.6");
        assert_eq!(
            identify_c_library(&glibc, &glibc.maps().unwrap()).flavor(),
            Some(LibcFlavor::Glibc)
        );
        let this = std::fs::read("/proc/self/exe").unwrap();
        let static_glibc = FakeProcess::new(42).with_executable("/bin/prog", this);
        assert_eq!(
            identify_c_library(&static_glibc, &[]),
            CLibrary::Static {
                flavor: LibcFlavor::Glibc
            }
        );
        let no_symbols = FakeProcess::new(42).with_executable("/bin/prog", b"garbage".to_vec());
        assert_eq!(
            identify_c_library(&no_symbols, &[]),
            CLibrary::Unrecognised(UnrecognisedLibc::StaticWithoutSymbols)
        );
        // A `libc.so` that is neither (its file cannot even be read here).
        let other = mapped("/opt/other/libc.so");
        let found = identify_c_library(&other, &other.maps().unwrap());
        assert_eq!(
            found,
            CLibrary::Unrecognised(UnrecognisedLibc::OtherShared(
                "/opt/other/libc.so".to_owned()
            ))
        );
    }

    /// Guards static programs: the executable's own symbols say which C library it was
    /// linked with; an ELF without symbols says nothing.
    #[test]
    fn symbols_say_which_libc_a_static_program_has() {
        let this = std::fs::read("/proc/self/exe").unwrap();
        // The test binary itself is linked with glibc.
        assert_eq!(flavor_by_symbols(&this), Ok(Some(LibcFlavor::Glibc)));
        assert_eq!(flavor_by_symbols(b"not an elf"), Err(()));
    }
}
