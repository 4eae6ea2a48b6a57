//! flanneld's `--ip-masq` rules applied inside a network namespace this test creates
//! (`wfl-masq-<pid>`, deleted by name on drop), checked with that namespace's `iptables-save`.

mod lease_common;

use std::fs::File;
use std::os::fd::AsFd;
use std::process::Command;

use engine::netconf::masq::MasqRules;
use lease_common::{have, skip};

/// A named network namespace, deleted on drop.
struct Netns(String);

impl Netns {
    fn create(name: String) -> Netns {
        let _ = Command::new("ip").args(["netns", "del", &name]).status();
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "ip netns add {name}");
        Netns(name)
    }

    /// `iptables-save` (or `ip6tables-save`) inside the namespace.
    fn save(&self, program: &str) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.0, program])
            .output()
            .expect("ip netns exec");
        assert!(
            out.status.success(),
            "{program}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `f` on a thread moved into the namespace (so the iptables it runs act there).
    fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        let path = format!("/run/netns/{}", self.0);
        std::thread::scope(|s| {
            s.spawn(|| {
                let ns = File::open(&path).expect("open the netns");
                rustix::thread::move_into_link_name_space(
                    ns.as_fd(),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )
                .expect("setns");
                f()
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn masq_rules_apply_check_remove_in_a_netns() {
    const TEST: &str = "masq_rules_apply_check_remove_in_a_netns";
    if !rustix::process::geteuid().is_root() {
        return skip(TEST, "not running as root");
    }
    for program in ["ip", "iptables-save", "iptables-restore"] {
        if !have(program) {
            return skip(TEST, &format!("{program} is not installed"));
        }
    }
    let ns = Netns::create(format!("wfl-masq-{}", std::process::id()));
    let rules = MasqRules::new(
        "10.5.0.0/16".parse().expect("net"),
        "10.5.72.0/24".parse().expect("net"),
    );
    let expected = rules.expected_lines()[0].1.clone();

    ns.run(|| rules.apply()).expect("apply");
    let saved = ns.save("iptables-save");
    for line in &expected {
        assert!(
            saved.lines().any(|l| l == line),
            "missing {line:?} in:\n{saved}"
        );
    }
    assert!(ns.run(|| rules.missing()).expect("check").is_empty());

    // Applying again changes nothing (no duplicate jumps).
    ns.run(|| rules.apply()).expect("apply again");
    let again = ns.save("iptables-save");
    assert_eq!(again.matches("-j FLANNEL-POSTRTG").count(), 1, "{again}");
    assert_eq!(again.matches("-j FLANNEL-FWD").count(), 1, "{again}");
    assert_eq!(again.matches("-A FLANNEL-POSTRTG").count(), 6, "{again}");

    // Someone deletes a rule: ensure() notices and puts it back.
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.0,
            "iptables",
            "-t",
            "nat",
            "-F",
            "FLANNEL-POSTRTG",
        ])
        .status()
        .expect("flush");
    assert!(out.success());
    assert_eq!(ns.run(|| rules.missing()).expect("check").len(), 6);
    assert!(ns.run(|| rules.ensure()).expect("ensure"));
    assert!(!ns.run(|| rules.ensure()).expect("ensure again"));

    // Removal leaves no trace; removing twice is fine.
    ns.run(|| rules.remove()).expect("remove");
    let after = ns.save("iptables-save");
    assert!(!after.contains("FLANNEL"), "left over:\n{after}");
    ns.run(|| rules.remove()).expect("remove again");
}

#[test]
fn masq_rules_ipv6_in_a_netns() {
    const TEST: &str = "masq_rules_ipv6_in_a_netns";
    if !rustix::process::geteuid().is_root() {
        return skip(TEST, "not running as root");
    }
    for program in ["ip", "ip6tables-save", "ip6tables-restore"] {
        if !have(program) {
            return skip(TEST, &format!("{program} is not installed"));
        }
    }
    let ns = Netns::create(format!("wfl-masq6-{}", std::process::id()));
    let rules = MasqRules::new(
        "10.5.0.0/16".parse().expect("net"),
        "10.5.72.0/24".parse().expect("net"),
    )
    .with_ipv6(
        "fd00:10:5::/48".parse().expect("net"),
        "fd00:10:5:48::/64".parse().expect("net"),
    );
    ns.run(|| rules.apply()).expect("apply");
    let saved6 = ns.save("ip6tables-save");
    for line in &rules.expected_lines()[1].1 {
        assert!(
            saved6.lines().any(|l| l == line),
            "missing {line:?} in:\n{saved6}"
        );
    }
    assert!(ns.run(|| rules.missing()).expect("check").is_empty());
    ns.run(|| rules.remove()).expect("remove");
    assert!(!ns.save("ip6tables-save").contains("FLANNEL"));
    assert!(!ns.save("iptables-save").contains("FLANNEL"));
}
