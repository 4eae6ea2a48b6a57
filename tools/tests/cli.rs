//! Issue 6, command line and environment: every invalid value of every weftd flag, given as
//! the flag and as its `FLANNELD_<NAME>` variable, makes weftd exit with code 2 and a message
//! naming the flag, and leaves nothing behind: weftd runs in a fresh network namespace, and
//! after each failed start the namespace holds no interface but `lo`, no iptables rule, no
//! control socket and no subnet file.
//!
//! A valid start in the same namespace (which does create the TUN) proves the checks can see
//! what they look for. Every flag of `weftd --help` but `-v` and `--etcd-prefix` (any string
//! is a valid prefix, as for flanneld) must have at least one case here.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::CommandFactory;
use weftctl::require_root;
use weftctl::testbed::Netns;

/// How long a rejected start may take (it must exit before doing anything).
const EXIT_WAIT: Duration = Duration::from_secs(10);
/// Flags that take no value.
const SWITCHES: [&str; 2] = ["ip-masq", "allow-foreign-inner-source"];
/// Flags without a case, and why.
const NO_INVALID_VALUE: [&str; 2] = ["etcd-prefix", "verbose"];

/// Which base command line a case starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `--backend udp --public-ip 127.0.0.1 --subnet ... --peers FILE` (static mode).
    Static,
    /// `--public-ip 127.0.0.1 --lease-dir DIR` (lease mode, directory store).
    Lease,
    /// `--public-ip 127.0.0.1` (lease mode, etcd).
    Etcd,
}

/// One invalid value.
struct Case {
    mode: Mode,
    /// The flag, without `--`.
    flag: &'static str,
    value: String,
    /// Further flags the case needs (given as flags in both forms).
    extra: Vec<String>,
    /// Base flags to leave out.
    without: &'static [&'static str],
}

struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn s(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }
}

fn cases(x: &Scratch) -> Vec<Case> {
    use Mode::*;
    let file = x.s("a-file");
    let dir = x.s("a-dir");
    let under_file = format!("{file}/below");
    let c = |mode, flag, value: &str| Case {
        mode,
        flag,
        value: value.to_owned(),
        extra: Vec::new(),
        without: &[],
    };
    let mut v = Vec::new();
    for value in ["gre", ""] {
        v.push(c(Static, "backend", value));
    }
    for value in ["1.2.3", "0.0.0.0", "224.0.0.1", "192.0.2.77", "x"] {
        v.push(c(Static, "public-ip", value));
    }
    v.push(c(Lease, "public-ip", "::1"));
    v.push(c(Static, "iface", ""));
    v.push(Case {
        without: &["public-ip"],
        ..c(Static, "iface", "wft-no-such-if")
    });
    for value in ["(unclosed", "^wft-no-such-if$"] {
        v.push(Case {
            without: &["public-ip"],
            ..c(Static, "iface-regex", value)
        });
    }
    for value in ["0", "70000", "-1", "x"] {
        v.push(c(Static, "port", value));
    }
    for value in [
        "10.244.1.0/33",
        "x",
        "fd00::/64",
        "10.245.1.0/24",
        "10.244.1.1/24",
    ] {
        v.push(c(Static, "subnet", value));
    }
    for value in ["10.0.0.0/8", "x", "fd00:10:245:1::/64"] {
        v.push(Case {
            extra: vec!["--network6".into(), "fd00:10:244::/48".into()],
            ..c(Static, "subnet6", value)
        });
    }
    for value in ["10.244.0.1/16", "x", "fd00::/48", "10.245.0.0/16"] {
        v.push(c(Static, "network", value));
    }
    for value in ["10.0.0.0/8", "x", "fd00::1/48"] {
        v.push(c(Static, "network6", value));
    }
    for value in [x.s("no-such-peers"), dir.clone()] {
        v.push(c(Static, "peers", &value));
    }
    for value in ["a/b", "", "0123456789abcdef", "lo", "a b"] {
        v.push(c(Static, "tun-name", value));
    }
    for value in ["16777216", "-1", "x"] {
        v.push(c(Static, "vni", value));
    }
    for value in [
        "01:00:00:00:00:01",
        "00:00:00:00:00:00",
        "nope",
        "0e:00:00:00:00",
    ] {
        v.push(c(Static, "vtep-mac", value));
    }
    for value in ["20", "67", "70000", "x"] {
        v.push(c(Static, "mtu", value));
    }
    for value in ["epoll", ""] {
        v.push(c(Static, "io-driver", value));
    }
    for value in ["0", "257", "x"] {
        v.push(c(Static, "pump-threads", value));
    }
    for value in [dir.clone(), under_file.clone()] {
        v.push(c(Static, "control", &value));
    }
    for value in ["x", "192.0.2.7"] {
        v.push(Case {
            extra: vec!["--healthz-port".into(), "9000".into()],
            ..c(Static, "healthz-ip", value)
        });
    }
    for value in ["70000", "-1", "x"] {
        v.push(c(Static, "healthz-port", value));
    }
    // Switches: a value that is not a boolean; --ip-masq outside lease mode.
    v.push(c(Static, "allow-foreign-inner-source", "maybe"));
    v.push(c(Lease, "ip-masq", "maybe"));
    v.push(c(Static, "ip-masq", "true"));
    for value in [file.clone(), String::new()] {
        v.push(c(Lease, "lease-dir", &value));
    }
    for value in [dir.clone(), under_file.clone()] {
        v.push(c(Lease, "subnet-file", &value));
    }
    for value in ["0", "1440", "x"] {
        v.push(c(Lease, "subnet-lease-renew-margin", value));
    }
    for value in ["0", "x"] {
        v.push(c(Lease, "iptables-resync", value));
    }
    for value in ["not a url", "ftp://127.0.0.1:2379", "http://", "", " , "] {
        v.push(c(Etcd, "etcd-endpoints", value));
    }
    for value in [x.s("no-such-ca"), dir.clone()] {
        v.push(c(Etcd, "etcd-cafile", &value));
    }
    v.push(c(Etcd, "etcd-certfile", &file));
    v.push(Case {
        extra: vec!["--etcd-keyfile".into(), file.clone()],
        ..c(Etcd, "etcd-certfile", &x.s("no-such-cert"))
    });
    v.push(c(Etcd, "etcd-keyfile", &file));
    v.push(Case {
        extra: vec!["--etcd-certfile".into(), file.clone()],
        ..c(Etcd, "etcd-keyfile", &dir)
    });
    v.push(c(Etcd, "etcd-username", "root"));
    v.push(c(Etcd, "etcd-password", "secret"));
    v
}

