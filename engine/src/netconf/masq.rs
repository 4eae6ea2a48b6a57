//! flanneld's iptables rules, applied with `iptables-restore -w`: the `--ip-masq` masquerade
//! rules (nat) and the `--iptables-forward-rules` FORWARD accept rules (filter, flanneld's
//! default, so pods work where the FORWARD policy is DROP, as Docker sets it).
//!
//! flanneld (pkg/trafficmngr/iptables) installs, with N the Network and S our subnet (the nat
//! part with `--ip-masq`, the filter part with `--iptables-forward-rules`):
//!
//! ```text
//! *nat
//! -A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG
//! -A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 -m comment --comment "flanneld masq" -j RETURN
//! -A FLANNEL-POSTRTG -s S -d N -m comment --comment "flanneld masq" -j RETURN
//! -A FLANNEL-POSTRTG -s N -d S -m comment --comment "flanneld masq" -j RETURN
//! -A FLANNEL-POSTRTG ! -s N -d S -m comment --comment "flanneld masq" -j RETURN
//! -A FLANNEL-POSTRTG -s N ! -d 224.0.0.0/4 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully
//! -A FLANNEL-POSTRTG ! -s N -d N -m comment --comment "flanneld masq" -j MASQUERADE --random-fully
//! *filter
//! -A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD
//! -A FLANNEL-FWD -s N -m comment --comment "flanneld forward" -j ACCEPT
//! -A FLANNEL-FWD -d N -m comment --comment "flanneld forward" -j ACCEPT
//! ```
//!
//! (kube-proxy marks with 0x4000 what it already masquerades; IPv6 uses `ff00::/8` for
//! multicast and `ip6tables-restore`.) The lines are written exactly as `iptables-save`
//! prints them, so [`MasqRules::missing`] compares text.
//!
//! Contract:
//! - [`MasqRules::apply`] is idempotent: one `iptables-restore -w --noflush` transaction that
//!   declares (so creates or flushes) our chains of the enabled tables, fills them, and adds
//!   each jump from `POSTROUTING` / `FORWARD` only if `iptables-save` does not show it already.
//!   Rules of other programs are not touched. `-w` waits for the xtables lock (kube-proxy holds
//!   it while it syncs) instead of failing.
//! - [`MasqRules::missing`] lists the expected lines absent from `iptables-save`;
//!   [`MasqRules::ensure`] re-applies when any is missing (the `--iptables-resync` timer).
//! - [`MasqRules::remove`] deletes the jumps and chains of the enabled tables (clean
//!   shutdown), tolerating their absence.
//! - Failures name the command and carry its stderr.

use std::io::Write as _;
use std::process::{Command, Stdio};

use crate::model::{Ipv4Net, Ipv6Net};

/// flannel's nat chain.
pub const POSTRTG_CHAIN: &str = "FLANNEL-POSTRTG";
/// flannel's filter chain.
pub const FWD_CHAIN: &str = "FLANNEL-FWD";
/// kube-proxy's masquerade mark (`trafficmngr.KubeProxyMark`).
pub const KUBE_PROXY_MARK: &str = "0x4000/0x4000";
const MASQ_COMMENT: &str = "-m comment --comment \"flanneld masq\"";
const FWD_COMMENT: &str = "-m comment --comment \"flanneld forward\"";

/// Why a firewall operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MasqError {
    /// The command could not be run (not installed?).
    #[error("running {command}: {source} (is iptables installed?)")]
    Spawn {
        /// The command.
        command: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The command failed.
    #[error("{command} failed ({status}): {stderr}")]
    Failed {
        /// The command.
        command: String,
        /// Its exit status.
        status: String,
        /// What it printed on stderr.
        stderr: String,
    },
}

/// IPv4 or IPv6, i.e. `iptables-*` or `ip6tables-*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `iptables-save` / `iptables-restore`.
    V4,
    /// `ip6tables-save` / `ip6tables-restore`.
    V6,
}

impl Family {
    fn save_cmd(self) -> &'static str {
        match self {
            Family::V4 => "iptables-save",
            Family::V6 => "ip6tables-save",
        }
    }

    fn restore_cmd(self) -> &'static str {
        match self {
            Family::V4 => "iptables-restore",
            Family::V6 => "ip6tables-restore",
        }
    }
}

/// One family's rules: the network, our subnet, and the multicast range left alone.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FamilyRules {
    family: Family,
    network: String,
    subnet: String,
    multicast: &'static str,
}

