//! Names of places inside Go global variables, from the binary's DWARF: the variable
//! `main.store` plus the path of struct fields and array elements down to the member that
//! holds a given offset, e.g. `main.store.mu`, `main.cfg.inner.mu`, `main.table[3].mu`;
//! and, for Go and Rust programs, the locks inside the structs that the variables of
//! given functions point to ([`DwarfNames::lock_member`]).
//!
//! Go's linker describes every package-level variable as a `DW_TAG_variable` of its
//! package's compile unit, named as in the ELF symbol table (`main.store`, `net/http.x`),
//! whose `DW_AT_type` (a `DW_FORM_ref_addr` into the unit holding the types) names a
//! typedef of the struct or array type. [`DwarfNames::go`] reads the DWARF once and keeps
//! a compact table: each global's type and the layout (members, offsets, sizes) of every
//! struct and array type reachable from a global *by value* (pointers, maps, slices,
//! strings, interfaces, channels and functions are leaves). The decompressed DWARF is
//! dropped afterwards, and a query is a walk down that table.
//!
//! The walk stops at a lock: a member whose type is `sync.Mutex`, `sync.RWMutex` or
//! `internal/sync.Mutex` is named as a whole (`main.store.mu`, never `main.store.mu.state`).
//! In a Rust program ([`LockFlavor::Rust`]) the locks are `std`'s `Mutex<T>` and
//! `RwLock<T>` (`std::sync::Mutex<T>`, a struct named `Mutex<…>` whose `inner` holds the
//! futex word `futex`; `RwLock<…>` whose `inner` holds `state`), and a lock is found by
//! the address of that futex word, which is where the lock waits.
//! Other members are followed down to the innermost struct field or array element holding
//! the offset, so an offset in a non-lock field names that field (`main.store.data`). An
//! offset in padding (between members, or after the last one) names the enclosing struct;
//! an offset inside a leaf member, past its first byte, names the member (the remainder is
//! dropped).
use std::{
    borrow::Cow,
    collections::{HashMap, HashSet},
    fmt::Write as _,
    sync::Arc,
};

use addr2line::gimli;
use object::{Object as _, ObjectSection as _};

/// Types whose members are never named: a lock is named as a whole.
const LOCK_TYPES: [&str; 3] = ["sync.Mutex", "sync.RWMutex", "internal/sync.Mutex"];
/// The C library's lock types (typedefs of unions), named as a whole in a C or C++
/// program: the lock is known by its address, where the lock functions are given it.
const C_LOCK_TYPES: [&str; 2] = ["pthread_mutex_t", "pthread_rwlock_t"];
/// libstdc++'s lock classes, each a wrapper with the C library's lock at offset 0.
const CXX_LOCK_CLASSES: [&str; 6] = [
    "mutex",
    "recursive_mutex",
    "timed_mutex",
    "recursive_timed_mutex",
    "shared_mutex",
    "shared_timed_mutex",
];

/// `DW_AT_go_kind`: Go's `reflect.Kind` of a type (Go-specific attribute).
const DW_AT_GO_KIND: gimli::DwAt = gimli::DwAt(0x2900);
/// `reflect.Array`.
const GO_KIND_ARRAY: u64 = 17;
/// `reflect.Struct`.
const GO_KIND_STRUCT: u64 = 25;

/// Longest typedef chain followed from a type reference to its struct or array.
const MAX_TYPEDEFS: usize = 16;
/// Deepest field path (struct fields plus array elements) a query walks.
const MAX_DEPTH: usize = 64;
/// Most types kept; types past it are unknown leaves (bounds memory on hostile DWARF).
const MAX_TYPES: usize = 1 << 20;
/// Most members kept per struct.
const MAX_MEMBERS: usize = 1 << 16;

type Reader<'a> = gimli::EndianSlice<'a, gimli::RunTimeEndian>;

/// The field path of `symbol + offset`, for a Go global variable `symbol` (as the ELF
/// symbol table and Go's DWARF name it, e.g. `main.store`): `main.store.mu`,
/// `main.cfg.inner.mu`, `main.table[3].mu`; see the [module docs](self) for where the
/// path stops. `None` when the binary has no readable DWARF, no such variable, or
/// `offset` is not inside it.
///
/// Reads the DWARF on each call; build a [`DwarfNames`] to answer many queries.
#[must_use]
pub fn go_global_field_path(elf: &[u8], symbol: &str, offset: u64) -> Option<String> {
    DwarfNames::build(elf, Some(symbol), &HashSet::new(), LockFlavor::Go)?
        .field_path(symbol, offset)
}

/// Largest DWARF section we decompress: a 74 MB Go binary has 23 MB of `.debug_info`,
/// so this leaves room while bounding what a hostile file can make us allocate.
const MAX_SECTION: usize = 256 << 20;

/// Loads a DWARF section of `file`, decompressing it if needed; empty when absent.
fn section_bytes<'a>(file: &object::File<'a>, id: gimli::SectionId) -> Option<Cow<'a, [u8]>> {
    let Some(section) = file.section_by_name(id.name()) else {
        return Some(Cow::Borrowed(&[]));
    };
    // Go compresses its DWARF (so may a Rust build) (zlib, `SHF_COMPRESSED`); `object` inflates it, after a
    // check of the size the header claims.
    let claimed = section.compressed_data().ok()?.uncompressed_size;
    if claimed > MAX_SECTION as u64 {
        return None;
    }
    section.uncompressed_data().ok()
}

/// The DWARF sections of `file` a walk over entries and types needs (info, abbreviations,
/// strings), plus those `extra` asks for, each decompressed; the others are left empty,
/// so lines, locations and ranges (most of the DWARF) are only inflated when asked for.
/// `None` when the file has no `.debug_info` or a section cannot be read.
pub(crate) fn load_dwarf_sections<'a>(
    file: &object::File<'a>,
    extra: impl Fn(gimli::SectionId) -> bool,
) -> Option<(gimli::DwarfSections<Cow<'a, [u8]>>, gimli::RunTimeEndian)> {
    file.section_by_name(".debug_info")?;
    let endian = if file.is_little_endian() {
        gimli::RunTimeEndian::Little
    } else {
        gimli::RunTimeEndian::Big
    };
    let sections = gimli::DwarfSections::load(|id| -> Result<Cow<'a, [u8]>, ()> {
        let always = matches!(
            id,
            gimli::SectionId::DebugInfo
                | gimli::SectionId::DebugAbbrev
                | gimli::SectionId::DebugStr
                | gimli::SectionId::DebugStrOffsets
                | gimli::SectionId::DebugLineStr
        );
        if always || extra(id) {
            section_bytes(file, id).ok_or(())
        } else {
            Ok(Cow::Borrowed(&[]))
        }
    })
    .ok()?;
    Some((sections, endian))
}

