//! Library target so `tracer-user` can list this crate as a build dependency (cargo
//! rebuilds the eBPF object when it changes); the programs live in the `tracer` binary.
#![no_std]
