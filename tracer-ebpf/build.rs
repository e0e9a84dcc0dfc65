//! Rebuild when the `bpf-linker` on PATH changes: building this crate depends on that
//! binary, which cargo cannot see as a dependency.
fn main() {
    if let Ok(linker) = which::which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", linker.display());
    }
}
