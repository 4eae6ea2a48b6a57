//! weftctl: inspect and drive weft. The testbed, demo and bench harness land with issues 3-5.

fn main() {
    eprintln!("weftctl: not built yet");
    std::process::exit(1);
}
