//! The traced process, read from the outside.
pub mod procfs;
