//! Names of locks from a program's DWARF, shared by Go and Rust programs: the field path
//! of an address inside a global (`main.store.mu`), and the `Type.field` of a lock inside
//! a heap object, from the code that takes it (`main.Store.mu`,
//! `app::Store.hits`).
//!
//! - [`dwarf`]: global variables, the layouts of their types, and the variables of
//!   functions that point to structs, with the registers they are in.
//! - [`code`]: functions decoded with iced-x86, registers traced back to where their
//!   value came from, and the calls of `.text` to given functions.
//! - [`rust`]: the `Type.field` of Rust `std` locks in heap objects, keyed by the return
//!   address of the call to their contended slow path.
pub(crate) mod code;
pub mod dwarf;
pub mod rust;

pub use self::{
    dwarf::{DwarfNames, LockFlavor, go_global_field_path},
    rust::RustLockOwners,
};
