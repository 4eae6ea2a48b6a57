//! A real etcd cluster on a three-node testbed: one member per namespace, hung off the
//! testbed's bridge, and the faults a cluster meets (a member stopped, restarted on its data,
//! cut off by its link or from its peers only, the quorum lost).
//!
//! Contract:
//! - [`EtcdCluster::start`] needs a testbed with a bridge (three nodes). Member `k` lives in
//!   its own namespace `<testbed id>-e<k>` with `veth0` = `192.168.250.<11+k>/24` joined to the
//!   bridge by the switch port `e<k>`; it serves clients on `http://<that address>:2379` and
//!   talks to its peers on port 2380. All members start together and the cluster is healthy
//!   (a leader elected) when `start` returns.
//! - Every process is the test kit's [`Etcd`] (a member made by [`Etcd::member`]), killed by
//!   PID on drop; the namespaces are deleted by name
//!   when the cluster drops (the switch ports go with them). Faults are undone by the calls
//!   that made them ([`EtcdCluster::set_link`], [`EtcdCluster::isolate_peers`]); nothing
//!   outside the testbed's namespaces is touched.
//! - [`EtcdCluster::leader`] asks every running member which member leads.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use weft_testkit::etcd::{Etcd, PEER_PORT, PREFIX};
use weft_testkit::netns::{self, Netns};

use super::{Testbed, UNDERLAY_DEV};

/// The address of member `k`: after the nodes' `192.168.250.1..3`.
pub fn member_ip(k: usize) -> Ipv4Addr {
    Ipv4Addr::new(192, 168, 250, 11 + k as u8)
}

/// A cluster of etcd members on a testbed (see the module documentation).
#[derive(Debug)]
pub struct EtcdCluster {
    // Drop order: the processes, then their namespaces.
    members: Vec<Etcd>,
    hosts: Vec<Netns>,
    switch: String,
    isolated: Vec<bool>,
    link_down: Vec<bool>,
}

impl EtcdCluster {
    /// Starts `size` members on `bed` (which must have a bridge) and waits until the cluster
    /// is healthy.
    pub fn start(bed: &Testbed, size: usize) -> anyhow::Result<EtcdCluster> {
        let switch = bed
            .switch()
            .context("an etcd cluster needs a testbed with a bridge (three nodes)")?;
        if !(1..=9).contains(&size) {
            bail!("an etcd cluster of {size} members");
        }
        let names: Vec<String> = (0..size).map(|k| format!("m{k}")).collect();
        let peer = |k: usize| format!("http://{}:{PEER_PORT}", member_ip(k));
        let initial: Vec<String> = (0..size)
            .map(|k| format!("{}={}", names[k], peer(k)))
            .collect();
        let initial = initial.join(",");
        let mut cluster = EtcdCluster {
            members: Vec::with_capacity(size),
            hosts: Vec::with_capacity(size),
            switch: switch.name().to_owned(),
            isolated: vec![false; size],
            link_down: vec![false; size],
        };
        for (k, name) in names.iter().enumerate() {
            let ns = Netns::create(&format!("{}-e{k}", bed.id()))?;
            let port = format!("e{k}");
            switch.add_veth(&port, ns.name(), UNDERLAY_DEV)?;
            switch.exec_checked("ip", &["link", "set", &port, "master", "br0", "up"])?;
            let addr = format!("{}/24", member_ip(k));
            ns.exec_checked("ip", &["addr", "add", &addr, "dev", UNDERLAY_DEV])?;
            ns.exec_checked("ip", &["link", "set", UNDERLAY_DEV, "up"])?;
            let etcd = Etcd::member(&ns, member_ip(k), &peer(k), name, &initial, bed.dir());
            cluster.hosts.push(ns);
            cluster.members.push(etcd);
        }
        cluster.launch(&(0..size).collect::<Vec<_>>())?;
        Ok(cluster)
    }

    /// How many members.
    pub fn size(&self) -> usize {
        self.members.len()
    }

    /// Member `k`.
    pub fn member(&self, k: usize) -> &Etcd {
        &self.members[k]
    }

    /// The client URLs in the order `order` gives (member indices).
    pub fn endpoints(&self, order: &[usize]) -> Vec<String> {
        order
            .iter()
            .map(|&k| self.members[k].endpoint().to_owned())
            .collect()
    }

    /// weftd's store flags: `--etcd-endpoints` with the members in the order `order`.
    pub fn store_args(&self, order: &[usize]) -> Vec<String> {
        vec![
            "--etcd-endpoints".to_owned(),
            self.endpoints(order).join(","),
        ]
    }

    /// Kills member `k` (by PID), keeping its data.
    pub fn stop(&mut self, k: usize) {
        self.members[k].stop();
    }