/// Which language's locks and names the DWARF is read for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockFlavor {
    /// Go: `sync.Mutex`, `sync.RWMutex`, `internal/sync.Mutex`; package-level globals;
    /// a pointed-to struct named by its DWARF name (`main.Store`).
    Go,
    /// Rust: `std`'s `Mutex<T>` and `RwLock<T>`, found by their futex word; no globals
    /// (statics are named by their symbols); a pointed-to struct named by its path, from
    /// the name of the reference type (`&app::Store` names `app::Store`).
    Rust,
    /// C and C++: `pthread_mutex_t` and `pthread_rwlock_t` (and libstdc++'s `std::mutex`
    /// family around them), known by their address; no globals (they are named by their
    /// symbols); a pointed-to struct or class named by its DWARF name (`account`).
    C,
}

/// Global variables of a Go binary and the layouts of their types, from its DWARF, for
/// naming addresses inside them ([`DwarfNames::field_path`]); and the pointer variables
/// of chosen functions of a Go or Rust binary, for naming the locks in the structs they
/// point to ([`DwarfNames::lock_member`]).
#[derive(Debug, Clone, Default)]
pub struct DwarfNames {
    /// Global variable name → index in `types` of its type.
    vars: HashMap<Box<str>, u32>,
    types: Vec<TypeNode>,
    /// Entry address of each function asked for ([`DwarfNames::go_with_functions`]) → its
    /// variables that point to a struct and sit in a register somewhere.
    functions: HashMap<u64, Box<[PointerVar]>>,
}

/// A parameter or local variable of a function (or of a body inlined into it) that points
/// to a struct, with where it is in a register.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PointerVar {
    /// Go name of the pointed-to type (`main.Store`).
    type_name: Box<str>,
    /// The pointed-to type.
    ty: u32,
    /// `[start, end)` pc ranges where the variable is entirely in DWARF register `reg`.
    in_regs: Box<[(u64, u64, u16)]>,
    /// `[start, end)` pc ranges where the variable is in the stack frame, at this offset
    /// from the canonical frame address (the CFA: the caller's stack pointer before the
    /// call), as unoptimized C keeps its variables.
    in_frame: Box<[(u64, u64, i64)]>,
}

/// A type, with typedefs resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TypeNode {
    /// `sync.Mutex`, `sync.RWMutex` or `internal/sync.Mutex` (Go), `Mutex<T>` or
    /// `RwLock<T>` (Rust): named as a whole. `word` is the offset of the futex word
    /// the lock is known by (0 for Go's locks, which are known by their address).
    Lock { size: Option<u64>, word: u64 },
    /// Not descended into: a scalar, a pointer-shaped or header type (pointer,
    /// map, channel, function, slice, string, interface), or a type that could not be read.
    Leaf { size: Option<u64> },
    /// A struct: members by increasing offset (members at the same offset in DWARF order).
    Struct {
        size: Option<u64>,
        members: Box<[Member]>,
    },
    /// A one-dimensional array of `count` elements of type `elem`.
    Array {
        size: Option<u64>,
        elem: u32,
        count: Option<u64>,
    },
}

impl TypeNode {
    fn size(&self) -> Option<u64> {
        match self {
            Self::Lock { size, .. }
            | Self::Leaf { size }
            | Self::Struct { size, .. }
            | Self::Array { size, .. } => *size,
        }
    }
}

/// A struct member.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Member {
    name: Box<str>,
    offset: u64,
    ty: u32,
}

impl DwarfNames {
    /// Reads the global variables and the layouts of their types from the DWARF of the
    /// Go binary `elf`. `None` when it has no readable DWARF (stripped with `-w` or `-s`).
    #[must_use]
    pub fn go(elf: &[u8]) -> Option<Self> {
        Self::build(elf, None, &HashSet::new(), LockFlavor::Go)
    }

    /// [`DwarfNames::go`], plus the pointer variables of the functions whose entry
    /// addresses are in `functions`, for [`DwarfNames::lock_member`].
    #[must_use]
    pub fn go_with_functions(elf: &[u8], functions: &HashSet<u64>) -> Option<Self> {
        Self::build(elf, None, functions, LockFlavor::Go)
    }

    /// The pointer variables of the functions of the Rust binary `elf` whose entry
    /// addresses are in `functions`, for [`DwarfNames::lock_member`] (no globals). `None`
    /// when it has no readable DWARF.
    #[must_use]
    pub fn rust_with_functions(elf: &[u8], functions: &HashSet<u64>) -> Option<Self> {
        Self::build(elf, None, functions, LockFlavor::Rust)
    }

    /// The pointer variables of the functions of `elf` whose entry addresses are in
    /// `functions`, read as [`LockFlavor::C`] or [`LockFlavor::Rust`] (no globals);
    /// `None` when it has no readable DWARF.
    #[must_use]
    pub fn with_functions(
        elf: &[u8],
        functions: &HashSet<u64>,
        flavor: LockFlavor,
    ) -> Option<Self> {
        Self::build(elf, None, functions, flavor)
    }

    /// The name of the lock at `offset` bytes into the struct a variable of the function
    /// entered at `function` points to, when at `pc` that variable is in DWARF register
    /// `reg`: `main.Store.mu` (the struct's type, then the field path to the lock, as in
    /// [`DwarfNames::field_path`]). `None` unless a lock's word (the start of a Go
    /// `sync.Mutex`, `sync.RWMutex`, `internal/sync.Mutex`; the futex word of a Rust
    /// `Mutex<T>` or `RwLock<T>`) is exactly there, so a pointer to a lock itself (the
    /// receiver inside `Mutex.Lock`) or an offset into some other field names nothing.
    #[must_use]
    pub fn lock_member(&self, function: u64, pc: u64, reg: u16, offset: i64) -> Option<String> {
        self.lock_member_where(function, offset, |var| {
            var.in_regs
                .iter()
                .any(|&(start, end, r)| r == reg && (start..end).contains(&pc))
        })
    }

    /// [`DwarfNames::lock_member`] for a variable that at `pc` is in the stack frame,
    /// `cfa_offset` bytes from the canonical frame address.
    #[must_use]
    pub fn lock_member_in_frame(
        &self,
        function: u64,
        pc: u64,
        cfa_offset: i64,
        offset: i64,
    ) -> Option<String> {
        self.lock_member_where(function, offset, |var| {
            var.in_frame
                .iter()
                .any(|&(start, end, at)| at == cfa_offset && (start..end).contains(&pc))
        })
    }

    /// The lock `offset` bytes into the struct the first variable of `function` that
    /// `holds` (and points to a lock there) points to.
    fn lock_member_where(
        &self,
        function: u64,
        offset: i64,
        holds: impl Fn(&PointerVar) -> bool,
    ) -> Option<String> {
        let offset = u64::try_from(offset).ok()?;
        self.functions
            .get(&function)?
            .iter()
            .filter(|var| holds(var))
            .find_map(|var| self.lock_path(var.ty, offset, var.type_name.to_string()))
    }

