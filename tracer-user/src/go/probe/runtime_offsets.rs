//! Where the Go runtime keeps a goroutine's id and status: offsets of `goid` and
//! `atomicstatus` in `runtime.g`, which the eBPF side reads through `R14` (the current
//! `g` in Go's register ABI).
//!
//! From DWARF when the binary has it (Go's linker compresses `.debug_*` with zlib; `object`
//! inflates them), else from a table of the amd64 layouts of Go 1.18–1.27,
//! written from the history of `src/runtime/runtime2.go`:
//!
//! | Go        | change before `atomicstatus`                       | `atomicstatus` | `goid` |
//! |-----------|----------------------------------------------------|----------------|--------|
//! | 1.18–1.22 | `gobuf` is 7 words (`sp pc g ctxt ret lr bp`)      | 144            | 152    |
//! | 1.23–1.24 | `g.syscallbp` added after `syscallpc`              | 152            | 160    |
//! | 1.25–1.27 | `gobuf.ret` removed                                 | 144            | 152    |
//!
//! The 1.19 and 1.25 rows are checked against DWARF by `tests/integration/go_probe_sites.rs`;
//! 1.26 and 1.27 follow the development tree (unchanged since 1.25), and a future
//! release that moves the fields again must be added here once its DWARF says so.

use addr2line::gimli;
use object::Object as _;

use crate::lock_names::dwarf::load_dwarf_sections;

/// Where a [`GoRuntimeOffsets`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OffsetSource {
    /// The binary's own DWARF (`runtime.g` members).
    Dwarf,
    /// The per-release table (stripped binaries).
    VersionTable,
}

/// Offsets of fields of the Go runtime's goroutine struct `runtime.g`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GoRuntimeOffsets {
    /// Offset of `g.goid` (`uint64`).
    pub goid: u64,
    /// Offset of `g.atomicstatus` (`uint32`).
    pub atomicstatus: u64,
    /// How they were found.
    pub source: OffsetSource,
}

/// The `runtime.g` offsets of a Go binary: from its DWARF when present, else from the
/// table for `go_version` (as [`crate::go::sym::go_build_info`] reports it, e.g.
/// `go1.19.8`). `None` when neither gives an answer (no DWARF and a release outside the
/// table, or not an x86-64 file for the table).
#[must_use]
pub fn go_runtime_offsets(elf: &[u8], go_version: &str) -> Option<GoRuntimeOffsets> {
    if let Some([Some(goid), Some(atomicstatus)]) =
        dwarf_member_offsets(elf, "runtime.g", ["goid", "atomicstatus"])
    {
        return Some(GoRuntimeOffsets {
            goid,
            atomicstatus,
            source: OffsetSource::Dwarf,
        });
    }
    let file = object::File::parse(elf).ok()?;
    if file.architecture() != object::Architecture::X86_64 {
        return None;
    }
    go_runtime_offsets_for_version(go_version)
}

/// The table's `runtime.g` offsets (amd64) for a Go version string such as `go1.22.5`,
/// `go1.21rc2` or `devel go1.24-abcdef …`; `None` outside Go 1.18–1.27.
#[must_use]
pub fn go_runtime_offsets_for_version(go_version: &str) -> Option<GoRuntimeOffsets> {
    let minor = go_minor_version(go_version)?;
    let (atomicstatus, goid) = match minor {
        18..=22 | 25..=27 => (144, 152),
        23 | 24 => (152, 160),
        _ => return None,
    };
    Some(GoRuntimeOffsets {
        goid,
        atomicstatus,
        source: OffsetSource::VersionTable,
    })
}

/// The `x` of `go1.x` in a Go version string (`go1.22.5`, `go1.21rc2`,
/// `devel go1.24-abcdef …`).
#[must_use]
pub fn go_minor_version(version: &str) -> Option<u32> {
    let version = version.trim();
    let version = version.strip_prefix("devel ").unwrap_or(version);
    let rest = version.strip_prefix("go1.")?;
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .map_or(rest, |end| &rest[..end]);
    digits.parse().ok()
}

/// The offset of member `member` of the Go struct type `type_name` (as Go's DWARF names
/// it: `runtime.g`, `sync.RWMutex`, `internal/sync.Mutex`), from the binary's DWARF.
/// `None` without DWARF or without that type or member.
#[must_use]
pub fn go_struct_member_offset(elf: &[u8], type_name: &str, member: &str) -> Option<u64> {
    dwarf_member_offsets(elf, type_name, [member])?[0]
}

/// The offsets of several members of one Go struct type, in one pass over the DWARF
/// (see [`go_struct_member_offset`]). `None` without DWARF or without the type; a member
/// the type lacks is `None` in the array.
#[must_use]
pub fn go_struct_member_offsets<const N: usize>(
    elf: &[u8],
    type_name: &str,
    members: [&str; N],
) -> Option<[Option<u64>; N]> {
    dwarf_member_offsets(elf, type_name, members)
}

/// Offsets of the members `members` of struct type `type_name` in the first DWARF
/// definition of that type; `None` if the file has no readable DWARF or no such type.
fn dwarf_member_offsets<const N: usize>(
    elf: &[u8],
    type_name: &str,
    members: [&str; N],
) -> Option<[Option<u64>; N]> {
    let found = go_struct_layouts(elf, &[(type_name, &members)])?
        .pop()
        .flatten()?;
    let mut out = [None; N];
    out.copy_from_slice(&found);
    Some(out)
}