    /// Starts the stopped members `ks` on their data (together: a quorum may need several)
    /// and waits until each is healthy.
    pub fn launch(&mut self, ks: &[usize]) -> anyhow::Result<()> {
        for &k in ks {
            self.members[k].launch()?;
        }
        for &k in ks {
            self.members[k]
                .wait_healthy()
                .with_context(|| format!("etcd member m{k}"))?;
        }
        Ok(())
    }

    /// Takes member `k`'s link to the bridge down (`false`: the member is cut off from
    /// everyone, its packets dropped) or up again.
    pub fn set_link(&mut self, k: usize, up: bool) -> anyhow::Result<()> {
        let port = format!("e{k}");
        let state = if up { "up" } else { "down" };
        netns::run_checked(std::process::Command::new("ip").args([
            "netns",
            "exec",
            &self.switch,
            "ip",
            "link",
            "set",
            &port,
            state,
        ]))
        .with_context(|| format!("setting etcd member m{k}'s link {state}"))?;
        self.link_down[k] = !up;
        Ok(())
    }

    /// Drops (`true`) or lets through again the peer traffic (TCP port 2380, both ways) of
    /// member `k`: it is partitioned from the other members but clients still reach it, so
    /// it stays up without a leader, a minority of one.
    pub fn isolate_peers(&mut self, k: usize, isolate: bool) -> anyhow::Result<()> {
        if self.isolated[k] == isolate {
            return Ok(());
        }
        let op = if isolate { "-I" } else { "-D" };
        let port = PEER_PORT.to_string();
        for chain in ["INPUT", "OUTPUT"] {
            self.hosts[k].exec_checked(
                "iptables",
                &[op, chain, "-p", "tcp", "--dport", &port, "-j", "DROP"],
            )?;
        }
        self.isolated[k] = isolate;
        Ok(())
    }

    /// Whether member `k` runs and is neither cut off by its link nor from its peers.
    pub fn in_cluster(&self, k: usize) -> bool {
        self.members[k].running() && !self.link_down[k] && !self.isolated[k]
    }

    /// A member that runs and is not cut off, to write through.
    pub fn serving(&self) -> anyhow::Result<usize> {
        (0..self.size())
            .find(|&k| self.in_cluster(k))
            .context("no member is running and connected")
    }

    /// The index of the member that leads, as the running members that are not cut off see
    /// it (they must agree).
    pub fn leader(&self) -> anyhow::Result<usize> {
        let mut ids = Vec::new();
        let mut leaders = Vec::new();
        for (k, m) in self.members.iter().enumerate() {
            if !self.in_cluster(k) {
                ids.push(None);
                continue;
            }
            let out = m.ctl(&["endpoint", "status", "-w", "json"])?;
            let v: serde_json::Value =
                serde_json::from_str(&out).with_context(|| format!("m{k} status JSON: {out}"))?;
            let status = v.get(0).and_then(|s| s.get("Status"));
            let id = status
                .and_then(|s| s.pointer("/header/member_id"))
                .and_then(serde_json::Value::as_u64);
            let leader = status
                .and_then(|s| s.get("leader"))
                .and_then(serde_json::Value::as_u64);
            ids.push(id);
            leaders.extend(leader);
        }
        leaders.dedup();
        let [leader] = leaders[..] else {
            bail!("the members disagree on the leader or have none: {leaders:?}");
        };
        ids.iter()
            .position(|id| *id == Some(leader))
            .with_context(|| format!("the leader {leader:x} is no running member"))
    }

    /// Waits (up to `limit`) until a leader is elected among the running members; returns it.
    pub fn wait_leader(&self, limit: Duration) -> anyhow::Result<usize> {
        let start = Instant::now();
        loop {
            match self.leader() {
                Ok(k) => return Ok(k),
                Err(e) if start.elapsed() > limit => {
                    return Err(e).context(format!("no leader after {limit:?}"))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// The keys under `<prefix>/subnets/` with their values, as member `k` reads them.
    pub fn leases(&self, k: usize) -> anyhow::Result<Vec<(String, String)>> {
        let out = self.members[k].ctl(&["get", "--prefix", &format!("{PREFIX}/subnets/")])?;
        let lines: Vec<&str> = out.lines().collect();
        Ok(lines
            .chunks(2)
            .filter_map(|kv| match kv {
                [k, v] => Some(((*k).to_owned(), (*v).to_owned())),
                _ => None,
            })
            .collect())
    }

    /// The logs of every member, for a failure message.
    pub fn logs_tail(&self, lines: usize) -> String {
        let mut text = String::new();
        for (k, m) in self.members.iter().enumerate() {
            let log = m.log();
            let all: Vec<&str> = log.lines().collect();
            text.push_str(&format!("--- etcd m{k} ---\n"));
            for l in &all[all.len().saturating_sub(lines)..] {
                text.push_str(l);
                text.push('\n');
            }
        }
        text
    }
}