    /// The field path from a value of type `ty` to the lock whose word is `offset` bytes
    /// into it, appended to `path` (`main.Store` + `.mu`, `.inner.mu`, `.shards[2].mu`);
    /// `None` when no lock's word is there or `ty` is a lock itself.
    fn lock_path(&self, mut ty: u32, offset: u64, mut path: String) -> Option<String> {
        let mut rest = offset;
        for depth in 0..MAX_DEPTH {
            if let TypeNode::Lock { word, .. } = self.node(ty) {
                return (rest == *word && depth > 0).then_some(path);
            }
            (ty, rest) = self.step(ty, rest, &mut path)?;
        }
        None
    }

    /// One step down a field path: the member or array element of `ty` holding byte
    /// `rest` (its type and the offset left inside it), with `.name` or `[index]` appended
    /// to `path`; `None` at a lock or leaf, or where no member holds the byte.
    fn step(&self, ty: u32, rest: u64, path: &mut String) -> Option<(u32, u64)> {
        match self.node(ty) {
            TypeNode::Lock { .. } | TypeNode::Leaf { .. } => None,
            TypeNode::Struct { size, members } => {
                let member = self.member_at(members, *size, rest)?;
                path.push('.');
                path.push_str(&member.name);
                Some((member.ty, rest - member.offset))
            }
            TypeNode::Array { size, elem, count } => {
                let elem_size = self.node(*elem).size().or_else(|| {
                    size.zip(*count)
                        .and_then(|(size, count)| size.checked_div(count))
                });
                let elem_size = elem_size.filter(|&s| s > 0)?;
                let index = rest / elem_size;
                if count.is_some_and(|count| index >= count) {
                    return None;
                }
                let _ = write!(path, "[{index}]");
                Some((*elem, rest % elem_size))
            }
        }
    }

    /// How many global variables were found.
    #[must_use]
    pub fn len(&self) -> usize {
        self.vars.len()
    }

    /// Whether no global variable was found.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }

    /// The field path of `symbol + offset` (see [`go_global_field_path`]): `None` when
    /// there is no global `symbol` or `offset` is not inside it. A variable whose size is
    /// unknown only answers for offset 0.
    #[must_use]
    pub fn field_path(&self, symbol: &str, offset: u64) -> Option<String> {
        let mut ty = *self.vars.get(symbol)?;
        match self.node(ty).size() {
            Some(size) if offset >= size => return None,
            None if offset != 0 => return None,
            _ => {}
        }
        let mut path = symbol.to_owned();
        let mut rest = offset;
        for _ in 0..MAX_DEPTH {
            let Some(next) = self.step(ty, rest, &mut path) else {
                break;
            };
            (ty, rest) = next;
        }
        Some(path)
    }

    fn node(&self, ty: u32) -> &TypeNode {
        const UNKNOWN: TypeNode = TypeNode::Leaf { size: None };
        usize::try_from(ty)
            .ok()
            .and_then(|i| self.types.get(i))
            .unwrap_or(&UNKNOWN)
    }

    /// The member of a struct (of size `struct_size`; `members` sorted by offset) holding
    /// byte `offset`: the first whose bytes (its type's size, else up to the next member
    /// at a higher offset or the struct's end) contain it. Zero-sized members hold nothing.
    fn member_at<'m>(
        &self,
        members: &'m [Member],
        struct_size: Option<u64>,
        offset: u64,
    ) -> Option<&'m Member> {
        let candidates = members.partition_point(|m| m.offset <= offset);
        members.get(..candidates)?.iter().find(|m| {
            let end = self.node(m.ty).size().map_or_else(
                || {
                    let next = members.partition_point(|n| n.offset <= m.offset);
                    members.get(next).map(|n| n.offset).or(struct_size)
                },
                |size| m.offset.checked_add(size),
            );
            end.is_none_or(|end| offset < end)
        })
    }

    /// Reads the DWARF of `elf`: every global (Go), or only the first named `only`, and
    /// the pointer variables of the functions entered at `functions`.
    fn build(
        elf: &[u8],
        only: Option<&str>,
        functions: &HashSet<u64>,
        flavor: LockFlavor,
    ) -> Option<Self> {
        let file = object::File::parse(elf).ok()?;
        // Location lists, addresses and ranges only when functions are asked for.
        let (sections, endian) = load_dwarf_sections(&file, |id| {
            !functions.is_empty()
                && matches!(
                    id,
                    gimli::SectionId::DebugLoc
                        | gimli::SectionId::DebugLocLists
                        | gimli::SectionId::DebugAddr
                        | gimli::SectionId::DebugRanges
                        | gimli::SectionId::DebugRngLists
                )
        })?;
        let dwarf = sections.borrow(|s| gimli::EndianSlice::new(s, endian));
        let units = read_units(&dwarf);
        if units.is_empty() {
            return None;
        }
        let mut builder = Builder {
            dwarf: &dwarf,
            units: &units,
            flavor,
            types: Vec::new(),
            index: HashMap::new(),
            pending: Vec::new(),
        };
        let mut vars = HashMap::new();
        let mut function_vars = HashMap::new();
        'units: for unit in &units {
            let globals = match flavor {
                LockFlavor::Go => unit_globals(&dwarf, unit, only),
                LockFlavor::Rust | LockFlavor::C => Vec::new(),
            };
            for (name, type_offset) in globals {
                if vars.contains_key(name.as_str()) {
                    continue;
                }
                let ty = builder.intern(type_offset);
                vars.insert(name.into_boxed_str(), ty);
                if only.is_some() {
                    break 'units;
                }
            }
            if !functions.is_empty() {
                for (entry, raw) in unit_pointer_vars(&dwarf, &units, unit, functions, flavor) {
                    let vars: Vec<PointerVar> = raw
                        .into_iter()
                        .map(|(type_name, pointee, (in_regs, in_frame))| PointerVar {
                            type_name,
                            ty: builder.intern(pointee),
                            in_regs,
                            in_frame,
                        })
                        .collect();
                    function_vars.insert(entry, vars.into_boxed_slice());
                }
            }
        }
        builder.finish();
        let mut types = builder.types;
        types.shrink_to_fit();
        vars.shrink_to_fit();
        Some(Self {
            vars,
            types,
            functions: function_vars,
        })
    }
}

/// A pointer variable as read, before its pointee gets a type index: the pointee's name
/// and section offset, and where the variable is in registers and in the stack frame.
type RawPointerVar = (Box<str>, usize, Places);

/// Where a variable is: `[start, end)` ranges in a DWARF register, and at an offset
/// from the CFA (see [`PointerVar`]).
type Places = (Box<[(u64, u64, u16)]>, Box<[(u64, u64, i64)]>);

/// Deepest nesting of lexical blocks and inlined bodies searched for variables.
const MAX_SCOPE_DEPTH: usize = 32;
/// Most variables kept per function.
const MAX_FUNCTION_VARS: usize = 4096;

