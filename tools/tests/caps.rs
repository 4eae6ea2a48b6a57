//! Privileges: weftd needs CAP_NET_ADMIN and nothing else (no CAP_NET_RAW, no
//! CAP_SYS_ADMIN, no root uid).
//!
//! weftd runs on both nodes of a testbed as uid/gid 65534 (nobody) with CAP_NET_ADMIN as its
//! only capability (permitted, effective, ambient and bounding set, via `setpriv`), then
//! forwards pings, UDP and a verified TCP stream both ways, over IPv4 and IPv6. The process
//! status of each weftd is checked, so the test cannot pass with more privilege than it claims.
//! Without CAP_NET_ADMIN weftd must fail to start, with exit code 1 and a message that names
//! the capability.
//!
//! `/dev/net/tun` is often 0666 (Debian, Ubuntu), but may be 0600 root (containers, this CI):
//! the wrapper gives weftd a private mount namespace in which a 0666 copy of the device node
//! (char 10:200, made by the test) is bound over `/dev/net/tun`, as a distro's default would
//! be. Nothing outside that namespace changes.

mod common;

use engine::config::DriverArg;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use engine::model::Backend;
use weft_testkit::require_root;
use weftctl::testbed::{traffic, Binaries, Netns, Overlay, Testbed};

/// CAP_NET_ADMIN's bit (linux/capability.h).
const CAP_NET_ADMIN_MASK: u64 = 1 << 12;
/// The unprivileged uid and gid weftd runs as.
const NOBODY: u32 = 65534;

/// A directory others can enter, holding a copy of weftd, a 0666 TUN device node and the
/// wrapper that runs weftd as nobody with `caps` (a setpriv capability list, e.g.
/// `+net_admin`, or empty for none).
struct Jail {
    dir: tempfile::TempDir,
}

impl Jail {
    fn new(weftd: &Path, caps: &str) -> Jail {
        let dir = tempfile::Builder::new()
            .prefix("weft-caps-")
            .tempdir()
            .expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod jail");
        let bin = dir.path().join("weftd");
        std::fs::copy(weftd, &bin).expect("copying weftd");
        let tun = dir.path().join("tun");
        let made = std::process::Command::new("mknod")
            .arg(&tun)
            .args(["c", "10", "200"])
            .status()
            .expect("running mknod");
        assert!(made.success(), "mknod {} c 10 200 failed", tun.display());
        std::fs::set_permissions(&tun, std::fs::Permissions::from_mode(0o666)).expect("chmod");
        let caps_list = format!("-all{}", if caps.is_empty() { "" } else { "," }) + caps;
        let script = format!(
            "#!/bin/sh\n\
             # weftd as nobody with {caps_list} only, /dev/net/tun as on a distro (0666).\n\
             exec unshare --mount --propagation private sh -c 'mount --bind {tun} /dev/net/tun && \
             exec setpriv --reuid={NOBODY} --regid={NOBODY} --clear-groups \
             --inh-caps={caps_list} --ambient-caps={caps_list} --bounding-set={caps_list} \
             -- {bin} \"$@\"' weftd \"$@\"\n",
            tun = tun.display(),
            bin = bin.display(),
        );
        let wrapper = dir.path().join("weftd-nobody");
        let mut f = std::fs::File::create(&wrapper).expect("wrapper");
        f.write_all(script.as_bytes()).expect("wrapper");
        drop(f);
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))
            .expect("chmod wrapper");
        Jail { dir }
    }

    fn wrapper(&self) -> PathBuf {
        self.dir.path().join("weftd-nobody")
    }
}

/// The `Uid`, `CapEff`, `CapPrm`, `CapBnd` and `CapAmb` lines of `/proc/<pid>/status`.
fn status(pid: u32) -> (Vec<u32>, [u64; 4]) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("process status");
    let field = |name: &str| -> &str {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
            .trim()
    };
    let uids = field("Uid:")
        .split_whitespace()
        .map(|u| u.parse().expect("uid"))
        .collect();
    let cap = |name| u64::from_str_radix(field(name), 16).expect("capability mask");
    (
        uids,
        [
            cap("CapEff:"),
            cap("CapPrm:"),
            cap("CapBnd:"),
            cap("CapAmb:"),
        ],
    )
}

fn forwards_as_nobody(backend: Backend) {
    let real = common::binaries_with_weftd();
    let jail = Jail::new(real.weftd.as_deref().expect("weftd"), "+net_admin");
    let binaries = Binaries {
        weftctl: real.weftctl,
        weftd: Some(jail.wrapper()),
    };
    let mut bed = Testbed::new(2, binaries).expect("testbed");
    // weftd (nobody) writes its log and peers-file reads in the testbed's directory; its
    // control socket is the default abstract one (no file).
    std::fs::set_permissions(bed.dir(), std::fs::Permissions::from_mode(0o1777))
        .expect("chmod testbed dir");
    let overlay = Overlay::Weftd {
        backend,
        driver: DriverArg::Auto,
    };
    bed.start(&[overlay, overlay])
        .expect("weftd as nobody with CAP_NET_ADMIN");
    for n in 0..2 {
        let pid = bed
            .overlay_process(n)
            .and_then(|p| p.pid())
            .expect("weftd pid");
        let (uids, [eff, prm, bnd, amb]) = status(pid);
        assert!(
            uids.iter().all(|&u| u == NOBODY),
            "weftd on node {n} runs as uids {uids:?}, not {NOBODY}"
        );
        for (name, mask) in [
            ("effective", eff),
            ("permitted", prm),
            ("bounding", bnd),
            ("ambient", amb),
        ] {
            assert_eq!(
                mask, CAP_NET_ADMIN_MASK,
                "weftd on node {n}: {name} capabilities {mask:#x}, want CAP_NET_ADMIN ({CAP_NET_ADMIN_MASK:#x}) only"
            );
        }
    }
    let mtu = bed.overlay_mtu();
    let (a, b) = (bed.node(0), bed.node(1));
    common::ping_both_sizes(a.pod(), b.pod_ip(), mtu);
    common::ping_both_sizes(b.pod6(), a.pod_ip6(), mtu);
    traffic::udp_echo(a.pod(), b.pod(), &common::udp_sizes(mtu, true))
        .unwrap_or_else(|e| panic!("{e:#}"));
    common::stream(a.pod(), b.pod(), 32 << 20);
    common::stream(b.pod6(), a.pod6(), 32 << 20);
    // The default control socket answers from inside the namespace.
    bed.control(0, "stats")
        .expect("stats from weftd run as nobody");
    bed.check_alive().unwrap_or_else(|e| panic!("{e:#}"));
}

