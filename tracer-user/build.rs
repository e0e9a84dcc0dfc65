//! Builds `tracer-ebpf` for the BPF target and leaves the object in `OUT_DIR`, where
//! `src/probes.rs` embeds it with `include_bytes_aligned!`.
//!
//! The toolchain is rustup's `nightly` (with `rust-src`, so aya-build passes
//! `-Z build-std=core`). `cargo xtask setup` may instead link Debian's `rustc-web`
//! (which ships a prebuilt `core` for `bpfel-unknown-none`) as the rustup toolchain
//! `tracer-bpf` and set `TRACER_BPF_TOOLCHAIN=tracer-bpf` in `.cargo/config.toml`.
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=TRACER_BPF_TOOLCHAIN");
    let toolchain_name = std::env::var("TRACER_BPF_TOOLCHAIN").ok();
    let toolchain = match toolchain_name.as_deref() {
        None | Some("" | "nightly") => Toolchain::Nightly,
        Some(name) => Toolchain::Custom(name),
    };
    let ebpf = Package {
        name: "tracer-ebpf",
        root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../tracer-ebpf"),
        ..Default::default()
    };
    aya_build::build_ebpf([ebpf], toolchain)
}