/// The pointer variables of each function of `unit` whose entry is in `functions`.
fn unit_pointer_vars<'a>(
    dwarf: &gimli::Dwarf<Reader<'a>>,
    units: &[Unit<'a>],
    unit: &Unit<'a>,
    functions: &HashSet<u64>,
    flavor: LockFlavor,
) -> Vec<(u64, Vec<RawPointerVar>)> {
    let mut out = Vec::new();
    let Ok(mut tree) = unit.header.entries_tree(&unit.abbrevs, None) else {
        return out;
    };
    let Ok(root) = tree.root() else {
        return out;
    };
    // Addresses are `DW_FORM_addr` before Go 1.25, `DW_FORM_addrx` into `.debug_addr`
    // (from the unit's `DW_AT_addr_base`) after; location lists start from the unit's
    // base address (its `DW_AT_low_pc`).
    let addr_base = match root
        .entry()
        .attr_value(gimli::DW_AT_addr_base)
        .ok()
        .flatten()
    {
        Some(gimli::AttributeValue::DebugAddrBase(base)) => base,
        _ => gimli::DebugAddrBase(0),
    };
    let addrs = Addresses {
        dwarf,
        size: unit.header.address_size(),
        base: addr_base,
    };
    let base = addrs.get(root.entry(), gimli::DW_AT_low_pc).unwrap_or(0);
    let context = Scope {
        dwarf,
        units,
        unit,
        base,
        addr_base,
        function: (0, None),
        frame_is_cfa: false,
        block: None,
        flavor,
    };
    collect_functions(&context, &addrs, root, 0, functions, &mut out);
    out
}

/// The pointer variables of the subprograms among the children of `node` whose entry is
/// in `functions`, looking into namespaces (Rust nests its functions in modules and
/// `impl` blocks; Go's are children of the unit).
fn collect_functions(
    context: &Scope<'_, '_>,
    addrs: &Addresses<'_, '_>,
    node: gimli::EntriesTreeNode<'_, '_, '_, Reader<'_>>,
    depth: usize,
    functions: &HashSet<u64>,
    out: &mut Vec<(u64, Vec<RawPointerVar>)>,
) {
    let mut children = node.children();
    while let Ok(Some(child)) = children.next() {
        let entry = child.entry();
        if entry.tag() == gimli::DW_TAG_namespace && depth < MAX_SCOPE_DEPTH {
            collect_functions(context, addrs, child, depth + 1, functions, out);
            continue;
        }
        if entry.tag() != gimli::DW_TAG_subprogram {
            continue;
        }
        let Some(low) = addrs.get(entry, gimli::DW_AT_low_pc) else {
            continue;
        };
        if !functions.contains(&low) {
            continue;
        }
        let high = match entry.attr_value(gimli::DW_AT_high_pc).ok().flatten() {
            Some(gimli::AttributeValue::Udata(len)) => low.checked_add(len),
            Some(_) => addrs.get(entry, gimli::DW_AT_high_pc),
            None => None,
        };
        let mut vars = Vec::new();
        // gcc and clang give a function's frame base as the CFA (`DW_OP_call_frame_cfa`):
        // a variable at `DW_OP_fbreg` is then at a fixed offset from it.
        let frame_is_cfa = matches!(
            entry.attr_value(gimli::DW_AT_frame_base).ok().flatten(),
            Some(gimli::AttributeValue::Exprloc(expr))
                if expr.0.slice() == [gimli::DW_OP_call_frame_cfa.0]
        );
        let scope = Scope {
            function: (low, high),
            frame_is_cfa,
            block: high.map(|high| (low, high)),
            ..*context
        };
        scope.pointer_vars(child, 0, &mut vars);
        out.push((low, vars));
    }
}

/// What reading the variables of one function needs.
struct Scope<'s, 'a> {
    dwarf: &'s gimli::Dwarf<Reader<'a>>,
    units: &'s [Unit<'a>],
    unit: &'s Unit<'a>,
    /// The unit's base address, which location list offsets start from.
    base: u64,
    /// The unit's `DW_AT_addr_base` (0 when it has none).
    addr_base: gimli::DebugAddrBase,
    /// The function's `[low, high)`, where a single location expression directly in it
    /// holds.
    function: (u64, Option<u64>),
    /// The function's frame base is the CFA.
    frame_is_cfa: bool,
    /// The `[low, high)` of the innermost scope being read, when it is one range: where a
    /// single stack-frame location of a variable declared in it holds.
    block: Option<(u64, u64)>,
    /// How a pointed-to struct is named.
    flavor: LockFlavor,
}

impl Scope<'_, '_> {
    /// Collects the pointer variables declared in the scope `node` (a subprogram, lexical
    /// block or inlined body) and the scopes nested in it.
    fn pointer_vars(
        &self,
        node: gimli::EntriesTreeNode<'_, '_, '_, Reader<'_>>,
        depth: usize,
        vars: &mut Vec<RawPointerVar>,
    ) {
        let mut children = node.children();
        while let Ok(Some(child)) = children.next() {
            if vars.len() >= MAX_FUNCTION_VARS {
                return;
            }
            let entry = child.entry();
            match entry.tag() {
                gimli::DW_TAG_formal_parameter | gimli::DW_TAG_variable => {
                    if let Some(var) = self.pointer_var(entry, depth) {
                        vars.push(var);
                    }
                }
                gimli::DW_TAG_lexical_block | gimli::DW_TAG_inlined_subroutine
                    if depth < MAX_SCOPE_DEPTH =>
                {
                    // An inlined body's frame locations are the caller's frame's: only a
                    // lexical block (of the function itself) keeps them.
                    let block = (entry.tag() == gimli::DW_TAG_lexical_block)
                        .then(|| self.scope_range(entry))
                        .flatten();
                    let inner = Scope { block, ..*self };
                    inner.pointer_vars(child, depth + 1, vars);
                }
                _ => {}
            }
        }
    }

