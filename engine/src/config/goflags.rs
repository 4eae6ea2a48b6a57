//! flanneld's command-line syntax, as Go's `flag` package and klog parse it, turned into the
//! GNU-style arguments clap parses.
//!
//! Contract ([`normalize`]):
//! - Go takes `-name`, `--name`, `-name=value`, `--name=value` and `-name value` (the last not
//!   for booleans) alike. Every single-dash argument whose name (before `=`) is one of weftd's
//!   long flags becomes its `--` form, and so does any other single-dash name longer than one
//!   letter (so clap's error names `--no-such-flag` whole); short flags (`-h`, `-V`, `-v`,
//!   `-vv`) stay as they are.
//! - klog's verbosity `-v=N`, `--v=N`, `-v N` and `--v N` (N a number) become `--v=N`
//!   ([`klog_level`] maps it to a log level); a bare `-v` stays weft's "debug".
//! - The value of a flag that takes one (`-etcd-endpoints -x`) is passed on untouched, as Go
//!   would, and so is everything after `--`. Nothing is dropped or invented: clap still judges
//!   every argument, so an unknown flag is still an error naming it.
//! - [`parse_go_bool`] reads booleans as Go's `strconv.ParseBool` does, for flags and for
//!   `FLANNELD_*` variables alike.

use std::ffi::{OsStr, OsString};

/// Rewrites flanneld-style arguments (the program name first) for clap. `flags` lists weftd's
/// long flags as `(name, takes_a_separate_value)`.
pub fn normalize<I>(args: I, flags: &[(String, bool)]) -> Vec<OsString>
where
    I: IntoIterator,
    I::Item: Into<OsString>,
{
    let mut args = args.into_iter().map(Into::into);
    let mut out: Vec<OsString> = args.next().into_iter().collect();
    let known = |name: &str| flags.iter().find(|(n, _)| n == name);
    while let Some(arg) = args.next() {
        let Some(text) = arg.to_str() else {
            out.push(arg);
            continue;
        };
        if text == "--" {
            out.push(arg);
            out.extend(args.by_ref());
            break;
        }
        let body = match text.strip_prefix("--").or_else(|| text.strip_prefix('-')) {
            Some(body) if !body.is_empty() => body,
            _ => {
                out.push(arg);
                continue;
            }
        };
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        if name == "v" {
            match value {
                Some(v) => out.push(format!("--v={v}").into()),
                None => match args.next() {
                    Some(next) if is_number(&next) => {
                        let mut level = OsString::from("--v=");
                        level.push(&next);
                        out.push(level);
                    }
                    // A bare -v: weft's own "debug" (klog's -v always has a value).
                    Some(next) => {
                        out.push("-v".into());
                        out.push(next);
                    }
                    None => out.push("-v".into()),
                },
            }
            continue;
        }
        match known(name) {
            // Go takes the next argument as the value, whatever it looks like.
            Some((_, true)) if value.is_none() => match args.next() {
                Some(next) => {
                    let mut joined = OsString::from(format!("--{name}="));
                    joined.push(&next);
                    out.push(joined);
                }
                None => out.push(format!("--{name}").into()),
            },
            Some(_) => out.push(format!("--{body}").into()),
            // An unknown long name with one dash: clap then names it whole, as Go does
            // ("flag provided but not defined"), instead of as a cluster of short flags.
            None if !text.starts_with("--")
                && name.len() > 1
                && !name.bytes().all(|b| b == b'v') =>
            {
                out.push(format!("-{text}").into());
            }
            None => out.push(arg),
        }
    }
    out
}

fn is_number(s: &OsStr) -> bool {
    s.to_str()
        .is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
}

/// A boolean as Go's `strconv.ParseBool` reads it: `1 t T TRUE true True` and
/// `0 f F FALSE false False`.
pub fn parse_go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!(
            "{s:?} is not a boolean; expected one of 1 t T TRUE true True 0 f F FALSE false False"
        )),
    }
}

/// The log level of klog's verbosity `N` (`-v=N`): 0 info, 1 to 3 debug, 4 and up trace.
/// flanneld logs its routine details at V(2) to V(4).
pub fn klog_level(v: u32) -> &'static str {
    match v {
        0 => "info",
        1..=3 => "debug",
        _ => "trace",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn flags() -> Vec<(String, bool)> {
        [
            ("etcd-endpoints", true),
            ("ip-masq", false),
            ("iface", true),
            ("help", false),
            ("version", false),
        ]
        .iter()
        .map(|(n, v)| ((*n).to_owned(), *v))
        .collect()
    }

    fn norm(args: &[&str]) -> Vec<String> {
        let all = std::iter::once("weftd").chain(args.iter().copied());
        normalize(all, &flags())
            .into_iter()
            .skip(1)
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn single_dash_long_flags_become_double_dash() {
        assert_eq!(
            norm(&["-etcd-endpoints=http://a:2379", "-ip-masq"]),
            ["--etcd-endpoints=http://a:2379", "--ip-masq"]
        );
        assert_eq!(
            norm(&["-etcd-endpoints", "http://a:2379", "--ip-masq=true"]),
            ["--etcd-endpoints=http://a:2379", "--ip-masq=true"]
        );
        assert_eq!(norm(&["-help"]), ["--help"]);
        assert_eq!(norm(&["-version"]), ["--version"]);
    }

    #[test]
    fn a_value_is_taken_as_go_takes_it() {
        // The next argument is the value even when it looks like a flag.
        assert_eq!(norm(&["-iface", "-v"]), ["--iface=-v"]);
        assert_eq!(norm(&["--iface", "eth0", "-v"]), ["--iface=eth0", "-v"]);
        // A boolean takes no separate value: `false` stays an argument (clap rejects it).
        assert_eq!(norm(&["-ip-masq", "false"]), ["--ip-masq", "false"]);
    }

    #[test]
    fn klog_verbosity() {
        assert_eq!(norm(&["-v=2"]), ["--v=2"]);
        assert_eq!(norm(&["--v=4"]), ["--v=4"]);
        assert_eq!(norm(&["-v", "3"]), ["--v=3"]);
        assert_eq!(norm(&["-v"]), ["-v"]);
        assert_eq!(norm(&["-v", "-ip-masq"]), ["-v", "-ip-masq"]);
        assert_eq!(norm(&["-vv"]), ["-vv"]);
        assert_eq!(klog_level(0), "info");
        assert_eq!(klog_level(2), "debug");
        assert_eq!(klog_level(10), "trace");
    }

    #[test]
    fn unknown_and_positional_arguments_pass_unchanged() {
        assert_eq!(norm(&["-no-such-flag=1"]), ["--no-such-flag=1"]);
        assert_eq!(norm(&["--no-such-flag"]), ["--no-such-flag"]);
        assert_eq!(norm(&["-x", "-vvv"]), ["-x", "-vvv"]);
        assert_eq!(norm(&["stray", "-", "--"]), ["stray", "-", "--"]);
        assert_eq!(norm(&["--", "-ip-masq"]), ["--", "-ip-masq"]);
    }

    #[test]
    fn go_booleans() {
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_go_bool(t), Ok(true), "{t}");
        }
        for f in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_go_bool(f), Ok(false), "{f}");
        }
        for bad in ["", "yes", "tRuE", "2", "on"] {
            assert!(parse_go_bool(bad).is_err(), "{bad}");
        }
    }
}
