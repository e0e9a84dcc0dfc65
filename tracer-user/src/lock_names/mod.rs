//! Names of locks from a program's DWARF, shared by Go, Rust and C/C++ programs: the
//! field path of an address inside a global (`main.store.mu`), and the `Type.field` of a
//! lock inside a heap object, from the code that takes it (`main.Store.mu`,
//! `app::Store.hits`, `account.mu`).
//!
//! - [`dwarf`]: global variables, the layouts of their types, and the variables of
//!   functions that point to structs, with the registers or stack slots they are in.
//! - [`code`]: functions decoded with iced-x86, registers traced back to where their
//!   value came from, and the calls of `.text` to given functions.
//! - [`owners`]: the `Type.field` of the lock each call of given functions takes, keyed by
//!   the call's return address ([`LockOwners`]), for the calls [`rust`] and [`c`] choose:
//! - [`rust`]: the calls to the contended slow paths of Rust `std` locks;
//! - [`c`]: the calls to the C library's mutex and rwlock acquisitions.
pub mod c;
pub(crate) mod code;
pub mod dwarf;
pub mod owners;
pub mod rust;

pub use self::{
    dwarf::{DwarfNames, LockFlavor, go_global_field_path},
    owners::LockOwners,
};