#[test]
fn udp_backend_forwards_as_nobody_with_only_cap_net_admin() {
    require_root!();
    forwards_as_nobody(Backend::Udp);
}

#[test]
fn vxlan_backend_forwards_as_nobody_with_only_cap_net_admin() {
    require_root!();
    forwards_as_nobody(Backend::Vxlan);
}

#[test]
fn without_cap_net_admin_weftd_fails_naming_it() {
    require_root!();
    let real = common::binaries_with_weftd();
    let jail = Jail::new(real.weftd.as_deref().expect("weftd"), "");
    let ns = Netns::create(&format!(
        "{}{}-nocaps",
        weft_testkit::netns::PREFIX,
        std::process::id()
    ))
    .expect("namespace");
    let peers = jail.dir.path().join("peers");
    std::fs::write(&peers, "").expect("peers");
    let args = [
        "--backend",
        "udp",
        "--public-ip",
        "127.0.0.1",
        "--subnet",
        "10.244.1.0/24",
        "--network",
        "10.244.0.0/16",
        "--peers",
        peers.to_str().expect("UTF-8"),
    ];
    let mut child = ns
        .command(jail.wrapper().to_str().expect("UTF-8"), &args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting weftd without capabilities");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() >= deadline {
            child.kill().ok();
            child.wait().ok();
            panic!("weftd without CAP_NET_ADMIN is still running");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr).ok();
    assert_eq!(status.code(), Some(1), "stderr:\n{stderr}");
    assert!(
        stderr.contains("CAP_NET_ADMIN"),
        "the error must name the capability:\n{stderr}"
    );
    let links = ns.exec_checked("ip", &["-o", "link"]).expect("ip link");
    assert_eq!(links.lines().count(), 1, "left behind:\n{links}");
}

/// Lease mode with `--ip-masq` as nobody with only CAP_NET_ADMIN: the lease is taken, the
/// subnet file written, flannel's masquerade rules installed (iptables runs as weftd's child
/// and inherits the ambient capability) and removed again on SIGTERM.
#[test]
fn lease_mode_with_ip_masq_as_nobody_with_only_cap_net_admin() {
    require_root!();
    let real = common::binaries_with_weftd();
    let jail = Jail::new(real.weftd.as_deref().expect("weftd"), "+net_admin");
    let ns = Netns::create(&format!(
        "{}{}-capslease",
        weft_testkit::netns::PREFIX,
        std::process::id()
    ))
    .expect("namespace");
    ns.exec_checked("ip", &["addr", "add", "192.168.77.1/24", "dev", "lo"])
        .expect("underlay address");
    let leases = jail.dir.path().join("leases");
    std::fs::create_dir(&leases).expect("lease dir");
    std::fs::write(
        leases.join("config"),
        r#"{"Network": "10.244.0.0/16", "Backend": {"Type": "udp"}}"#,
    )
    .expect("network config");
    for p in [jail.dir.path(), leases.as_path()] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
    }
    let subnet_file = jail.dir.path().join("subnet.env");
    let log = jail.dir.path().join("weftd.log");
    let args = [
        "--public-ip",
        "192.168.77.1",
        "--lease-dir",
        leases.to_str().expect("UTF-8"),
        "--subnet-file",
        subnet_file.to_str().expect("UTF-8"),
        "--ip-masq",
    ];
    let mut weftd = weftctl::testbed::Process::spawn(
        "weftd-nobody-lease",
        ns.command(jail.wrapper().to_str().expect("UTF-8"), &args),
        &log,
    )
    .expect("starting weftd");
    weftd
        .wait_for_line(weftctl::testbed::WEFTD_READY, Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let pid = weftd.pid().expect("pid");
    let (uids, [eff, ..]) = status(pid);
    assert!(uids.iter().all(|&u| u == NOBODY), "uids {uids:?}");
    assert_eq!(eff, CAP_NET_ADMIN_MASK);
    let env = std::fs::read_to_string(&subnet_file).expect("subnet file written");
    assert!(env.contains("FLANNEL_NETWORK=10.244.0.0/16"), "{env}");
    let masq = |ns: &Netns| -> usize {
        ns.exec_checked("iptables", &["-t", "nat", "-S"])
            .expect("iptables -S")
            .lines()
            .filter(|l| l.contains("flanneld masq"))
            .count()
    };
    assert!(
        masq(&ns) >= 6,
        "masquerade rules missing:\n{}",
        weftd.tail()
    );
    let (status, killed) = weftd.stop().expect("weftd stopped");
    assert!(
        !killed && status.success(),
        "SIGTERM exit: {status}\n{}",
        weftd.tail()
    );
    assert_eq!(masq(&ns), 0, "masquerade rules left after SIGTERM");
}