/// flanneld's masquerade and forward rules for one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasqRules {
    families: Vec<FamilyRules>,
    random_fully: bool,
    /// The nat part (`--ip-masq`).
    masquerade: bool,
    /// The filter part (`--iptables-forward-rules`).
    forward: bool,
}

impl MasqRules {
    /// The rules for `network` and our `subnet`, with `--random-fully` (flannel's default where
    /// iptables supports it, as every iptables since 1.6.2 does).
    pub fn new(network: Ipv4Net, subnet: Ipv4Net) -> MasqRules {
        MasqRules {
            families: vec![FamilyRules {
                family: Family::V4,
                network: network.to_string(),
                subnet: subnet.to_string(),
                multicast: "224.0.0.0/4",
            }],
            random_fully: true,
            masquerade: true,
            forward: true,
        }
    }

    /// Only the parts asked for: the masquerade rules (nat) and the FORWARD accept rules
    /// (filter). `None` when neither is.
    pub fn with_parts(mut self, masquerade: bool, forward: bool) -> Option<MasqRules> {
        self.masquerade = masquerade;
        self.forward = forward;
        (masquerade || forward).then_some(self)
    }

    /// Whether the masquerade rules are part of the set.
    pub fn masquerade(&self) -> bool {
        self.masquerade
    }

    /// Adds the IPv6 rules (dual stack).
    pub fn with_ipv6(mut self, network: Ipv6Net, subnet: Ipv6Net) -> MasqRules {
        self.families.push(FamilyRules {
            family: Family::V6,
            network: network.to_string(),
            subnet: subnet.to_string(),
            multicast: "ff00::/8",
        });
        self
    }

    /// Without `--random-fully` (flanneld's `--ip-masq-fully-random-disable`).
    pub fn without_random_fully(mut self) -> MasqRules {
        self.random_fully = false;
        self
    }