    /// The variable `entry` if its type is a pointer to a named type and it is ever
    /// entirely in one register.
    fn pointer_var(
        &self,
        entry: &gimli::DebuggingInformationEntry<'_, '_, Reader<'_>>,
        depth: usize,
    ) -> Option<RawPointerVar> {
        let (dwarf, units, unit) = (self.dwarf, self.units, self.unit);
        // An inlined body's variables name their type through their abstract origin.
        let ty = type_ref(unit, entry).or_else(|| {
            let origin = match entry.attr_value(gimli::DW_AT_abstract_origin).ok()?? {
                gimli::AttributeValue::UnitRef(o) => unit.start.checked_add(o.0)?,
                gimli::AttributeValue::DebugInfoRef(o) => o.0,
                _ => return None,
            };
            entry_at(units, origin, |u, e| type_ref(u, e))?
        })?;
        // C and C++ qualify pointers (`struct account *const a`, C++'s `this`).
        let ty = match self.flavor {
            LockFlavor::C => skip_qualifiers(units, ty)?,
            LockFlavor::Go | LockFlavor::Rust => ty,
        };
        let (pointee, reference) = entry_at(units, ty, |u, e| {
            (e.tag() == gimli::DW_TAG_pointer_type).then(|| {
                let reference = entry_name(dwarf, e).map(|n| String::from_utf8_lossy(n));
                Some((type_ref(u, e)?, reference.map(std::borrow::Cow::into_owned)))
            })?
        })??;
        let pointee = match self.flavor {
            LockFlavor::C => skip_qualifiers(units, pointee)?,
            LockFlavor::Go | LockFlavor::Rust => pointee,
        };
        // Rust's reference and pointer types carry the pointee's path (`&app::Store`),
        // which its struct's own name (`Store`) leaves out.
        let path = match self.flavor {
            LockFlavor::Rust => reference.as_deref().and_then(rust_pointee_path),
            LockFlavor::Go | LockFlavor::C => None,
        };
        let type_name: Box<str> = match path {
            Some(path) => path.into(),
            None => entry_at(units, pointee, |_, e| {
                entry_name(dwarf, e).map(|n| String::from_utf8_lossy(n).into())
            })??,
        };
        let mut in_regs = Vec::new();
        let mut in_frame = Vec::new();
        match entry.attr_value(gimli::DW_AT_location).ok()?? {
            gimli::AttributeValue::Exprloc(expr) => {
                // One expression for the whole scope: trusted only directly in the function.
                if let (0, Some(reg), (low, Some(high))) =
                    (depth, register_of(expr.0.slice()), self.function)
                {
                    in_regs.push((low, high, reg));
                }
                // A stack slot for the whole scope (unoptimized code keeps each variable
                // in its own): trusted over the scope's one range.
                if let (Some(at), Some((low, high))) =
                    (self.frame_offset(expr.0.slice()), self.block)
                {
                    in_frame.push((low, high, at));
                }
            }
            gimli::AttributeValue::LocationListsRef(offset) => {
                let mut locations = dwarf
                    .locations
                    .locations(
                        offset,
                        unit.header.encoding(),
                        self.base,
                        &dwarf.debug_addr,
                        self.addr_base,
                    )
                    .ok()?;
                while let Ok(Some(loc)) = locations.next() {
                    if let Some(reg) = register_of(loc.data.0.slice()) {
                        in_regs.push((loc.range.begin, loc.range.end, reg));
                    }
                    if let Some(at) = self.frame_offset(loc.data.0.slice()) {
                        in_frame.push((loc.range.begin, loc.range.end, at));
                    }
                    if in_regs.len() + in_frame.len() >= MAX_MEMBERS {
                        break;
                    }
                }
            }
            _ => {}
        }
        (!in_regs.is_empty() || !in_frame.is_empty()).then(|| {
            (
                type_name,
                pointee,
                (in_regs.into_boxed_slice(), in_frame.into_boxed_slice()),
            )
        })
    }

    /// The offset from the CFA of a variable whose location expression is
    /// `DW_OP_fbreg N` alone, when the function's frame base is the CFA.
    fn frame_offset(&self, expr: &[u8]) -> Option<i64> {
        let [op, rest @ ..] = expr else {
            return None;
        };
        if !self.frame_is_cfa || *op != gimli::DW_OP_fbreg.0 {
            return None;
        }
        let mut reader = gimli::EndianSlice::new(rest, gimli::LittleEndian);
        let at = gimli::Reader::read_sleb128(&mut reader).ok()?;
        gimli::Reader::is_empty(&reader).then_some(at)
    }

    /// The `[low, high)` of a scope entry with `DW_AT_low_pc` and `DW_AT_high_pc` (one
    /// range); `None` for one with `DW_AT_ranges` or none.
    fn scope_range(
        &self,
        entry: &gimli::DebuggingInformationEntry<'_, '_, Reader<'_>>,
    ) -> Option<(u64, u64)> {
        let addrs = Addresses {
            dwarf: self.dwarf,
            size: self.unit.header.address_size(),
            base: self.addr_base,
        };
        let low = addrs.get(entry, gimli::DW_AT_low_pc)?;
        let high = match entry.attr_value(gimli::DW_AT_high_pc).ok()?? {
            gimli::AttributeValue::Udata(len) => low.checked_add(len)?,
            _ => addrs.get(entry, gimli::DW_AT_high_pc)?,
        };
        Some((low, high))
    }
}

/// Most qualifiers (`const`, `volatile`, `restrict`) skipped on the way to a type.
const MAX_QUALIFIERS: usize = 4;

/// The section offset of the type at `ty`, past its qualifiers.
fn skip_qualifiers(units: &[Unit<'_>], mut ty: usize) -> Option<usize> {
    for _ in 0..MAX_QUALIFIERS {
        let next = entry_at(units, ty, |u, e| {
            matches!(
                e.tag(),
                gimli::DW_TAG_const_type
                    | gimli::DW_TAG_volatile_type
                    | gimli::DW_TAG_restrict_type
            )
            .then(|| type_ref(u, e))
        })?;
        match next {
            Some(next) => ty = next?,
            None => return Some(ty),
        }
    }
    None
}

/// The path of the type a Rust reference or pointer type name points to: `app::Store`
/// for `&app::Store`, `&mut app::Store`, `*const app::Store`, `*mut app::Store`.
fn rust_pointee_path(reference: &str) -> Option<&str> {
    let path = ["&mut ", "&", "*const ", "*mut "]
        .iter()
        .find_map(|prefix| reference.strip_prefix(prefix))?;
    (!path.is_empty()).then_some(path)
}

/// Reads the address attributes of one unit.
struct Addresses<'d, 'a> {
    dwarf: &'d gimli::Dwarf<Reader<'a>>,
    size: u8,
    base: gimli::DebugAddrBase,
}

impl Addresses<'_, '_> {
    /// An address attribute: `DW_FORM_addr`, or `DW_FORM_addrx` into `.debug_addr`.
    fn get(
        &self,
        entry: &gimli::DebuggingInformationEntry<'_, '_, Reader<'_>>,
        name: gimli::DwAt,
    ) -> Option<u64> {
        match entry.attr_value(name).ok()?? {
            gimli::AttributeValue::Addr(addr) => Some(addr),
            gimli::AttributeValue::DebugAddrIndex(index) => self
                .dwarf
                .debug_addr
                .get_address(self.size, self.base, index)
                .ok(),
            _ => None,
        }
    }
}

/// The DWARF register a location expression consists of (`DW_OP_reg0`…`DW_OP_reg31`, or
/// `DW_OP_regx`), `None` for anything else (memory, pieces, computed values).
fn register_of(expr: &[u8]) -> Option<u16> {
    match expr {
        &[op] if (gimli::DW_OP_reg0.0..=gimli::DW_OP_reg31.0).contains(&op) => {
            Some(u16::from(op - gimli::DW_OP_reg0.0))
        }
        [op, rest @ ..] if *op == gimli::DW_OP_regx.0 => {
            let mut reader = gimli::EndianSlice::new(rest, gimli::LittleEndian);
            let reg = gimli::Reader::read_uleb128(&mut reader).ok()?;
            gimli::Reader::is_empty(&reader)
                .then(|| u16::try_from(reg).ok())
                .flatten()
        }
        _ => None,
    }
}

/// Runs `f` on the entry at section offset `offset` (in whichever unit holds it).
fn entry_at<'a, T>(
    units: &[Unit<'a>],
    offset: usize,
    f: impl FnOnce(&Unit<'a>, &gimli::DebuggingInformationEntry<'_, '_, Reader<'a>>) -> T,
) -> Option<T> {
    let (unit, unit_offset) = unit_at(units, offset)?;
    let entry = unit
        .header
        .entry(&unit.abbrevs, gimli::UnitOffset(unit_offset))
        .ok()?;
    Some(f(unit, &entry))
}

/// A unit of `.debug_info`: where it is and how to read it.
struct Unit<'a> {
    /// Section offsets of its first byte (header) and one past its last.
    start: usize,
    end: usize,
    header: gimli::UnitHeader<Reader<'a>>,
    abbrevs: Arc<gimli::Abbreviations>,
}

