//! `.go.buildinfo`: the Go version and main module a binary was built from.
use object::{Object as _, ObjectSection as _};

/// What `.go.buildinfo` says about a Go binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoBuildInfo {
    /// The toolchain version, e.g. `go1.25.5`.
    pub go_version: String,
    /// The main module's path (the `mod` line of the module info), if built in module
    /// mode.
    pub module_path: Option<String>,
}

const MAGIC: &[u8] = b"\xff Go buildinf:";
/// Magic, pointer size, flags, padding to 16, then (old format) two pointers.
const HEADER_SIZE: usize = 32;
/// Flag bit: version and module info follow the header as varint-prefixed strings
/// (Go 1.18+) rather than through pointers.
const FLAG_INLINE_STRINGS: u8 = 2;

/// Reads the Go version and main module from an ELF file's `.go.buildinfo` section (or,
/// if section headers are gone, from the 16-aligned blob with the build info magic).
/// Returns `None` for non-Go files and for the pre-1.18 pointer-based format.
#[must_use]
pub fn go_build_info(data: &[u8]) -> Option<GoBuildInfo> {
    let section = object::File::parse(data).ok().and_then(|file| {
        file.section_by_name(".go.buildinfo")
            .and_then(|s| s.data().ok())
    });
    let blob = if let Some(blob) = section {
        blob
    } else {
        // The linker aligns the blob to 16 bytes in the file and in memory.
        let start = (0..data.len())
            .step_by(16)
            .find(|&off| data.get(off..).is_some_and(|rest| rest.starts_with(MAGIC)))?;
        data.get(start..)?
    };
    parse(blob)
}

fn parse(blob: &[u8]) -> Option<GoBuildInfo> {
    if !blob.starts_with(MAGIC) || *blob.get(15)? & FLAG_INLINE_STRINGS == 0 {
        return None;
    }
    let (version, rest) = varint_string(blob.get(HEADER_SIZE..)?)?;
    let module_path = varint_string(rest).and_then(|(modinfo, _)| module_path(modinfo));
    Some(GoBuildInfo {
        go_version: String::from_utf8_lossy(version).into_owned(),
        module_path,
    })
}

/// A uvarint length followed by that many bytes.
fn varint_string(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut len = 0u64;
    let mut pos = 0;
    for shift in (0..64).step_by(7) {
        let byte = *data.get(pos)?;
        pos += 1;
        len |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            let end = pos.checked_add(usize::try_from(len).ok()?)?;
            return Some((data.get(pos..end)?, data.get(end..)?));
        }
    }
    None
}

/// The module path from the `mod\t<path>\t<version>` line. The info is framed by two
/// 16-byte sentinels (`cmd/go/internal/modload.infoStart`/`infoEnd`), as
/// `debug/buildinfo` strips them.
fn module_path(modinfo: &[u8]) -> Option<String> {
    if modinfo.len() < 33 || modinfo[modinfo.len() - 17] != b'\n' {
        return None;
    }
    let text = String::from_utf8_lossy(&modinfo[16..modinfo.len() - 16]).into_owned();
    text.lines()
        .find_map(|line| line.strip_prefix("mod\t"))
        .and_then(|rest| rest.split('\t').next())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_inline_format_and_rejects_garbage() {
        let mut blob = MAGIC.to_vec();
        blob.extend_from_slice(&[8, FLAG_INLINE_STRINGS]);
        blob.resize(HEADER_SIZE, 0);
        blob.push(8);
        blob.extend_from_slice(b"go1.25.5");
        let info = b"path\tex/a\nmod\tex/a\t(devel)\t\n";
        let mut framed = vec![b'x'; 16];
        framed.extend_from_slice(info);
        framed.extend_from_slice(&[b'y'; 16]);
        blob.push(u8::try_from(framed.len()).unwrap());
        blob.extend_from_slice(&framed);
        let got = parse(&blob).unwrap();
        assert_eq!(got.go_version, "go1.25.5");
        assert_eq!(got.module_path.as_deref(), Some("ex/a"));
        for cut in 0..blob.len() {
            let _ = parse(&blob[..cut]);
        }
        assert!(go_build_info(b"not a binary").is_none());
        // A huge length must not be trusted.
        let mut huge = blob[..HEADER_SIZE].to_vec();
        huge.extend_from_slice(&[0xff; 9]);
        huge.push(1);
        assert!(parse(&huge).is_none());
    }
}
