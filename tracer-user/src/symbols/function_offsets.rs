//! Where named functions lie in an ELF file, as uprobes take them: file offsets.
//!
//! The lock uprobes go on the C library's lock functions by name. Both ways of attaching
//! them (one `uprobe_multi` link, or one perf-event uprobe each) take the offsets from
//! here, so they probe the same instructions.
//!
//! A name is looked up in the dynamic symbol table, then in the symbol table (a static
//! program's). Among dynamic symbols of one name, the default version wins: glibc 2.36
//! exports `pthread_cond_timedwait@GLIBC_2.2.5` (a compatibility wrapper no program built
//! since 2002 calls) before `pthread_cond_timedwait@@GLIBC_2.3.2`, and a uprobe on the
//! first one of the name never fires. Only the file itself is read: a library whose
//! exported functions are not in its own dynamic symbol table cannot be linked against,
//! so a separate debug file has nothing to add.
use object::{
    Object as _, ObjectKind, ObjectSection as _, ObjectSymbol as _,
    read::elf::{ElfFile64, VersionTable},
};

/// The file offset of each of `names` in the ELF file `elf` (in order), `None` for a name
/// it does not define. All `None` when `elf` is not a 64-bit ELF file.
#[must_use]
pub fn function_file_offsets(elf: &[u8], names: &[&str]) -> Vec<Option<u64>> {
    let Ok(file) = ElfFile64::<object::Endianness>::parse(elf) else {
        return vec![None; names.len()];
    };
    let versions = file
        .elf_section_table()
        .versions(file.endian(), file.data())
        .ok()
        .flatten();
    names
        .iter()
        .map(|name| {
            let symbol = dynamic_symbol(&file, versions.as_ref(), name).or_else(|| {
                file.symbols()
                    .find(|s| s.name() == Ok(name) && s.section_index().is_some())
            })?;
            file_offset(&file, &symbol)
        })
        .collect()
}

type Elf<'data> = ElfFile64<'data, object::Endianness>;
type ElfSymbol<'data, 'file> = object::read::elf::ElfSymbol64<'data, 'file, object::Endianness>;

/// The defined dynamic symbol `name`: its default version, else the first one.
fn dynamic_symbol<'data, 'file>(
    file: &'file Elf<'data>,
    versions: Option<&VersionTable<'data, object::elf::FileHeader64<object::Endianness>>>,
    name: &str,
) -> Option<ElfSymbol<'data, 'file>> {
    let mut first = None;
    for symbol in file.dynamic_symbols() {
        if symbol.name() != Ok(name) || symbol.section_index().is_none() {
            continue;
        }
        let hidden =
            versions.is_some_and(|v| v.version_index(file.endian(), symbol.index()).is_hidden());
        if !hidden {
            return Some(symbol);
        }
        first.get_or_insert(symbol);
    }
    first
}

/// Where `symbol` lies in the file: its address's offset into its section, plus the
/// section's file offset (a relocatable object's addresses are offsets already).
fn file_offset(file: &Elf<'_>, symbol: &ElfSymbol<'_, '_>) -> Option<u64> {
    if !matches!(file.kind(), ObjectKind::Dynamic | ObjectKind::Executable) {
        return Some(symbol.address());
    }
    let section = file.section_by_index(symbol.section_index()?).ok()?;
    let (offset, _) = section.file_range()?;
    symbol
        .address()
        .checked_sub(section.address())?
        .checked_add(offset)
}

#[cfg(test)]
mod tests {
    use std::ffi::CString;

    use super::*;

    /// This test process's own glibc: its path (from `/proc/self/maps`) and contents.
    fn own_libc() -> (String, Vec<u8>) {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let path = maps
            .lines()
            .filter_map(|line| line.split_whitespace().nth(5))
            .find(|path| path.rsplit('/').next() == Some("libc.so.6"))
            .expect("the test process maps glibc's libc.so.6")
            .to_owned();
        let bytes = std::fs::read(&path).unwrap();
        (path, bytes)
    }

    /// The address of `name` in this process, as the dynamic linker binds a program's
    /// call to it (the default version).
    fn linked_address(name: &str) -> usize {
        let name = CString::new(name).unwrap();
        // SAFETY: `dlsym` with RTLD_DEFAULT and a NUL-terminated name only reads.
        let addr = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
        assert!(!addr.is_null(), "{name:?} is not linked in this process");
        addr as usize
    }

    /// Guards the lock uprobes going anywhere but the first instruction of the function a
    /// program calls: a wrong section-to-file translation, or a compatibility version of
    /// the function (glibc's old `pthread_cond_timedwait@GLIBC_2.2.5`, listed before the
    /// default one) instead of the one programs link to. The bytes at each offset in the
    /// file must be the bytes of the function this process calls.
    #[test]
    fn offsets_are_the_functions_programs_call() {
        let (path, bytes) = own_libc();
        let names = [
            "pthread_mutex_lock",
            "pthread_mutex_unlock",
            "pthread_rwlock_wrlock",
            "pthread_cond_wait",
            "pthread_cond_timedwait",
        ];
        let offsets = function_file_offsets(&bytes, &names);
        for (name, offset) in names.iter().zip(offsets) {
            let offset = offset.unwrap_or_else(|| panic!("{name} not found in {path}"));
            let at = usize::try_from(offset).unwrap();
            let in_file = &bytes[at..at + 32];
            let addr = linked_address(name);
            // SAFETY: `addr` is the start of a function of the mapped glibc, whose code is
            // far longer than 32 readable bytes.
            let in_memory = unsafe { std::slice::from_raw_parts(addr as *const u8, 32) };
            assert_eq!(
                in_file, in_memory,
                "{name}: the code at file offset {offset:#x} of {path} is not the function \
                 at {addr:#x}"
            );
        }
    }

    /// Guards a missing lock function (an older C library) failing the whole lookup, or
    /// being given some offset: it is `None`, and the others are still found.
    #[test]
    fn an_undefined_name_is_none() {
        let (_, bytes) = own_libc();
        let offsets =
            function_file_offsets(&bytes, &["no_such_function_here", "pthread_mutex_lock"]);
        assert_eq!(offsets[0], None);
        assert!(offsets[1].is_some());
        assert_eq!(
            function_file_offsets(b"not an ELF file", &["pthread_mutex_lock"]),
            [None]
        );
    }
}