/// The readable units of `.debug_info`, by increasing offset (Go's linker shares one
/// abbreviation table between them all, which is parsed once).
fn read_units<'a>(dwarf: &gimli::Dwarf<Reader<'a>>) -> Vec<Unit<'a>> {
    let mut abbrev_cache: HashMap<usize, Arc<gimli::Abbreviations>> = HashMap::new();
    let mut units: Vec<Unit<'a>> = Vec::new();
    let mut headers = dwarf.units();
    while let Ok(Some(header)) = headers.next() {
        let Some(start) = header.offset().as_debug_info_offset().map(|o| o.0) else {
            continue;
        };
        let Some(end) = start.checked_add(header.length_including_self()) else {
            break;
        };
        if units.last().is_some_and(|last| start < last.end) {
            break;
        }
        let abbrev_offset = header.debug_abbrev_offset();
        let abbrevs = if let Some(abbrevs) = abbrev_cache.get(&abbrev_offset.0) {
            Arc::clone(abbrevs)
        } else {
            let Ok(abbrevs) = dwarf.debug_abbrev.abbreviations(abbrev_offset) else {
                continue;
            };
            let abbrevs = Arc::new(abbrevs);
            abbrev_cache.insert(abbrev_offset.0, Arc::clone(&abbrevs));
            abbrevs
        };
        units.push(Unit {
            start,
            end,
            header,
            abbrevs,
        });
    }
    units
}

/// The unit holding section offset `offset`, and the offset within it.
fn unit_at<'u, 'a>(units: &'u [Unit<'a>], offset: usize) -> Option<(&'u Unit<'a>, usize)> {
    let i = units
        .partition_point(|u| u.start <= offset)
        .checked_sub(1)?;
    let unit = units.get(i)?;
    (offset < unit.end).then(|| (unit, offset - unit.start))
}

/// The `DW_AT_name` of an entry, as inline string or `.debug_str`/`.debug_line_str`
/// reference (the forms Go's linker writes).
fn entry_name<'a>(
    dwarf: &gimli::Dwarf<Reader<'a>>,
    entry: &gimli::DebuggingInformationEntry<'_, '_, Reader<'a>>,
) -> Option<&'a [u8]> {
    let name = match entry.attr_value(gimli::DW_AT_name).ok()?? {
        gimli::AttributeValue::String(name) => name,
        gimli::AttributeValue::DebugStrRef(off) => dwarf.debug_str.get_str(off).ok()?,
        gimli::AttributeValue::DebugLineStrRef(off) => dwarf.debug_line_str.get_str(off).ok()?,
        _ => return None,
    };
    Some(name.slice())
}

/// The section offset of the entry `DW_AT_type` of `entry` (in `unit`) refers to.
fn type_ref(
    unit: &Unit<'_>,
    entry: &gimli::DebuggingInformationEntry<'_, '_, Reader<'_>>,
) -> Option<usize> {
    match entry.attr_value(gimli::DW_AT_type).ok()?? {
        gimli::AttributeValue::UnitRef(o) => unit.start.checked_add(o.0),
        gimli::AttributeValue::DebugInfoRef(o) => Some(o.0),
        _ => None,
    }
}

/// A constant attribute of `entry`.
fn udata(
    entry: &gimli::DebuggingInformationEntry<'_, '_, Reader<'_>>,
    name: gimli::DwAt,
) -> Option<u64> {
    entry.attr_value(name).ok()??.udata_value()
}

/// The global variables of `unit` (the `DW_TAG_variable` children of its root, which in
/// Go are package-level variables; locals live under their `DW_TAG_subprogram`) with the
/// section offsets of their types. With `only`, just the variable of that name.
fn unit_globals(
    dwarf: &gimli::Dwarf<Reader<'_>>,
    unit: &Unit<'_>,
    only: Option<&str>,
) -> Vec<(String, usize)> {
    let mut globals = Vec::new();
    let Ok(mut tree) = unit.header.entries_tree(&unit.abbrevs, None) else {
        return globals;
    };
    let Ok(root) = tree.root() else {
        return globals;
    };
    let mut children = root.children();
    // Ends: every entry takes at least one byte of the unit.
    while let Ok(Some(child)) = children.next() {
        let entry = child.entry();
        if entry.tag() != gimli::DW_TAG_variable {
            continue;
        }
        let Some(name) = entry_name(dwarf, entry) else {
            continue;
        };
        if only.is_some_and(|only| only.as_bytes() != name) {
            continue;
        }
        let (Ok(name), Some(ty)) = (std::str::from_utf8(name), type_ref(unit, entry)) else {
            continue;
        };
        globals.push((name.to_owned(), ty));
        if only.is_some() {
            break;
        }
    }
    globals
}

/// Builds the [`TypeNode`] table from type references, without recursion: each new type
/// gets an index at once and is read later from `pending`.
struct Builder<'d, 'a> {
    dwarf: &'d gimli::Dwarf<Reader<'a>>,
    units: &'d [Unit<'a>],
    flavor: LockFlavor,
    types: Vec<TypeNode>,
    /// Section offset of a type entry → its index in `types`.
    index: HashMap<usize, u32>,
    /// Types with an index but not read yet.
    pending: Vec<(u32, usize)>,
}

impl Builder<'_, '_> {
    /// The index of the type at section offset `offset`, queued for reading if new.
    fn intern(&mut self, offset: usize) -> u32 {
        if let Some(&ty) = self.index.get(&offset) {
            return ty;
        }
        let Ok(ty) = u32::try_from(self.types.len()) else {
            return u32::MAX;
        };
        if self.types.len() >= MAX_TYPES {
            // Out of range: `GoDwarfNames::node` reads it as an unknown leaf.
            return u32::MAX;
        }
        self.types.push(TypeNode::Leaf { size: None });
        self.index.insert(offset, ty);
        self.pending.push((ty, offset));
        ty
    }

