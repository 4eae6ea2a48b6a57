//! weftd: the weft dataplane daemon.
//!
//! The binary parses the flags ([`engine::config`], flanneld's syntax; bad values exit 2), sets
//! up logging on stderr and hands over to [`engine::daemon::run`], where start-up lives (static
//! mode and lease mode, in order); an error from it is printed as `weftd: error: ...` and exits
//! 1.
#![deny(unsafe_code)]

use std::process::ExitCode;

use engine::config::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse_flanneld();
    let ignored = cli.flanneld_only.ignored();
    let settings = match cli.resolve() {
        Ok(s) => s,
        Err(e) => e.exit(),
    };
    init_logging(settings.log_level);
    for flag in ignored {
        tracing::warn!("{flag} (a klog flag of flanneld's) is ignored: use -v=N or RUST_LOG");
    }
    match engine::daemon::run(&settings) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("weftd: error: {}", describe(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each cause only when the message so far does not already say it
/// (engine's errors put their source in their own message).
fn describe(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if text.is_empty() {
            text = part;
        } else if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
    }
    text
}

fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
}
