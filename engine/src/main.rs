//! weftd: the weft dataplane daemon. The data path lands with issue 3.
#![deny(unsafe_code)]

fn main() {
    eprintln!("weftd: the dataplane is not built yet");
    std::process::exit(1);
}
