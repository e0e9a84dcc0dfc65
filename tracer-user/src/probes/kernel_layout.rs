//! Where a member lies in one of the running kernel's structures, from its BTF (the
//! bytes of `/sys/kernel/btf/vmlinux`): the offsets the eBPF programs are given before
//! load for what they read with `bpf_probe_read_kernel` (Rust eBPF has no CO-RE
//! relocations). Pure: bytes in, offset out; the file is read by the caller.
//!
//! The format is the kernel's `Documentation/bpf/btf.rst`: a header, then the type
//! section (type ids from 1, each a 12-byte common part and its kind's data) and the
//! string section.

/// Why a member's offset could not be found.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KernelLayoutError {
    #[error("the kernel's BTF has no BTF header")]
    NotBtf,
    #[error("the kernel's BTF is cut short")]
    Truncated,
    #[error("the kernel's BTF has a type of unknown kind {0}")]
    UnknownKind(u32),
    #[error("the kernel's BTF has no struct {0}")]
    NoStruct(&'static str),
    #[error("the kernel's struct {container} has no member {member}")]
    NoMember {
        container: &'static str,
        member: &'static str,
    },
    #[error("the kernel's {member} is not a struct to look into")]
    NotAStruct { member: &'static str },
    #[error("the kernel's {member} is not a whole {size}-byte integer")]
    NotAnInteger { member: &'static str, size: u32 },
}

const BTF_MAGIC: u16 = 0xeb9f;
const HEADER_BYTES: usize = 24;

const KIND_INT: u32 = 1;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;
/// The highest kind this reader knows the size of.
const KIND_MAX: u32 = 19;

/// One type of the type section.
#[derive(Clone, Copy, Debug)]
struct Type {
    kind: u32,
    name_off: u32,
    /// `size` or `type` (the id of the type it refers to), by kind.
    size_or_ref: u32,
    /// `kind_flag`: members' offsets carry a bitfield size.
    kind_flag: bool,
    /// Number of members (structs and unions).
    vlen: usize,
    /// Where the kind's data starts in the type section.
    data: usize,
}

/// A member of a struct or union: its name, type id and offset in bits.
struct Member<'a> {
    name: &'a [u8],
    type_id: u32,
    bits: u32,
}

/// The kernel's BTF, indexed by type id.
struct KernelBtf<'a> {
    types: Vec<Type>,
    type_section: &'a [u8],
    strings: &'a [u8],
}

fn u32_at(bytes: &[u8], at: usize) -> Result<u32, KernelLayoutError> {
    let word = bytes.get(at..at + 4).ok_or(KernelLayoutError::Truncated)?;
    Ok(u32::from_le_bytes([word[0], word[1], word[2], word[3]]))
}

fn section(bytes: &[u8], off: u32, len: u32) -> Result<&[u8], KernelLayoutError> {
    let start = HEADER_BYTES
        .checked_add(off as usize)
        .ok_or(KernelLayoutError::Truncated)?;
    let end = start
        .checked_add(len as usize)
        .ok_or(KernelLayoutError::Truncated)?;
    bytes.get(start..end).ok_or(KernelLayoutError::Truncated)
}

