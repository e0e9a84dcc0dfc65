#[path = "../../xtask/src/bench.rs"]
mod bench;
fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    bench::run(&args)
}
