//! weftd's command line and environment, as flanneld's users write them.
//!
//! - Every invalid value of every weftd flag, given as the flag and as its `FLANNELD_<NAME>`
//!   variable, makes weftd exit with code 2 and a message naming the flag, and leaves nothing
//!   behind: weftd runs in a fresh network namespace, and after each failed start the
//!   namespace holds no interface but `lo`, no iptables rule, no control socket and no subnet
//!   file. flanneld's flags that weftd does not implement count as invalid whatever their
//!   value (but flanneld's default). A valid start in the same namespace (which does create the
//!   TUN) proves the checks can see what they look for. Every flag of `weftd --help` but those
//!   in [`NO_INVALID_VALUE`] must have at least one case here.
//! - A flanneld-style command line (single dashes, `-flag=value`, Go booleans in flags and
//!   variables, klog's `-v=2`) starts weftd in lease mode with flanneld's defaults: the
//!   FORWARD accept rules, the masquerade rules from `FLANNELD_IP_MASQ=1`, the blackhole route,
//!   systemd's READY=1 and STOPPING=1, and everything removed on SIGTERM.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::CommandFactory;
use weft_testkit::{require_root, wait};
use weftctl::testbed::Netns;

/// How long a rejected start may take (it must exit before doing anything).
const EXIT_WAIT: Duration = Duration::from_secs(10);
/// Flags that take no value.
const SWITCHES: [&str; 8] = [
    "ip-masq",
    "allow-foreign-inner-source",
    "ip-masq-fully-random-disable",
    "iptables-forward-rules",
    "ip-blackhole-route",
    "metrics-per-peer",
    "kube-subnet-mgr",
    "upgrade",
];
/// Flags without a case: any string is a valid prefix (as for flanneld), `-v` counts, klog's
/// `--vmodule` and `--log_backtrace_at` are accepted and ignored.
const NO_INVALID_VALUE: [&str; 4] = ["etcd-prefix", "verbose", "vmodule", "log_backtrace_at"];
/// Flags with no `FLANNELD_*` variable (klog's, as in flanneld).
const FLAG_ONLY: [&str; 1] = ["v"];

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
    // The IPv6 underlay address of lease mode: a global IPv6 unicast address.
    for value in ["fe80::1", "10.0.0.1", "ff02::1", "x"] {
        v.push(c(Lease, "public-ipv6", value));
    }
    v.push(c(Static, "iface", ""));
    v.push(Case {
        without: &["public-ip"],
        ..c(Static, "iface", "wft-no-such-if")
    });
    // Not an address; an address no route reaches (the test's namespace has no default route).
    for value in ["not-an-ip", "192.0.2.1"] {
        v.push(Case {
            without: &["public-ip"],
            ..c(Static, "iface-can-reach", value)
        });
    }
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
    for value in ["10001", "-1", "x"] {
        v.push(c(Static, "busy-poll-us", value));
    }
    for value in ["0", "65537", "x"] {
        v.push(c(Static, "tun-txqueuelen", value));
    }
    for value in [
        dir.clone(),
        under_file.clone(),
        "@".to_owned(),
        String::new(),
    ] {
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
    // Switches: a value that is not a boolean as Go's strconv.ParseBool reads it; --ip-masq
    // outside lease mode.
    v.push(c(Static, "allow-foreign-inner-source", "maybe"));
    v.push(c(Lease, "ip-masq", "maybe"));
    v.push(c(Lease, "ip-masq", "yes"));
    v.push(c(Static, "ip-masq", "true"));
    v.push(c(Lease, "ip-masq-fully-random-disable", "2"));
    v.push(c(Lease, "iptables-forward-rules", "on"));
    v.push(c(Lease, "ip-blackhole-route", "tRuE"));
    v.push(c(Static, "metrics-per-peer", "y"));
    v.push(c(Static, "upgrade", "soon"));
    for value in ["x", "-1", "2.5"] {
        v.push(c(Static, "v", value));
    }
    // flanneld's flags that weftd does not implement: any value but flanneld's default.
    for (flag, value) in [
        ("kube-subnet-mgr", "true"),
        ("kube-subnet-mgr", "1"),
        ("kube-api-url", "https://10.96.0.1:443"),
        ("kubeconfig-file", "/etc/kubernetes/kubelet.conf"),
        ("kube-annotation-prefix", "example.com"),
        ("net-config-path", "/etc/flannel/net-conf.json"),
        ("set-node-network-unavailable", "false"),
    ] {
        v.push(c(Lease, flag, value));
    }
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
        weft_testkit::netns::PREFIX,
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
    wait_for(Duration::from_secs(10), || leftovers(&ns, &x).len() >= 2);
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
        let mut forms = vec![(format!("{flag}={:?}", case.value), as_flag, None)];
        if !FLAG_ONLY.contains(&case.flag) {
            forms.push((
                format!("{}={:?}", env.0, env.1),
                as_env_args,
                Some(env.clone()),
            ));
        }
        for (form, args, env) in forms {
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

/// Waits until `f` holds or `limit` passes; returns whether it held.
fn wait_for(limit: Duration, f: impl FnMut() -> bool) -> bool {
    wait::until_every(limit, Duration::from_millis(50), f).is_some()
}

/// The FLANNEL rules iptables shows in `ns`.
fn flannel_rules(ns: &Netns, table: &str) -> Vec<String> {
    ns.exec_checked("iptables", &["-t", table, "-S"])
        .expect("iptables -S (is iptables installed?)")
        .lines()
        .filter(|l| l.contains("FLANNEL"))
        .map(str::to_owned)
        .collect()
}

/// weftd next to the test, and a scratch directory with a lease directory `leases` holding a
/// network config of `backend`.
fn weftd_and_lease_dir(backend: &str) -> (PathBuf, Scratch, PathBuf) {
    let weftd = weftctl::testbed::Binaries::weftd_near(&std::env::current_exe().expect("exe"))
        .expect("no weftd next to the test: run `cargo build -p engine --bins`");
    let x = Scratch {
        dir: tempfile::tempdir().expect("tempdir"),
    };
    let leases = x.path("leases");
    std::fs::create_dir(&leases).expect("lease dir");
    std::fs::write(
        leases.join("config"),
        format!(r#"{{"Network": "10.244.0.0/16", "Backend": {{"Type": "{backend}"}}}}"#),
    )
    .expect("config");
    (weftd, x, leases)
}

/// SIGTERM to a child.
fn terminate(child: &std::process::Child) {
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(child.id() as i32).expect("pid"),
        rustix::process::Signal::TERM,
    )
    .expect("SIGTERM");
}

#[test]
fn flanneld_syntax_and_defaults() {
    require_root!();
    let (weftd, x, leases) = weftd_and_lease_dir("udp");
    let notify_path = x.path("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).expect("notify socket");
    notify
        .set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    let ns = Netns::create(&format!(
        "{}{}-gocli",
        weft_testkit::netns::PREFIX,
        std::process::id()
    ))
    .expect("namespace");

    // As a flanneld unit writes it: single dashes, `-flag=value` and `-flag value`, klog's
    // -v=2, a Go boolean in a variable; no --control (the default, per namespace).
    let leases_arg = format!("-lease-dir={}", leases.display());
    let subnet_file = x.s("subnet.env");
    let args = [
        "-public-ip",
        "127.0.0.1",
        &leases_arg,
        "-subnet-file",
        &subnet_file,
        "-ip-blackhole-route",
        "-healthz-port=0",
        "-v=2",
    ];
    let mut cmd = ns.command(weftd.to_str().expect("UTF-8"), &args);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("FLANNELD_") {
            cmd.env_remove(k);
        }
    }
    let log = x.path("weftd.log");
    let mut child = cmd
        .env("FLANNELD_IP_MASQ", "1")
        .env("NOTIFY_SOCKET", &notify_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("starting weftd");
    let mut buf = [0u8; 64];
    let n = notify.recv(&mut buf).expect("READY=1 from weftd");
    let tail = || std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(&buf[..n], b"READY=1", "{}", tail());
    let env = std::fs::read_to_string(x.path("subnet.env")).expect("subnet.env");
    assert!(env.contains("FLANNEL_IPMASQ=true"), "{env}");
    let subnet = env
        .lines()
        .find_map(|l| l.strip_prefix("FLANNEL_SUBNET="))
        .expect("FLANNEL_SUBNET")
        .replace(".1/", ".0/");

    // flanneld's default FORWARD accept rules, and the masquerade rules FLANNELD_IP_MASQ=1 asked for.
    let filter = flannel_rules(&ns, "filter");
    for want in [
        "-A FORWARD -m comment --comment \"flanneld forward\" -j FLANNEL-FWD",
        "-A FLANNEL-FWD -s 10.244.0.0/16 -m comment --comment \"flanneld forward\" -j ACCEPT",
    ] {
        assert!(filter.iter().any(|l| l == want), "{want} in {filter:?}");
    }
    let nat = flannel_rules(&ns, "nat");
    assert!(
        nat.iter().any(|l| l.contains("MASQUERADE --random-fully")),
        "{nat:?}"
    );
    let blackholes = ns
        .exec_checked("ip", &["route", "show", "type", "blackhole"])
        .expect("ip route");
    assert!(
        blackholes.contains(&subnet),
        "blackhole {subnet} in {blackholes:?}"
    );
    // klog's -v=2 is debug.
    assert!(tail().contains("DEBUG"), "{}", tail());
    // weftctl finds the control socket from inside the namespace, with no --control.
    let weftctl = weftd.with_file_name("weftctl");
    let stats = ns
        .exec_checked(weftctl.to_str().expect("UTF-8"), &["stats"])
        .expect("weftctl stats inside the namespace");
    assert!(stats.contains("\"drops\""), "{stats}");

    terminate(&child);
    let n = notify.recv(&mut buf).expect("STOPPING=1 from weftd");
    assert_eq!(&buf[..n], b"STOPPING=1");
    let status = child.wait().expect("exit");
    assert!(status.success(), "{status}: {}", tail());
    assert!(flannel_rules(&ns, "filter").is_empty() && flannel_rules(&ns, "nat").is_empty());
    let blackholes = ns
        .exec_checked("ip", &["route", "show", "type", "blackhole"])
        .expect("ip route");
    assert!(blackholes.trim().is_empty(), "left behind: {blackholes}");
    assert!(
        wait_for(Duration::from_secs(5), || !tail().is_empty()),
        "no log"
    );
}

#[test]
fn a_second_weftd_for_the_same_tun_is_refused_before_it_leases() {
    require_root!();
    let (weftd, x, leases) = weftd_and_lease_dir("vxlan");
    // Two namespaces, each with its own underlay address on lo, all weftd on defaults but the
    // lease directory and the subnet file (each node's own /run in a real cluster).
    let prefix = format!("{}{}", weft_testkit::netns::PREFIX, std::process::id());
    let spaces: Vec<Netns> = ["one", "two"]
        .iter()
        .map(|n| Netns::create(&format!("{prefix}-{n}")).expect("namespace"))
        .collect();
    let start = |ns: &Netns, ip: &str, file: &str| {
        let subnet_file = x.s(file);
        let leases = leases.display().to_string();
        let args = [
            "--public-ip",
            ip,
            "--lease-dir",
            &leases,
            "--subnet-file",
            &subnet_file,
            "--iptables-forward-rules=false",
        ];
        let mut cmd = ns.command(weftd.to_str().expect("UTF-8"), &args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd.spawn().expect("starting weftd")
    };
    for (i, ns) in spaces.iter().enumerate() {
        ns.exec_checked(
            "ip",
            &["addr", "add", &format!("10.99.0.{}/32", i + 1), "dev", "lo"],
        )
        .expect("address");
    }
    let mut first = start(&spaces[0], "10.99.0.1", "a.env");
    let mut other_ns = start(&spaces[1], "10.99.0.2", "b.env");
    let leased = || std::fs::read_dir(leases.join("subnets")).map_or(0, Iterator::count);
    assert!(
        wait_for(Duration::from_secs(15), || leased() == 2
            && x.path("a.env").exists()
            && x.path("b.env").exists()),
        "both nodes, each in its own namespace, start on the default control socket"
    );
    // The same TUN again in the first namespace: refused before any lease or TUN.
    let second = start(&spaces[0], "10.99.0.1", "c.env");
    let out = second.wait_with_output().expect("second weftd");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("@weft/flannel.1") && stderr.contains("in use"),
        "{stderr}"
    );
    assert_eq!(leased(), 2, "the refused weftd must not lease");
    assert!(!x.path("c.env").exists());
    for child in [&mut first, &mut other_ns] {
        terminate(child);
        assert!(child.wait().expect("exit").success());
    }
}

#[test]
fn completions_and_man_pages_cover_the_flags() {
    let weftctl = env!("CARGO_BIN_EXE_weftctl");
    let run = |args: &[&str]| {
        let out = Command::new(weftctl).args(args).output().expect("weftctl");
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8(out.stdout).expect("UTF-8")
    };
    for shell in ["bash", "zsh", "fish"] {
        let text = run(&["completions", shell, "weftd"]);
        for flag in [
            "etcd-endpoints",
            "iptables-forward-rules",
            "ip-blackhole-route",
        ] {
            assert!(text.contains(flag), "{shell}: {flag}");
        }
        assert!(
            run(&["completions", shell, "weftctl"]).contains("routes"),
            "{shell}"
        );
    }
    let man = run(&["man", "weftd"]);
    assert!(man.contains(".TH weftd 8"), "{man}");
    assert!(man.contains("iptables\\-forward\\-rules"));
    assert!(run(&["man", "weftctl"]).contains(".TH weftctl 1"));
}