impl<'a> KernelBtf<'a> {
    fn parse(bytes: &'a [u8]) -> Result<Self, KernelLayoutError> {
        let magic = bytes
            .get(..2)
            .map(|m| u16::from_le_bytes([m[0], m[1]]))
            .ok_or(KernelLayoutError::NotBtf)?;
        if magic != BTF_MAGIC || u32_at(bytes, 4)? as usize != HEADER_BYTES {
            return Err(KernelLayoutError::NotBtf);
        }
        let type_section = section(bytes, u32_at(bytes, 8)?, u32_at(bytes, 12)?)?;
        let strings = section(bytes, u32_at(bytes, 16)?, u32_at(bytes, 20)?)?;
        let mut types = Vec::new();
        let mut at = 0;
        while at < type_section.len() {
            let info = u32_at(type_section, at + 4)?;
            let kind = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as usize;
            let data = at + 12;
            let data_len = match kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                KIND_ARRAY => 12,
                KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => 12 * vlen,
                KIND_ENUM | KIND_FUNC_PROTO => 8 * vlen,
                kind if kind == 0 || kind > KIND_MAX => {
                    return Err(KernelLayoutError::UnknownKind(kind));
                }
                _ => 0,
            };
            types.push(Type {
                kind,
                name_off: u32_at(type_section, at)?,
                size_or_ref: u32_at(type_section, at + 8)?,
                kind_flag: info >> 31 != 0,
                vlen,
                data,
            });
            at = data + data_len;
        }
        if at != type_section.len() {
            return Err(KernelLayoutError::Truncated);
        }
        Ok(Self {
            types,
            type_section,
            strings,
        })
    }

    fn name(&self, name_off: u32) -> &[u8] {
        let tail = self.strings.get(name_off as usize..).unwrap_or_default();
        let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
        &tail[..end]
    }

    /// Type `id` (ids start at 1; 0 is `void`).
    fn get(&self, id: u32) -> Option<&Type> {
        self.types.get((id as usize).checked_sub(1)?)
    }

    /// Type `id` with typedefs and qualifiers looked through.
    fn resolve(&self, mut id: u32) -> Option<&Type> {
        // A chain longer than this is a loop in broken BTF.
        for _ in 0..32 {
            let ty = self.get(id)?;
            match ty.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = ty.size_or_ref;
                }
                _ => return Some(ty),
            }
        }
        None
    }

    /// The members of struct or union `ty`.
    fn members(&self, ty: &Type) -> Result<Vec<Member<'_>>, KernelLayoutError> {
        (0..ty.vlen)
            .map(|i| {
                let at = ty.data + 12 * i;
                let offset = u32_at(self.type_section, at + 8)?;
                let bits = if ty.kind_flag {
                    offset & 0x00ff_ffff
                } else {
                    offset
                };
                Ok(Member {
                    name: self.name(u32_at(self.type_section, at)?),
                    type_id: u32_at(self.type_section, at + 4)?,
                    bits,
                })
            })
            .collect()
    }

    /// Member `name` of struct or union `ty`, looking into its anonymous members: its
    /// offset in bits from the start of `ty`, and its type id.
    fn member(
        &self,
        ty: &Type,
        name: &str,
        depth: u32,
    ) -> Result<Option<(u64, u32)>, KernelLayoutError> {
        for Member {
            name: member_name,
            type_id,
            bits,
        } in self.members(ty)?
        {
            if member_name == name.as_bytes() {
                return Ok(Some((u64::from(bits), type_id)));
            }
            let anonymous_aggregate = member_name.is_empty()
                && depth < 8
                && self
                    .resolve(type_id)
                    .is_some_and(|t| matches!(t.kind, KIND_STRUCT | KIND_UNION));
            if anonymous_aggregate
                && let Some(inner) = self.resolve(type_id)
                && let Some((inner_bits, found)) = self.member(inner, name, depth + 1)?
            {
                return Ok(Some((u64::from(bits) + inner_bits, found)));
            }
        }
        Ok(None)
    }
}

