//! Locks as the report names them, and what kind they are.

use std::fmt;

use serde::{Serialize, Serializer};

/// A lock as the report names it. JSON: `{"addr":"0x7f12ab","name":"lock_a"}` (`name` null
/// when unknown).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LockRef {
    /// Address of the lock word in the target; JSON as a lowercase `"0x…"` string, because
    /// JSON numbers lose precision above 2^53 in many readers.
    #[serde(serialize_with = "hex")]
    pub addr: u64,
    /// Symbol name of the lock (e.g. a static's name), when known.
    pub name: Option<String>,
    /// Where the lock lies when it has no name: `object+offset` for a lock inside a
    /// mapped file's image (a stripped binary's static), `[stack]`, ...; none for heap
    /// and other anonymous memory, where only the address means something. Omitted
    /// from JSON when unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// The symbol table `name` was found in (`"symtab"`, `"debug_file"`, `"dynsym"`):
    /// whether a stripped object named it from what it exports or from its debug file.
    /// Omitted from JSON without a name, or when the name is not a native symbol's (a Go
    /// heap lock named by its type).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name_source: Option<NameSource>,
}

/// Serializes an address as a lowercase `0x…` string.
#[allow(clippy::trivially_copy_pass_by_ref)] // serde's `serialize_with` passes a reference.
fn hex<S: Serializer>(addr: &u64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&format_args!("{addr:#x}"))
}

impl fmt::Display for LockRef {
    /// `lock_a (0x55d0c0ffee10)` when the name is known, else `0x55d0c0ffee10`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name.as_ref().or(self.location.as_ref()) {
            Some(name) => write!(f, "{name} ({:#x})", self.addr),
            None => write!(f, "{:#x}", self.addr),
        }
    }
}

impl LockRef {
    /// The short label for tables: the name when known, else the location, else the
    /// address.
    #[must_use]
    pub fn label(&self) -> String {
        self.name
            .clone()
            .or_else(|| self.location.clone())
            .unwrap_or_else(|| format!("{:#x}", self.addr))
    }
}

/// Which table of a native object a name was found in. The order is the preference when
/// a symbol is in several: the object's own symbol table, then a separate debug file's
/// (which has what stripping removed), then the dynamic symbols alone (what a stripped
/// object keeps: exported symbols only).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NameSource {
    /// The object's own `.symtab`.
    Symtab,
    /// The `.symtab` of a separate debug file, found by build id or `.gnu_debuglink`
    /// (Debian's `-dbgsym` and `-dbg` packages install them under `/usr/lib/debug`).
    DebugFile,
    /// The object's `.dynsym` only (a stripped object's exported symbols).
    Dynsym,
}

impl NameSource {
    /// The name used in JSON and text: `symtab`, `debug_file`, `dynsym`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Symtab => "symtab",
            Self::DebugFile => "debug_file",
            Self::Dynsym => "dynsym",
        }
    }
}

/// What kind of lock the tracer saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum LockKind {
    /// A plain mutex (e.g. `pthread_mutex_t`).
    #[serde(rename = "mutex")]
    Mutex,
    /// A priority-inheritance mutex (`FUTEX_LOCK_PI`).
    #[serde(rename = "pi_mutex")]
    PiMutex,
    /// A reader-writer lock.
    #[serde(rename = "rwlock")]
    RwLock,
    /// A futex word not recognised as any of the above.
    #[serde(rename = "futex")]
    Futex,
    /// A Go `sync.Mutex`.
    #[serde(rename = "go_mutex")]
    GoMutex,
    /// A Go `sync.RWMutex`.
    #[serde(rename = "go_rwmutex")]
    GoRwMutex,
    /// A Rust `std::sync::Mutex` (its futex word; no owner is kept).
    #[serde(rename = "rust_mutex")]
    RustMutex,
    /// A Rust `std::sync::RwLock`.
    #[serde(rename = "rust_rwlock")]
    RustRwLock,
    /// A Rust `parking_lot::Mutex` (seen through its slow path).
    #[serde(rename = "parking_lot_mutex")]
    ParkingLotMutex,
    /// A Rust `parking_lot::RwLock` (seen through its slow paths).
    #[serde(rename = "parking_lot_rwlock")]
    ParkingLotRwLock,
}

impl LockKind {
    /// Every kind, for parsing a name back (`--type`).
    pub const ALL: [Self; 10] = [
        Self::Mutex,
        Self::PiMutex,
        Self::RwLock,
        Self::Futex,
        Self::GoMutex,
        Self::GoRwMutex,
        Self::RustMutex,
        Self::RustRwLock,
        Self::ParkingLotMutex,
        Self::ParkingLotRwLock,
    ];

    /// The kind named `name` (its JSON name, [`LockKind::as_str`]).
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// The name used in both JSON and text.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mutex => "mutex",
            Self::PiMutex => "pi_mutex",
            Self::RwLock => "rwlock",
            Self::Futex => "futex",
            Self::GoMutex => "go_mutex",
            Self::GoRwMutex => "go_rwmutex",
            Self::RustMutex => "rust_mutex",
            Self::RustRwLock => "rust_rwlock",
            Self::ParkingLotMutex => "parking_lot_mutex",
            Self::ParkingLotRwLock => "parking_lot_rwlock",
        }
    }
}

impl fmt::Display for LockKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a stuck lock is held.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HoldMode {
    /// Exclusively (a mutex, or an `RWMutex`'s write side).
    Write,
    /// Shared (an `RWMutex`'s readers).
    Read,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_kind_names() {
        for (kind, name) in [
            (LockKind::Mutex, "mutex"),
            (LockKind::PiMutex, "pi_mutex"),
            (LockKind::RwLock, "rwlock"),
            (LockKind::Futex, "futex"),
            (LockKind::RustMutex, "rust_mutex"),
            (LockKind::RustRwLock, "rust_rwlock"),
            (LockKind::ParkingLotMutex, "parking_lot_mutex"),
            (LockKind::ParkingLotRwLock, "parking_lot_rwlock"),
        ] {
            assert_eq!(serde_json::to_value(kind).expect("serializes"), name);
            assert_eq!(kind.to_string(), name);
        }
        for kind in LockKind::ALL {
            assert_eq!(LockKind::from_name(kind.as_str()), Some(kind));
        }
        assert_eq!(LockKind::from_name("spinlock"), None);
    }

    #[test]
    fn name_source_names_and_preference() {
        for (source, name) in [
            (NameSource::Symtab, "symtab"),
            (NameSource::DebugFile, "debug_file"),
            (NameSource::Dynsym, "dynsym"),
        ] {
            assert_eq!(serde_json::to_value(source).expect("serializes"), name);
            assert_eq!(source.as_str(), name);
        }
        let lock = LockRef {
            addr: 0x40,
            name: Some("exported_lock".into()),
            location: None,
            name_source: Some(NameSource::Dynsym),
        };
        assert_eq!(
            serde_json::to_value(&lock).expect("serializes"),
            serde_json::json!({"addr": "0x40", "name": "exported_lock", "name_source": "dynsym"})
        );
        let unnamed = LockRef {
            name: None,
            location: Some("prog+0x40".into()),
            name_source: None,
            ..lock
        };
        assert_eq!(
            serde_json::to_value(&unnamed).expect("serializes"),
            serde_json::json!({"addr": "0x40", "name": null, "location": "prog+0x40"})
        );
        assert!(NameSource::Symtab < NameSource::DebugFile);
        assert!(NameSource::DebugFile < NameSource::Dynsym);
    }
}