    fn masq_target(&self) -> &'static str {
        if self.random_fully {
            "MASQUERADE --random-fully"
        } else {
            "MASQUERADE"
        }
    }

    /// The nat jump rule.
    fn postrouting_jump() -> String {
        format!("-A POSTROUTING {MASQ_COMMENT} -j {POSTRTG_CHAIN}")
    }

    /// The filter jump rule.
    fn forward_jump() -> String {
        format!("-A FORWARD {FWD_COMMENT} -j {FWD_CHAIN}")
    }

    fn nat_rules(&self, f: &FamilyRules) -> Vec<String> {
        let (n, s, masq) = (&f.network, &f.subnet, self.masq_target());
        vec![
            format!("-A {POSTRTG_CHAIN} -m mark --mark {KUBE_PROXY_MARK} {MASQ_COMMENT} -j RETURN"),
            format!("-A {POSTRTG_CHAIN} -s {s} -d {n} {MASQ_COMMENT} -j RETURN"),
            format!("-A {POSTRTG_CHAIN} -s {n} -d {s} {MASQ_COMMENT} -j RETURN"),
            format!("-A {POSTRTG_CHAIN} ! -s {n} -d {s} {MASQ_COMMENT} -j RETURN"),
            format!(
                "-A {POSTRTG_CHAIN} -s {n} ! -d {} {MASQ_COMMENT} -j {masq}",
                f.multicast
            ),
            format!("-A {POSTRTG_CHAIN} ! -s {n} -d {n} {MASQ_COMMENT} -j {masq}"),
        ]
    }

    fn fwd_rules(f: &FamilyRules) -> Vec<String> {
        let n = &f.network;
        vec![
            format!("-A {FWD_CHAIN} -s {n} {FWD_COMMENT} -j ACCEPT"),
            format!("-A {FWD_CHAIN} -d {n} {FWD_COMMENT} -j ACCEPT"),
        ]
    }

    /// Every line `iptables-save` shows when the rules are in place, per family.
    pub fn expected_lines(&self) -> Vec<(Family, Vec<String>)> {
        self.families
            .iter()
            .map(|f| {
                let mut lines = Vec::new();
                if self.masquerade {
                    lines.push(MasqRules::postrouting_jump());
                    lines.extend(self.nat_rules(f));
                }
                if self.forward {
                    lines.push(MasqRules::forward_jump());
                    lines.extend(MasqRules::fwd_rules(f));
                }
                (f.family, lines)
            })
            .collect()
    }

    /// The `iptables-restore --noflush` input that installs the rules, given the current
    /// `iptables-save` output (jumps already present are not added again).
    fn apply_input(&self, f: &FamilyRules, saved: &str) -> String {
        let has = |line: &str| saved.lines().any(|l| l.trim_end() == line);
        let mut s = String::new();
        let tables = [
            (
                self.masquerade,
                "nat",
                POSTRTG_CHAIN,
                MasqRules::postrouting_jump(),
                self.nat_rules(f),
            ),
            (
                self.forward,
                "filter",
                FWD_CHAIN,
                MasqRules::forward_jump(),
                MasqRules::fwd_rules(f),
            ),
        ];
        for (_, table, chain, jump, rules) in tables.into_iter().filter(|t| t.0) {
            s.push_str(&format!("*{table}\n:{chain} - [0:0]\n"));
            if !has(&jump) {
                s.push_str(&jump);
                s.push('\n');
            }
            for rule in rules {
                s.push_str(&rule);
                s.push('\n');
            }
            s.push_str("COMMIT\n");
        }
        s
    }

    /// The `iptables-restore --noflush` input that removes the jumps and chains of our
    /// tables present in `saved`; `None` when there is nothing to remove.
    fn remove_input(&self, saved: &str) -> Option<String> {
        let count = |line: &str| saved.lines().filter(|l| l.trim_end() == line).count();
        let has_chain = |chain: &str| saved.lines().any(|l| l.starts_with(&format!(":{chain} ")));
        let mut s = String::new();
        let mut any = false;
        for (_, table, jump, chain) in [
            (
                self.masquerade,
                "nat",
                MasqRules::postrouting_jump(),
                POSTRTG_CHAIN,
            ),
            (self.forward, "filter", MasqRules::forward_jump(), FWD_CHAIN),
        ]
        .into_iter()
        .filter(|t| t.0)
        {
            s.push_str(&format!("*{table}\n"));
            for _ in 0..count(&jump) {
                s.push_str(&jump.replacen("-A ", "-D ", 1));
                s.push('\n');
                any = true;
            }
            if has_chain(chain) {
                s.push_str(&format!("-F {chain}\n-X {chain}\n"));
                any = true;
            }
            s.push_str("COMMIT\n");
        }
        any.then_some(s)
    }

    /// Installs the rules (see the module documentation).
    pub fn apply(&self) -> Result<(), MasqError> {
        for f in &self.families {
            let saved = save(f.family)?;
            restore(f.family, &self.apply_input(f, &saved))?;
        }
        Ok(())
    }

    /// The expected lines that `iptables-save` does not show (empty: all in place).
    pub fn missing(&self) -> Result<Vec<String>, MasqError> {
        let mut missing = Vec::new();
        for (family, lines) in self.expected_lines() {
            let saved = save(family)?;
            for line in lines {
                if !saved.lines().any(|l| l.trim_end() == line) {
                    missing.push(line);
                }
            }
        }
        Ok(missing)
    }

    /// Re-applies the rules if any is missing; returns whether it did.
    pub fn ensure(&self) -> Result<bool, MasqError> {
        let missing = self.missing()?;
        if missing.is_empty() {
            return Ok(false);
        }
        tracing::warn!(
            "{} iptables rule(s) missing (first: {}); re-applying",
            missing.len(),
            missing[0]
        );
        self.apply()?;
        Ok(true)
    }

    /// Removes the jumps and both chains (see the module documentation).
    pub fn remove(&self) -> Result<(), MasqError> {
        for f in &self.families {
            let saved = save(f.family)?;
            if let Some(input) = self.remove_input(&saved) {
                restore(f.family, &input)?;
            }
        }
        Ok(())
    }
}