/// The byte offset of the member at `path` (member names, each in the one before) in
/// the kernel's struct `container`, which must be a whole integer of `size` bytes; from
/// `btf`, the bytes of the kernel's BTF.
pub(super) fn member_offset(
    btf: &[u8],
    container: &'static str,
    path: &[&'static str],
    size: u32,
) -> Result<u64, KernelLayoutError> {
    let btf = KernelBtf::parse(btf)?;
    // A forward declaration has no members: the definition is the struct with some.
    let mut ty = btf
        .types
        .iter()
        .find(|t| {
            t.kind == KIND_STRUCT && t.vlen > 0 && btf.name(t.name_off) == container.as_bytes()
        })
        .ok_or(KernelLayoutError::NoStruct(container))?;
    let mut within = container;
    let mut bits = 0;
    for (i, &name) in path.iter().enumerate() {
        let (member_bits, type_id) =
            btf.member(ty, name, 0)?
                .ok_or(KernelLayoutError::NoMember {
                    container: within,
                    member: name,
                })?;
        bits += member_bits;
        let member_type = btf.resolve(type_id);
        if i + 1 == path.len() {
            let whole = member_type.is_some_and(|t| t.kind == KIND_INT && t.size_or_ref == size);
            if !whole || bits % 8 != 0 {
                return Err(KernelLayoutError::NotAnInteger { member: name, size });
            }
        } else {
            ty = member_type
                .filter(|t| matches!(t.kind, KIND_STRUCT | KIND_UNION))
                .ok_or(KernelLayoutError::NotAStruct { member: name })?;
            within = name;
        }
    }
    Ok(bits / 8)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A little BTF blob, built as the kernel lays it out.
    #[derive(Default)]
    struct Builder {
        types: Vec<u8>,
        strings: Vec<u8>,
        next_id: u32,
    }

    impl Builder {
        fn new() -> Self {
            Self {
                strings: vec![0],
                next_id: 1,
                ..Self::default()
            }
        }

        fn string(&mut self, s: &str) -> u32 {
            if s.is_empty() {
                return 0;
            }
            let off = u32::try_from(self.strings.len()).unwrap();
            self.strings.extend_from_slice(s.as_bytes());
            self.strings.push(0);
            off
        }

        fn common(
            &mut self,
            name: &str,
            kind: u32,
            vlen: u32,
            kind_flag: bool,
            size_or_ref: u32,
        ) -> u32 {
            let name_off = self.string(name);
            let info = (u32::from(kind_flag) << 31) | (kind << 24) | vlen;
            for word in [name_off, info, size_or_ref] {
                self.types.extend_from_slice(&word.to_le_bytes());
            }
            self.next_id += 1;
            self.next_id - 1
        }

        fn int(&mut self, name: &str, size: u32) -> u32 {
            let id = self.common(name, KIND_INT, 0, false, size);
            self.types.extend_from_slice(&(size * 8).to_le_bytes());
            id
        }

        fn typedef(&mut self, name: &str, to: u32) -> u32 {
            self.common(name, KIND_TYPEDEF, 0, false, to)
        }

        fn aggregate(
            &mut self,
            kind: u32,
            name: &str,
            size: u32,
            members: &[(&str, u32, u32)],
        ) -> u32 {
            let id = self.common(
                name,
                kind,
                u32::try_from(members.len()).unwrap(),
                false,
                size,
            );
            for &(member, ty, bits) in members {
                let name_off = self.string(member);
                for word in [name_off, ty, bits] {
                    self.types.extend_from_slice(&word.to_le_bytes());
                }
            }
            id
        }

        fn finish(self) -> Vec<u8> {
            let mut out = Vec::new();
            out.extend_from_slice(&BTF_MAGIC.to_le_bytes());
            out.extend_from_slice(&[1, 0]);
            let type_len = u32::try_from(self.types.len()).unwrap();
            let str_len = u32::try_from(self.strings.len()).unwrap();
            for word in [24, 0, type_len, type_len, str_len] {
                out.extend_from_slice(&u32::to_le_bytes(word));
            }
            out.extend_from_slice(&self.types);
            out.extend_from_slice(&self.strings);
            out
        }
    }

    /// A kernel-like layout: `task_struct.se.sum_exec_runtime` through a typedef, a
    /// forward declaration of `task_struct` before its definition, an anonymous union.
    fn kernel_like() -> Vec<u8> {
        let mut b = Builder::new();
        let ull = b.int("long long unsigned int", 8);
        let u64_ = b.typedef("u64", ull);
        let int = b.int("int", 4);
        b.common("task_struct", 7, 0, false, 0);
        let se = b.aggregate(
            KIND_STRUCT,
            "sched_entity",
            256,
            &[
                ("exec_start", u64_, 768),
                ("sum_exec_runtime", u64_, 832),
                ("nr", int, 896),
            ],
        );
        let anon = b.aggregate(KIND_UNION, "", 8, &[("flags", u64_, 0), ("bits", ull, 0)]);
        b.aggregate(
            KIND_STRUCT,
            "task_struct",
            3264,
            &[("__state", int, 0), ("", anon, 64), ("se", se, 1024)],
        );
        b.finish()
    }

    #[test]
    fn finds_a_nested_members_byte_offset_through_typedefs() {
        let btf = kernel_like();
        assert_eq!(
            member_offset(&btf, "task_struct", &["se", "sum_exec_runtime"], 8),
            Ok(232)
        );
        assert_eq!(member_offset(&btf, "task_struct", &["flags"], 8), Ok(8));
    }

    #[test]
    fn a_missing_or_mistyped_member_is_an_error_not_an_offset() {
        let btf = kernel_like();
        assert_eq!(
            member_offset(&btf, "task_struct", &["se", "vruntime"], 8),
            Err(KernelLayoutError::NoMember {
                container: "se",
                member: "vruntime"
            })
        );
        assert_eq!(
            member_offset(&btf, "task_struct", &["se", "nr"], 8),
            Err(KernelLayoutError::NotAnInteger {
                member: "nr",
                size: 8
            })
        );
        assert_eq!(
            member_offset(&btf, "task_struct", &["__state", "x"], 8),
            Err(KernelLayoutError::NotAStruct { member: "__state" })
        );
        assert_eq!(
            member_offset(&btf, "mm_struct", &["x"], 8),
            Err(KernelLayoutError::NoStruct("mm_struct"))
        );
    }

    #[test]
    fn bytes_that_are_not_whole_btf_are_refused() {
        let btf = kernel_like();
        assert_eq!(
            member_offset(&btf[..30], "task_struct", &["se"], 8),
            Err(KernelLayoutError::Truncated)
        );
        assert_eq!(
            member_offset(b"ELF", "task_struct", &["se"], 8),
            Err(KernelLayoutError::NotBtf)
        );
        let mut odd_kind = btf.clone();
        // The first type's kind, in the top byte of its `info`.
        odd_kind[24 + 7] = 30;
        assert_eq!(
            member_offset(&odd_kind, "task_struct", &["se"], 8),
            Err(KernelLayoutError::UnknownKind(30))
        );
    }
}