/// The base command line of `mode`, as (flag, value) pairs.
fn base(mode: Mode, x: &Scratch) -> Vec<(&'static str, String)> {
    let mut b = vec![
        ("public-ip", "127.0.0.1".to_owned()),
        ("control", x.s("ctl.sock")),
        ("tun-name", "wftcli0".to_owned()),
        ("healthz-port", "0".to_owned()),
    ];
    match mode {
        Mode::Static => b.extend([
            ("backend", "udp".to_owned()),
            ("subnet", "10.244.1.0/24".to_owned()),
            ("network", "10.244.0.0/16".to_owned()),
            ("peers", x.s("peers")),
        ]),
        Mode::Lease => b.extend([
            ("lease-dir", x.s("leases")),
            ("subnet-file", x.s("subnet.env")),
        ]),
        Mode::Etcd => b.push(("subnet-file", x.s("subnet.env"))),
    }
    b
}

fn env_name(flag: &str) -> String {
    format!("FLANNELD_{}", flag.replace('-', "_").to_uppercase())
}

/// Runs weftd in `ns`; returns (exit code, stderr), or an error when it is still running
/// after [`EXIT_WAIT`] (killed: it accepted the value).
fn run(
    ns: &Netns,
    weftd: &Path,
    args: &[String],
    env: Option<(String, String)>,
) -> Result<(i32, String), String> {
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut cmd: Command = ns.command(weftd.to_str().expect("UTF-8 path"), &argv);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("FLANNELD_") {
            cmd.env_remove(k);
        }
    }
    if let Some((k, v)) = env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("starting weftd: {e}"))?;
    let deadline = Instant::now() + EXIT_WAIT;
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            let mut err = String::new();
            if let Some(mut s) = child.stderr.take() {
                std::io::Read::read_to_string(&mut s, &mut err).ok();
            }
            return Ok((status.code().unwrap_or(-1), err));
        }
        if Instant::now() >= deadline {
            child.kill().ok();
            child.wait().ok();
            return Err(format!(
                "still running after {EXIT_WAIT:?}: the value was accepted"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What a failed start may have left in the namespace and the scratch directory.
fn leftovers(ns: &Netns, x: &Scratch) -> Vec<String> {
    let mut left = Vec::new();
    let links = ns
        .exec_checked("ip", &["-o", "link", "show"])
        .unwrap_or_default();
    for line in links.lines() {
        let name = line.split(':').nth(1).map(str::trim).unwrap_or("");
        if name != "lo" {
            left.push(format!("interface {name}"));
        }
    }
    for table in ["filter", "nat"] {
        if let Ok(rules) = ns.exec_checked("iptables", &["-t", table, "-S"]) {
            for rule in rules.lines().filter(|l| l.contains("FLANNEL")) {
                left.push(format!("iptables -t {table}: {rule}"));
            }
        }
    }
    for file in ["ctl.sock", "subnet.env"] {
        if x.path(file).exists() {
            left.push(format!("file {}", x.s(file)));
        }
    }
    left
}

#[test]
fn every_invalid_flag_value_exits_2_and_leaves_nothing() {
    require_root!();
    let weftd = weftctl::testbed::Binaries::weftd_near(&std::env::current_exe().expect("exe"))
        .expect("no weftd next to the test: run `cargo build -p engine --bins`");
    let x = Scratch {
        dir: tempfile::tempdir().expect("tempdir"),
    };
    std::fs::write(x.path("a-file"), "not a directory\n").expect("a-file");
    std::fs::create_dir(x.path("a-dir")).expect("a-dir");
    std::fs::write(x.path("peers"), "").expect("peers");
    let ns = Netns::create(&format!(
        "{}{}-cli",
        weftctl::testbed::netns::PREFIX,
        std::process::id()
    ))
    .expect("namespace");

    // The positive control: a valid start creates the TUN and the control socket, which the
    // leftover check sees; SIGTERM removes them again.
    let args: Vec<String> = base(Mode::Static, &x)
        .into_iter()
        .flat_map(|(f, v)| [format!("--{f}"), v])
        .collect();
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut good = ns
        .command(weftd.to_str().expect("UTF-8"), &argv)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting a valid weftd");
    let deadline = Instant::now() + Duration::from_secs(10);
    while leftovers(&ns, &x).len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let seen = leftovers(&ns, &x);
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(good.id() as i32).expect("pid"),
        rustix::process::Signal::TERM,
    )
    .ok();
    let status = good.wait().expect("valid weftd exit");
    assert!(
        seen.iter().any(|l| l == "interface wftcli0")
            && seen.iter().any(|l| l.contains("ctl.sock")),
        "a valid start must show its TUN and control socket to the check: {seen:?}"
    );
    assert!(status.success(), "valid weftd: {status}");
    assert!(
        leftovers(&ns, &x).is_empty(),
        "after SIGTERM: {:?}",
        leftovers(&ns, &x)
    );

    let all = cases(&x);
    let mut failures = Vec::new();
    let mut covered = BTreeSet::new();
    for case in &all {
        covered.insert(case.flag);
        let base_args: Vec<String> = base(case.mode, &x)
            .into_iter()
            .filter(|(f, _)| {
                *f != case.flag
                    && !case.without.contains(f)
                    && !case.extra.contains(&format!("--{f}"))
            })
            .flat_map(|(f, v)| [format!("--{f}"), v])
            .collect();
        let flag = format!("--{}", case.flag);
        let mut as_flag = base_args.clone();
        // A switch given as `--flag` stands for "true" (its variable says "true").
        let switch = SWITCHES.contains(&case.flag) && case.value == "true";
        as_flag.push(if switch {
            flag.clone()
        } else {
            format!("{flag}={}", case.value)
        });
        as_flag.extend(case.extra.iter().cloned());
        let mut as_env_args = base_args.clone();
        as_env_args.extend(case.extra.iter().cloned());
        let env = (env_name(case.flag), case.value.clone());
        for (form, args, env) in [
            (format!("{flag}={:?}", case.value), as_flag, None),
            (
                format!("{}={:?}", env.0, env.1),
                as_env_args,
                Some(env.clone()),
            ),
        ] {
            match run(&ns, &weftd, &args, env) {
                Ok((2, stderr)) if stderr.contains(&flag) => {
                    let first = stderr.lines().next().unwrap_or("");
                    eprintln!("ok   {form:<50} {first}");
                }
                Ok((code, stderr)) => failures.push(format!(
                    "{form} ({:?} mode): exit code {code}, stderr:\n{stderr}",
                    case.mode
                )),
                Err(e) => failures.push(format!("{form} ({:?} mode): {e}", case.mode)),
            }
            let left = leftovers(&ns, &x);
            if !left.is_empty() {
                failures.push(format!("{form}: left behind {left:?}"));
                for f in ["ctl.sock", "subnet.env"] {
                    std::fs::remove_file(x.path(f)).ok();
                }
            }
        }
    }
    for arg in engine::config::Cli::command().get_arguments() {
        let id = arg.get_id().as_str();
        let name = arg.get_long().unwrap_or(id);
        if ["help", "version"].contains(&id) || NO_INVALID_VALUE.contains(&name) {
            continue;
        }
        if !covered.contains(name) {
            failures.push(format!("--{name} has no invalid-value case in this test"));
        }
    }
    eprintln!("{} cases, each as a flag and as a variable", all.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