/// Member offsets of several Go struct types in one pass over the binary's DWARF (which
/// is decompressed once): for each `(type_name, members)` query, the offsets of `members`
/// in the first definition of `type_name` (`None` for a member it lacks), or `None` when
/// the type is not defined. `None` overall when the file has no readable DWARF.
#[must_use]
pub fn go_struct_layouts(
    elf: &[u8],
    queries: &[(&str, &[&str])],
) -> Option<Vec<Option<Vec<Option<u64>>>>> {
    let file = object::File::parse(elf).ok()?;
    let (sections, endian) = load_dwarf_sections(&file, |_| false)?;
    let dwarf = sections.borrow(|s| gimli::EndianSlice::new(s, endian));
    let mut found: Vec<Option<Vec<Option<u64>>>> = vec![None; queries.len()];
    let mut units = dwarf.units();
    while let Ok(Some(header)) = units.next() {
        if found.iter().all(Option::is_some) {
            break;
        }
        // `Dwarf::unit` would also parse the line program, whose section we skip.
        let Ok(abbrevs) = dwarf.abbreviations(&header) else {
            continue;
        };
        for (slot, (type_name, members)) in found.iter_mut().zip(queries) {
            if slot.is_none() {
                *slot = members_in_unit(&dwarf, &header, &abbrevs, type_name, members);
            }
        }
    }
    Some(found)
}

type Reader<'a> = gimli::EndianSlice<'a, gimli::RunTimeEndian>;

/// The `DW_AT_name` of an entry, when it is an inline string or in `.debug_str` /
/// `.debug_line_str` (the forms Go's linker writes; indexed `strx` forms are not read).
fn entry_name<'a>(
    dwarf: &gimli::Dwarf<Reader<'a>>,
    entry: &gimli::DebuggingInformationEntry<'_, '_, Reader<'a>>,
) -> Option<Reader<'a>> {
    match entry.attr_value(gimli::DW_AT_name).ok()?? {
        gimli::AttributeValue::String(name) => Some(name),
        gimli::AttributeValue::DebugStrRef(off) => dwarf.debug_str.get_str(off).ok(),
        gimli::AttributeValue::DebugLineStrRef(off) => dwarf.debug_line_str.get_str(off).ok(),
        _ => None,
    }
}

/// [`dwarf_member_offsets`] within one unit.
fn members_in_unit(
    dwarf: &gimli::Dwarf<Reader<'_>>,
    header: &gimli::UnitHeader<Reader<'_>>,
    abbrevs: &gimli::Abbreviations,
    type_name: &str,
    members: &[&str],
) -> Option<Vec<Option<u64>>> {
    let mut entries = header.entries(abbrevs);
    let mut depth: isize = 0;
    // Depth of the matching struct while we are inside it.
    let mut inside: Option<isize> = None;
    let mut found = vec![None; members.len()];
    while let Ok(Some((delta, entry))) = entries.next_dfs() {
        depth += delta;
        if let Some(struct_depth) = inside {
            if depth <= struct_depth {
                return Some(found);
            }
            if depth == struct_depth + 1
                && entry.tag() == gimli::DW_TAG_member
                && let Some(name) = entry_name(dwarf, entry)
                && let Some(slot) = members.iter().position(|m| m.as_bytes() == name.slice())
            {
                found[slot] = entry
                    .attr_value(gimli::DW_AT_data_member_location)
                    .ok()
                    .flatten()
                    .and_then(|v| v.udata_value());
            }
            continue;
        }
        if entry.tag() == gimli::DW_TAG_structure_type
            && entry_name(dwarf, entry).is_some_and(|name| name.slice() == type_name.as_bytes())
        {
            inside = Some(depth);
        }
    }
    inside.map(|_| found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_table() {
        let at = |v: &str| go_runtime_offsets_for_version(v).map(|o| (o.atomicstatus, o.goid));
        assert_eq!(at("go1.18"), Some((144, 152)));
        assert_eq!(at("go1.19.8"), Some((144, 152)));
        assert_eq!(at("go1.22.12"), Some((144, 152)));
        assert_eq!(at("go1.23.0"), Some((152, 160)));
        assert_eq!(at("go1.24rc1"), Some((152, 160)));
        assert_eq!(
            at("devel go1.24-4b1c2d3 Tue Jan 1 00:00:00 2025 +0000"),
            Some((152, 160))
        );
        assert_eq!(at("go1.25.5"), Some((144, 152)));
        assert_eq!(at("go1.27"), Some((144, 152)));
        assert_eq!(at("go1.17.13"), None);
        assert_eq!(at("go1.28"), None);
        assert_eq!(at("go2"), None);
        assert_eq!(at(""), None);
        assert_eq!(
            go_runtime_offsets_for_version("go1.20").map(|o| o.source),
            Some(OffsetSource::VersionTable)
        );
    }

    #[test]
    fn not_an_elf_file() {
        assert_eq!(go_runtime_offsets(b"nope", "go1.20"), None);
        assert_eq!(go_struct_member_offset(b"nope", "runtime.g", "goid"), None);
    }
}
