//! flanneld's `--ip-masq` rules applied inside a network namespace this test creates (the
//! test kit's `wft-<pid>-<n>-masq`, deleted by name on drop), checked with that namespace's
//! `iptables-save`.

use engine::netconf::masq::MasqRules;
use weft_testkit::netns::Netns;
use weft_testkit::{require_programs, require_root};

/// `iptables-save` (or `ip6tables-save`) inside `ns`.
fn save(ns: &Netns, program: &str) -> String {
    ns.exec_checked(program, &[]).expect("iptables-save")
}

/// Runs `f` on a thread inside `ns` (so the iptables it runs act there).
fn run<R: Send>(ns: &Netns, f: impl FnOnce() -> R + Send) -> R {
    ns.run_inside(f).expect("entering the namespace")
}

#[test]
fn masq_rules_apply_check_remove_in_a_netns() {
    require_root!();
    require_programs!("iptables", "iptables-save", "iptables-restore");
    let ns = Netns::unique("masq").expect("a namespace");
    let rules = MasqRules::new(
        "10.5.0.0/16".parse().expect("net"),
        "10.5.72.0/24".parse().expect("net"),
    );
    let expected = rules.expected_lines()[0].1.clone();

    run(&ns, || rules.apply()).expect("apply");
    let saved = save(&ns, "iptables-save");
    for line in &expected {
        assert!(
            saved.lines().any(|l| l == line),
            "missing {line:?} in:\n{saved}"
        );
    }
    assert!(run(&ns, || rules.missing()).expect("check").is_empty());

    // Applying again changes nothing (no duplicate jumps).
    run(&ns, || rules.apply()).expect("apply again");
    let again = save(&ns, "iptables-save");
    assert_eq!(again.matches("-j FLANNEL-POSTRTG").count(), 1, "{again}");
    assert_eq!(again.matches("-j FLANNEL-FWD").count(), 1, "{again}");
    assert_eq!(again.matches("-A FLANNEL-POSTRTG").count(), 6, "{again}");

    // Someone deletes a rule: ensure() notices and puts it back.
    ns.exec_checked("iptables", &["-t", "nat", "-F", "FLANNEL-POSTRTG"])
        .expect("flush");
    assert_eq!(run(&ns, || rules.missing()).expect("check").len(), 6);
    assert!(run(&ns, || rules.ensure()).expect("ensure"));
    assert!(!run(&ns, || rules.ensure()).expect("ensure again"));

    // Removal leaves no trace; removing twice is fine.
    run(&ns, || rules.remove()).expect("remove");
    let after = save(&ns, "iptables-save");
    assert!(!after.contains("FLANNEL"), "left over:\n{after}");
    run(&ns, || rules.remove()).expect("remove again");
}

#[test]
fn masq_rules_ipv6_in_a_netns() {
    require_root!();
    require_programs!("iptables-save", "ip6tables-save", "ip6tables-restore");
    let ns = Netns::unique("masq6").expect("a namespace");
    let rules = MasqRules::new(
        "10.5.0.0/16".parse().expect("net"),
        "10.5.72.0/24".parse().expect("net"),
    )
    .with_ipv6(
        "fd00:10:5::/48".parse().expect("net"),
        "fd00:10:5:48::/64".parse().expect("net"),
    );
    run(&ns, || rules.apply()).expect("apply");
    let saved6 = save(&ns, "ip6tables-save");
    for line in &rules.expected_lines()[1].1 {
        assert!(
            saved6.lines().any(|l| l == line),
            "missing {line:?} in:\n{saved6}"
        );
    }
    assert!(run(&ns, || rules.missing()).expect("check").is_empty());
    run(&ns, || rules.remove()).expect("remove");
    assert!(!save(&ns, "ip6tables-save").contains("FLANNEL"));
    assert!(!save(&ns, "iptables-save").contains("FLANNEL"));
}