    /// Reads every queued type (and the types they queue).
    fn finish(&mut self) {
        // Each pass reads one queued type, and at most `MAX_TYPES` are ever queued.
        while let Some((ty, offset)) = self.pending.pop() {
            let node = self.read(offset);
            if let Some(slot) = usize::try_from(ty).ok().and_then(|i| self.types.get_mut(i)) {
                *slot = node;
            }
        }
        self.index = HashMap::new();
    }

    /// The type at section offset `offset`, through typedefs.
    fn read(&mut self, mut offset: usize) -> TypeNode {
        // A lock or a Go non-aggregate type seen along the typedef chain: keep going only
        // to learn the size.
        let mut lock = false;
        let mut leaf = false;
        for _ in 0..MAX_TYPEDEFS {
            let Some((unit, unit_offset)) = unit_at(self.units, offset) else {
                break;
            };
            let Ok(mut tree) = unit
                .header
                .entries_tree(&unit.abbrevs, Some(gimli::UnitOffset(unit_offset)))
            else {
                break;
            };
            let Ok(root) = tree.root() else {
                break;
            };
            let entry = root.entry();
            let tag = entry.tag();
            let name = entry_name(self.dwarf, entry);
            let lock_types: &[&str] = match self.flavor {
                LockFlavor::Go => &LOCK_TYPES,
                LockFlavor::C if tag == gimli::DW_TAG_class_type => &CXX_LOCK_CLASSES,
                LockFlavor::C => &C_LOCK_TYPES,
                LockFlavor::Rust => &[],
            };
            if name.is_some_and(|name| lock_types.iter().any(|lock| lock.as_bytes() == name)) {
                lock = true;
            }
            if udata(entry, DW_AT_GO_KIND)
                .is_some_and(|kind| kind != 0 && kind != GO_KIND_ARRAY && kind != GO_KIND_STRUCT)
            {
                leaf = true;
            }
            if tag == gimli::DW_TAG_typedef {
                match type_ref(unit, entry) {
                    Some(next) => {
                        offset = next;
                        continue;
                    }
                    None => break,
                }
            }
            let size = udata(entry, gimli::DW_AT_byte_size).or_else(|| {
                (tag == gimli::DW_TAG_pointer_type).then(|| u64::from(unit.header.address_size()))
            });
            if lock {
                return TypeNode::Lock { size, word: 0 };
            }
            if leaf {
                return TypeNode::Leaf { size };
            }
            let class = self.flavor == LockFlavor::C && tag == gimli::DW_TAG_class_type;
            if tag == gimli::DW_TAG_structure_type || class {
                let members = struct_members(self.dwarf, unit, root);
                if self.flavor == LockFlavor::Rust
                    && let Some(word) = name.and_then(|name| self.rust_lock_word(name, &members))
                {
                    return TypeNode::Lock { size, word };
                }
                let mut members: Vec<Member> = members
                    .into_iter()
                    .map(|(name, offset, ty)| Member {
                        name: name.into_boxed_str(),
                        offset,
                        ty: self.intern(ty),
                    })
                    .collect();
                // Go writes them by offset already; stable, so the DWARF order of members
                // at the same offset is kept.
                members.sort_by_key(|m| m.offset);
                return TypeNode::Struct {
                    size,
                    members: members.into_boxed_slice(),
                };
            }
            if tag == gimli::DW_TAG_array_type {
                let Some(elem) = type_ref(unit, entry) else {
                    return TypeNode::Leaf { size };
                };
                let &[count] = subrange_counts(root).as_slice() else {
                    return TypeNode::Leaf { size };
                };
                return TypeNode::Array {
                    size,
                    elem: self.intern(elem),
                    count,
                };
            }
            return TypeNode::Leaf { size };
        }
        TypeNode::Leaf { size: None }
    }
}

impl Builder<'_, '_> {
    /// The offset of the futex word in a Rust `std` lock, when the struct named `name`
    /// with `members` is one: named `Mutex<…>` with `inner.futex`, or `RwLock<…>`
    /// with `inner.state` (`std`'s futex locks, Rust 1.62 and later).
    fn rust_lock_word(&self, name: &[u8], members: &[(String, u64, usize)]) -> Option<u64> {
        let word_member = if name.starts_with(b"Mutex<") {
            "futex"
        } else if name.starts_with(b"RwLock<") {
            "state"
        } else {
            return None;
        };
        let &(_, inner_offset, inner_ty) = members.iter().find(|(name, _, _)| name == "inner")?;
        let (inner_unit, offset) = unit_at(self.units, inner_ty)?;
        let mut tree = inner_unit
            .header
            .entries_tree(&inner_unit.abbrevs, Some(gimli::UnitOffset(offset)))
            .ok()?;
        let root = tree.root().ok()?;
        if root.entry().tag() != gimli::DW_TAG_structure_type {
            return None;
        }
        let (_, word_offset, _) = struct_members(self.dwarf, inner_unit, root)
            .into_iter()
            .find(|(name, _, _)| name == word_member)?;
        inner_offset.checked_add(word_offset)
    }
}

/// The members of the struct entry `node` (in `unit`): name, offset and the section offset
/// of the type. Members without a constant offset (a DWARF 2 location expression) cannot
/// be placed and are left out; Go never writes them.
fn struct_members(
    dwarf: &gimli::Dwarf<Reader<'_>>,
    unit: &Unit<'_>,
    node: gimli::EntriesTreeNode<'_, '_, '_, Reader<'_>>,
) -> Vec<(String, u64, usize)> {
    let mut members = Vec::new();
    let mut children = node.children();
    while let Ok(Some(child)) = children.next() {
        if members.len() >= MAX_MEMBERS {
            break;
        }
        let entry = child.entry();
        if entry.tag() != gimli::DW_TAG_member {
            continue;
        }
        let (Some(name), Some(offset), Some(ty)) = (
            entry_name(dwarf, entry),
            udata(entry, gimli::DW_AT_data_member_location),
            type_ref(unit, entry),
        ) else {
            continue;
        };
        members.push((String::from_utf8_lossy(name).into_owned(), offset, ty));
    }
    members
}