fn save(family: Family) -> Result<String, MasqError> {
    let command = family.save_cmd();
    let out = Command::new(command)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| MasqError::Spawn {
            command: command.to_owned(),
            source,
        })?;
    if !out.status.success() {
        return Err(MasqError::Failed {
            command: command.to_owned(),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn restore(family: Family, input: &str) -> Result<(), MasqError> {
    let command = format!("{} -w --noflush", family.restore_cmd());
    let spawn_err = |source| MasqError::Spawn {
        command: command.clone(),
        source,
    };
    let mut child = Command::new(family.restore_cmd())
        .args(["-w", "--noflush"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes()).map_err(spawn_err)?;
    }
    let out = child.wait_with_output().map_err(spawn_err)?;
    if !out.status.success() {
        return Err(MasqError::Failed {
            command,
            status: out.status.to_string(),
            stderr: format!(
                "{} (input was:\n{input})",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> MasqRules {
        MasqRules::new(
            "10.5.0.0/16".parse().expect("net"),
            "10.5.72.0/24".parse().expect("net"),
        )
    }

    #[test]
    fn flannels_rules() {
        let lines = &rules().expected_lines()[0].1;
        assert_eq!(
            lines,
            &[
                "-A POSTROUTING -m comment --comment \"flanneld masq\" -j FLANNEL-POSTRTG",
                "-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 -m comment --comment \"flanneld masq\" -j RETURN",
                "-A FLANNEL-POSTRTG -s 10.5.72.0/24 -d 10.5.0.0/16 -m comment --comment \"flanneld masq\" -j RETURN",
                "-A FLANNEL-POSTRTG -s 10.5.0.0/16 -d 10.5.72.0/24 -m comment --comment \"flanneld masq\" -j RETURN",
                "-A FLANNEL-POSTRTG ! -s 10.5.0.0/16 -d 10.5.72.0/24 -m comment --comment \"flanneld masq\" -j RETURN",
                "-A FLANNEL-POSTRTG -s 10.5.0.0/16 ! -d 224.0.0.0/4 -m comment --comment \"flanneld masq\" -j MASQUERADE --random-fully",
                "-A FLANNEL-POSTRTG ! -s 10.5.0.0/16 -d 10.5.0.0/16 -m comment --comment \"flanneld masq\" -j MASQUERADE --random-fully",
                "-A FORWARD -m comment --comment \"flanneld forward\" -j FLANNEL-FWD",
                "-A FLANNEL-FWD -s 10.5.0.0/16 -m comment --comment \"flanneld forward\" -j ACCEPT",
                "-A FLANNEL-FWD -d 10.5.0.0/16 -m comment --comment \"flanneld forward\" -j ACCEPT",
            ]
        );
    }

    #[test]
    fn apply_input_adds_jumps_once() {
        let r = rules();
        let f = &r.families[0];
        let fresh = r.apply_input(f, "");
        assert_eq!(fresh.matches("-A POSTROUTING").count(), 1);
        assert_eq!(fresh.matches("-A FORWARD").count(), 1);
        assert!(fresh.starts_with("*nat\n:FLANNEL-POSTRTG - [0:0]\n"));
        let saved = format!(
            "*nat\n{}\nCOMMIT\n*filter\n{}\nCOMMIT\n",
            MasqRules::postrouting_jump(),
            MasqRules::forward_jump()
        );
        let again = r.apply_input(f, &saved);
        assert_eq!(again.matches("-A POSTROUTING").count(), 0);
        assert_eq!(again.matches("-A FORWARD").count(), 0);
        assert_eq!(again.matches("-A FLANNEL-POSTRTG").count(), 6);
    }

    #[test]
    fn remove_input_only_what_exists() {
        let r = rules();
        assert_eq!(r.remove_input("*nat\nCOMMIT\n"), None);
        let saved = format!(
            "*nat\n:FLANNEL-POSTRTG - [0:0]\n{}\n{}\nCOMMIT\n",
            MasqRules::postrouting_jump(),
            MasqRules::postrouting_jump()
        );
        let input = r.remove_input(&saved).expect("something to remove");
        assert_eq!(input.matches("-D POSTROUTING").count(), 2);
        assert!(input.contains("-X FLANNEL-POSTRTG"));
        assert!(!input.contains("FLANNEL-FWD"));
    }

    #[test]
    fn parts_can_be_chosen() {
        assert_eq!(rules().with_parts(false, false), None);
        let fwd = rules().with_parts(false, true).expect("forward");
        let lines = &fwd.expected_lines()[0].1;
        assert_eq!(lines.len(), 3);
        assert!(lines.iter().all(|l| l.contains("FLANNEL-FWD")));
        let input = fwd.apply_input(&fwd.families[0], "");
        assert!(
            input.starts_with("*filter\n") && !input.contains("*nat"),
            "{input}"
        );
        let saved = format!(
            "*nat\n:FLANNEL-POSTRTG - [0:0]\n{}\nCOMMIT\n",
            MasqRules::postrouting_jump()
        );
        // The forward-only set leaves the nat chain (not its own) alone.
        assert_eq!(fwd.remove_input(&saved), None);
        let masq = rules().with_parts(true, false).expect("masq");
        assert!(masq.masquerade());
        assert!(masq.expected_lines()[0]
            .1
            .iter()
            .all(|l| !l.contains("FORWARD")));
    }

    #[test]
    fn without_random_fully() {
        let r = rules().without_random_fully();
        let lines = &r.expected_lines()[0].1;
        assert!(lines.iter().all(|l| !l.contains("random-fully")));
        assert_eq!(
            lines
                .iter()
                .filter(|l| l.ends_with("-j MASQUERADE"))
                .count(),
            2
        );
    }
}
