//! Where a lease-mode test keeps its leases: a lease directory or etcd, behind one interface.

use std::net::IpAddr;
use std::path::PathBuf;

use serde_json::Value;
use weft_testkit::etcd::Etcd;
use weftctl::testbed::leased::LeasedNode;
use weftctl::testbed::{Testbed, Underlay};

/// A lease store for the nodes of one testbed.
pub enum Store {
    /// A lease directory.
    Dir(PathBuf),
    /// etcd in node a's namespace.
    Etcd(Box<Etcd>),
}

impl Store {
    /// A lease directory under the testbed's, holding `config`.
    pub fn dir(bed: &Testbed, config: &str) -> Store {
        let dir = bed.dir().join("leases");
        std::fs::create_dir_all(&dir).expect("lease dir");
        std::fs::write(dir.join("config"), config).expect("config");
        Store::Dir(dir)
    }

    /// etcd in node a's namespace on its IPv4 underlay address (or, on an IPv6-only
    /// underlay, its IPv6 one: `http://[fd99::1]:2379`), holding `config`.
    pub fn etcd(bed: &Testbed, config: &str) -> Store {
        let a = bed.node(0);
        let ip: IpAddr = match a.families() {
            Underlay::Ipv6 => a.underlay6().expect("an IPv6 underlay").into(),
            _ => a.underlay().into(),
        };
        let etcd = Etcd::start(a.ns(), ip, bed.dir()).expect("etcd");
        etcd.put("config", config).expect("etcdctl put config");
        Store::Etcd(Box::new(etcd))
    }

    /// weftd's arguments naming this store.
    pub fn args(&self) -> Vec<String> {
        match self {
            Store::Dir(dir) => vec!["--lease-dir".to_owned(), dir.display().to_string()],
            Store::Etcd(etcd) => etcd.store_args(),
        }
    }

    /// Writes `value` as the lease of `subnet` (`10.244.200.0/24`), as another node would.
    pub fn put_lease(&self, subnet: &str, value: &str) {
        let key = key(subnet);
        match self {
            Store::Dir(dir) => {
                std::fs::create_dir_all(dir.join("subnets")).expect("subnets dir");
                std::fs::write(dir.join("subnets").join(key), value).expect("write lease");
            }
            Store::Etcd(etcd) => etcd
                .put(&format!("subnets/{key}"), value)
                .expect("etcdctl put"),
        }
    }

    /// The lease of `subnet` (`10.244.105.0/24`) as stored.
    pub fn lease(&self, subnet: &str) -> String {
        self.read(&key(subnet))
    }

    /// `node`'s lease as stored, parsed.
    pub fn lease_json(&self, node: &LeasedNode) -> Value {
        let key = node.lease_key().expect("lease key");
        let text = self.read(&key);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("lease {key} {text:?}: {e}"))
    }

    /// Deletes the lease of `subnet` (`10.244.105.0/24`).
    pub fn delete_lease(&self, subnet: &str) {
        let key = key(subnet);
        match self {
            Store::Dir(dir) => std::fs::remove_file(dir.join("subnets").join(key)).expect("rm"),
            Store::Etcd(etcd) => etcd.del(&format!("subnets/{key}")).expect("etcdctl del"),
        }
    }

    /// The lease stored under `key` (`10.244.105.0-24`).
    fn read(&self, key: &str) -> String {
        match self {
            Store::Dir(dir) => std::fs::read_to_string(dir.join("subnets").join(key))
                .unwrap_or_else(|e| panic!("lease {key}: {e}")),
            Store::Etcd(etcd) => etcd
                .get(&format!("subnets/{key}"))
                .unwrap_or_else(|e| panic!("lease {key}: {e:#}")),
        }
    }
}

/// The store's key of `subnet`: flannel's `10.244.105.0-24`.
fn key(subnet: &str) -> String {
    subnet.replace('/', "-")
}