/// The element counts of the array entry `node`, one per `DW_TAG_subrange_type` (`None`
/// when a subrange does not say), stopping after the second: Go writes one (its arrays of
/// arrays are nested array types), and more dimensions are not followed.
fn subrange_counts(node: gimli::EntriesTreeNode<'_, '_, '_, Reader<'_>>) -> Vec<Option<u64>> {
    let mut counts = Vec::new();
    let mut children = node.children();
    while let Ok(Some(child)) = children.next() {
        let entry = child.entry();
        if entry.tag() != gimli::DW_TAG_subrange_type {
            continue;
        }
        counts.push(udata(entry, gimli::DW_AT_count).or_else(|| {
            let lower = udata(entry, gimli::DW_AT_lower_bound).unwrap_or(0);
            udata(entry, gimli::DW_AT_upper_bound)?
                .checked_sub(lower)?
                .checked_add(1)
        }));
        if counts.len() > 1 {
            break;
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, offset: u64, ty: u32) -> Member {
        Member {
            name: name.into(),
            offset,
            ty,
        }
    }

    /// `type Inner struct { n int32; mu sync.Mutex }` (16 bytes),
    /// `type Cfg struct { _ struct{}; mu sync.RWMutex; inner Inner; tail [3]Inner; p *int }`.
    fn names() -> DwarfNames {
        let types = vec![
            // 0: sync.Mutex
            TypeNode::Lock {
                size: Some(8),
                word: 0,
            },
            // 1: sync.RWMutex
            TypeNode::Lock {
                size: Some(24),
                word: 0,
            },
            // 2: int32
            TypeNode::Leaf { size: Some(4) },
            // 3: Inner
            TypeNode::Struct {
                size: Some(16),
                members: vec![member("n", 0, 2), member("mu", 8, 0)].into(),
            },
            // 4: [3]Inner
            TypeNode::Array {
                size: Some(48),
                elem: 3,
                count: Some(3),
            },
            // 5: Cfg
            TypeNode::Struct {
                size: Some(96),
                members: vec![
                    member("_", 0, 6),
                    member("mu", 0, 1),
                    member("inner", 24, 3),
                    member("tail", 40, 4),
                    member("p", 88, 7),
                ]
                .into(),
            },
            // 6: struct{}
            TypeNode::Struct {
                size: Some(0),
                members: Box::new([]),
            },
            // 7: *int, size unknown
            TypeNode::Leaf { size: None },
            // 8: a malformed struct containing itself at offset 0
            TypeNode::Struct {
                size: Some(8),
                members: vec![member("self", 0, 8)].into(),
            },
        ];
        let vars = [
            ("main.cfg", 5),
            ("main.mu", 0),
            ("main.loop", 8),
            ("main.bad", 9),
        ]
        .into_iter()
        .map(|(name, ty)| (Box::<str>::from(name), ty))
        .collect();
        // The function at 0x1000: `c *Cfg` in RAX over [0x1000, 0x1010) and in RDX (DWARF
        // 1) over [0x1020, 0x1030); `m *sync.Mutex` in RCX (2) over [0x1000, 0x1030).
        let cfg = PointerVar {
            type_name: "main.Cfg".into(),
            ty: 5,
            in_regs: vec![(0x1000, 0x1010, 0), (0x1020, 0x1030, 1)].into(),
            // Spilled to CFA-0x28 over [0x1010, 0x1020) (an unoptimized build's slot).
            in_frame: vec![(0x1010, 0x1020, -0x28)].into(),
        };
        let mutex = PointerVar {
            type_name: "sync.Mutex".into(),
            ty: 0,
            in_regs: vec![(0x1000, 0x1030, 2)].into(),
            in_frame: Box::new([]),
        };
        let functions = std::iter::once((0x1000, vec![cfg, mutex].into_boxed_slice())).collect();
        DwarfNames {
            vars,
            types,
            functions,
        }
    }

    /// A lock inside the struct a register variable points to is named by the struct's
    /// type and the field path; anything but the exact start of a lock, a pc or register
    /// where no such variable is, or a pointer to a lock itself names nothing.
    #[test]
    fn lock_members_of_pointer_variables() {
        let names = names();
        let at = |pc, reg, offset| names.lock_member(0x1000, pc, reg, offset);
        assert_eq!(at(0x1004, 0, 0).as_deref(), Some("main.Cfg.mu"));
        assert_eq!(at(0x1020, 1, 32).as_deref(), Some("main.Cfg.inner.mu"));
        assert_eq!(at(0x102f, 1, 80).as_deref(), Some("main.Cfg.tail[2].mu"));
        // Not the start of a lock: inside one, a non-lock field, padding, outside.
        assert_eq!(at(0x1004, 0, 4), None);
        assert_eq!(at(0x1004, 0, 24), None);
        assert_eq!(at(0x1004, 0, 28), None);
        assert_eq!(at(0x1004, 0, 96), None);
        assert_eq!(at(0x1004, 0, -8), None);
        // Wrong register, pc outside the ranges, unknown function.
        assert_eq!(at(0x1004, 1, 0), None);
        assert_eq!(at(0x1010, 0, 0), None);
        assert_eq!(names.lock_member(0x2000, 0x2004, 0, 0), None);
        // `m *sync.Mutex`: a pointer to the lock itself says nothing of its owner.
        assert_eq!(at(0x1004, 2, 0), None);
        // In its stack slot: only there, only over the slot's range.
        let in_frame = |pc, slot, offset| names.lock_member_in_frame(0x1000, pc, slot, offset);
        assert_eq!(
            in_frame(0x1014, -0x28, 32).as_deref(),
            Some("main.Cfg.inner.mu")
        );
        assert_eq!(in_frame(0x1014, -0x20, 32), None);
        assert_eq!(in_frame(0x1020, -0x28, 32), None);
        assert_eq!(in_frame(0x1014, -0x28, 28), None);
    }

    #[test]
    fn paths() {
        let names = names();
        let path = |symbol, offset| names.field_path(symbol, offset);
        assert_eq!(path("main.cfg", 0).as_deref(), Some("main.cfg.mu"));
        assert_eq!(path("main.cfg", 16).as_deref(), Some("main.cfg.mu"));
        assert_eq!(path("main.cfg", 24).as_deref(), Some("main.cfg.inner.n"));
        assert_eq!(path("main.cfg", 26).as_deref(), Some("main.cfg.inner.n"));
        // Padding between `n` and `mu`.
        assert_eq!(path("main.cfg", 28).as_deref(), Some("main.cfg.inner"));
        assert_eq!(path("main.cfg", 32).as_deref(), Some("main.cfg.inner.mu"));
        assert_eq!(path("main.cfg", 40).as_deref(), Some("main.cfg.tail[0].n"));
        assert_eq!(path("main.cfg", 72).as_deref(), Some("main.cfg.tail[2].n"));
        assert_eq!(path("main.cfg", 80).as_deref(), Some("main.cfg.tail[2].mu"));
        // `p`'s size is unknown: it runs to the end of the struct.
        assert_eq!(path("main.cfg", 95).as_deref(), Some("main.cfg.p"));
        assert_eq!(path("main.cfg", 96), None);
        assert_eq!(path("main.mu", 0).as_deref(), Some("main.mu"));
        assert_eq!(path("main.mu", 4).as_deref(), Some("main.mu"));
        assert_eq!(path("main.mu", 8), None);
        assert_eq!(path("main.nope", 0), None);
        // Bounded on a cycle; an unknown type answers for offset 0 only.
        let looped = path("main.loop", 0).expect("path");
        assert_eq!(looped.matches(".self").count(), MAX_DEPTH);
        assert_eq!(path("main.bad", 0).as_deref(), Some("main.bad"));
        assert_eq!(path("main.bad", 1), None);
    }

    #[test]
    fn not_an_elf_file() {
        assert!(DwarfNames::go(b"nope").is_none());
        assert_eq!(go_global_field_path(b"nope", "main.store", 0), None);
    }
}
