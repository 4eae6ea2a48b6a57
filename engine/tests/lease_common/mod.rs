//! Shared by the `lease_*` integration tests: a real etcd started per test, temporary
//! directories, skipping rules, and helpers to wait for manager events.
//!
//! Skipping: a test that lacks `etcd` (or root, for netns tests) prints why and returns,
//! unless `CI=true`, where it fails: CI installs etcd and runs as root.
#![allow(dead_code, unreachable_pub)]

pub mod scenarios;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use engine::lease::{ManagerEvent, PeerSet, SubnetKey};
use engine::Stop;

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A stop request nobody makes (for watches and managers a test ends by dropping them).
pub fn no_stop() -> Stop {
    Stop::new().expect("creating an eventfd")
}

/// Whether the environment says this is CI.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Fails under CI, else prints the reason (the caller then returns).
pub fn skip(test: &str, reason: &str) {
    assert!(
        !in_ci(),
        "{test}: cannot run: {reason}; with CI=true this test must run"
    );
    eprintln!("skipping {test}: {reason}");
}

/// Whether a program is on PATH.
pub fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A fresh temporary directory, removed on drop.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!(
            "wfl-{tag}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("create temp dir");
        TempDir(d)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A loopback port nothing listens on (for the moment).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Certificates for an etcd with TLS and client-certificate authentication.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TlsFiles {
    /// A throw-away CA, a server certificate for 127.0.0.1 and a client certificate.
    pub fn generate(dir: &Path) -> TlsFiles {
        std::fs::write(
            dir.join("server.ext"),
            "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\n\
             extendedKeyUsage=serverAuth,clientAuth\nkeyUsage=digitalSignature\n",
        )
        .expect("ext file");
        std::fs::write(
            dir.join("client.ext"),
            "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\nkeyUsage=digitalSignature\n",
        )
        .expect("ext file");
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let mut ca = vec!["req", "-x509"];
        ca.extend(ec);
        ca.extend([
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-subj",
            "/CN=wfl-test-ca",
            "-days",
            "2",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        openssl(dir, &ca);
        for (name, cn) in [("server", "127.0.0.1"), ("client", "wfl-client")] {
            let mut req = vec!["req"];
            req.extend(ec);
            let key = format!("{name}.key");
            let csr = format!("{name}.csr");
            let subj = format!("/CN={cn}");
            req.extend(["-keyout", &key, "-out", &csr, "-subj", &subj]);
            openssl(dir, &req);
            let crt = format!("{name}.crt");
            let ext = format!("{name}.ext");
            openssl(
                dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    "ca.crt",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-out",
                    &crt,
                    "-days",
                    "2",
                    "-extfile",
                    &ext,
                ],
            );
        }
        TlsFiles {
            ca: dir.join("ca.crt"),
            server_cert: dir.join("server.crt"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.crt"),
            client_key: dir.join("client.key"),
        }
    }
}

/// A single-member etcd on loopback ports, killed (by PID) on drop.
#[derive(Debug)]
pub struct Etcd {
    child: Option<Child>,
    dir: TempDir,
    client_port: u16,
    peer_port: u16,
    tls: Option<TlsFiles>,
    /// `user:password` for etcdctl once auth is on.
    user: Option<String>,
    /// More etcd flags.
    flags: Vec<String>,
    pub endpoint: String,
}

impl Etcd {
    /// Starts etcd, or returns `None` after [`skip`] when it is not installed.
    pub fn start(test: &str) -> Option<Etcd> {
        Etcd::start_with(test, false, &[])
    }

    /// Starts etcd with more flags (`--auth-token-ttl=1`), or `None` after [`skip`].
    pub fn start_with_flags(test: &str, flags: &[&str]) -> Option<Etcd> {
        Etcd::start_with(test, false, flags)
    }

    /// Starts etcd serving TLS with client-certificate authentication (certificates made with
    /// `openssl`), or `None` after [`skip`].
    pub fn start_tls(test: &str) -> Option<Etcd> {
        if !have("openssl") {
            skip(test, "openssl is not installed");
            return None;
        }
        Etcd::start_with(test, true, &[])
    }

    fn start_with(test: &str, tls: bool, flags: &[&str]) -> Option<Etcd> {
        if !have("etcd") || !have("etcdctl") {
            skip(
                test,
                "etcd / etcdctl are not installed (apt-get install etcd-server etcd-client)",
            );
            return None;
        }
        let client_port = free_port();
        let peer_port = free_port();
        let dir = TempDir::new("etcd");
        let tls = tls.then(|| TlsFiles::generate(dir.path()));
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut etcd = Etcd {
            child: None,
            dir,
            client_port,
            peer_port,
            tls,
            user: None,
            flags: flags.iter().map(|f| (*f).to_owned()).collect(),
            endpoint: format!("{scheme}://127.0.0.1:{client_port}"),
        };
        etcd.spawn();
        Some(etcd)
    }

    pub fn tls(&self) -> Option<&TlsFiles> {
        self.tls.as_ref()
    }

    /// Turns on etcd's authentication with a `root` user; etcdctl uses it from then on.
    pub fn enable_auth(&mut self, password: &str) {
        self.etcdctl(&["user", "add", &format!("root:{password}")]);
        self.etcdctl(&["auth", "enable"]);
        self.user = Some(format!("root:{password}"));
    }

    fn spawn(&mut self) {
        let client = self.endpoint.clone();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::File::create(self.dir.path().join("etcd.log")).expect("etcd log");
        let mut cmd = Command::new("etcd");
        if let Some(t) = &self.tls {
            cmd.arg(format!("--cert-file={}", t.server_cert.display()))
                .arg(format!("--key-file={}", t.server_key.display()))
                .arg(format!("--trusted-ca-file={}", t.ca.display()))
                .arg("--client-cert-auth");
        }
        let child = cmd
            .arg("--name=wfl")
            .arg(format!(
                "--data-dir={}",
                self.dir.path().join("data").display()
            ))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=wfl={peer}"))
            .args(&self.flags)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start etcd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ok = self
                .etcdctl_output(&["endpoint", "health"])
                .is_some_and(|o| o.status.success());
            if ok {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("etcd exited ({status}): {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "etcd did not become healthy: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default()
    }

    /// Kills etcd (by PID), keeping its data.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same ports and data.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    fn etcdctl_output(&self, args: &[&str]) -> Option<Output> {
        let mut cmd = Command::new("etcdctl");
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoint))
            .arg("--command-timeout=3s");
        if let Some(t) = &self.tls {
            cmd.arg(format!("--cacert={}", t.ca.display()))
                .arg(format!("--cert={}", t.client_cert.display()))
                .arg(format!("--key={}", t.client_key.display()));
        }
        if let Some(user) = &self.user {
            cmd.arg(format!("--user={user}"));
        }
        cmd.args(args).output().ok()
    }

    /// Runs etcdctl; panics with its stderr on failure; returns stdout.
    pub fn etcdctl(&self, args: &[&str]) -> String {
        let out = self.etcdctl_output(args).expect("run etcdctl");
        assert!(
            out.status.success(),
            "etcdctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The value of one key (`etcdctl get --print-value-only`).
    pub fn get(&self, key: &str) -> String {
        self.etcdctl(&["get", "--print-value-only", key])
            .trim_end_matches('\n')
            .to_owned()
    }

    /// The current revision.
    pub fn revision(&self) -> i64 {
        let out = self.etcdctl(&["get", "x", "-w", "json"]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("etcdctl json");
        v["header"]["revision"].as_i64().expect("revision")
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits up to `timeout` for a peer set satisfying `pred`; returns it and the time it took.
pub fn wait_peers(
    rx: &Receiver<ManagerEvent>,
    timeout: Duration,
    pred: impl Fn(&PeerSet) -> bool,
) -> Option<(PeerSet, Duration)> {
    let start = Instant::now();
    let deadline = start + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(ManagerEvent::Peers(set)) if pred(&set) => return Some((set, start.elapsed())),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

/// Whether a peer set holds `key`.
pub fn has(set: &PeerSet, key: &str) -> bool {
    let key = SubnetKey::parse(key).expect("key");
    set.peers.iter().any(|p| p.key == key)
}
