//! A real etcd for tests: one member on this namespace's loopback, or inside a named network
//! namespace (alone or as one member of a cluster), driven with `etcdctl`.
//!
//! Contract:
//! - [`Etcd::loopback`] starts a single member on free loopback ports of the caller's
//!   namespace with its data in a temporary directory (removed on drop); [`Etcd::loopback_with`]
//!   adds etcd flags and TLS with client-certificate authentication ([`TlsFiles`], made with
//!   `openssl`). [`Etcd::start`] starts a single member inside a [`Netns`], serving
//!   `http://<ip>:2379` and that namespace's loopback; [`Etcd::member`] prepares one member of a
//!   cluster the same way (started by [`Etcd::launch`]). Each returns once etcd answers
//!   `etcdctl endpoint health` (a cluster member: once [`Etcd::wait_healthy`] says so).
//! - The process is our child, killed by PID on drop (never by name). [`Etcd::stop`] /
//!   [`Etcd::restart`] keep the data, [`Etcd::restart_empty`] wipes it (a restore from an empty
//!   data dir), [`Etcd::compact`] compacts to the current revision.
//! - Keys given to [`Etcd::put`], [`Etcd::del`] and [`Etcd::get`] are under flannel's
//!   [`PREFIX`] (`config`, `subnets/10.5.3.0-24`); [`Etcd::ctl`] runs any `etcdctl` command
//!   with the endpoint, the certificates and the credentials filled in.
//! - The tests that use it start with `require_programs!("etcd", "etcdctl")` (and `"openssl"`
//!   for TLS): `tools/test.sh` installs them.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::netns::{self, Netns};

/// flannel's etcd prefix.
pub const PREFIX: &str = "/coreos.com/network";
/// The client port of an etcd inside a namespace.
pub const CLIENT_PORT: u16 = 2379;
/// The peer port of an etcd inside a namespace.
pub const PEER_PORT: u16 = 2380;
/// The name of a single member.
const SINGLE: &str = "wfl";
/// How long etcd gets to become healthy.
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(20);

/// A loopback port nothing listens on (for the moment).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding a loopback port")?;
    Ok(listener.local_addr()?.port())
}

/// Certificates for an etcd with TLS and client-certificate authentication.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The throw-away CA.
    pub ca: PathBuf,
    /// The server's certificate (for 127.0.0.1).
    pub server_cert: PathBuf,
    /// The server's key.
    pub server_key: PathBuf,
    /// A client certificate signed by the CA.
    pub client_cert: PathBuf,
    /// Its key.
    pub client_key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .context("running openssl")?;
    if !out.status.success() {
        bail!(
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl TlsFiles {
    /// A throw-away CA, a server certificate for 127.0.0.1 and a client certificate, in `dir`.
    pub fn generate(dir: &Path) -> anyhow::Result<TlsFiles> {
        std::fs::write(
            dir.join("server.ext"),
            "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\n\
             extendedKeyUsage=serverAuth,clientAuth\nkeyUsage=digitalSignature\n",
        )?;
        std::fs::write(
            dir.join("client.ext"),
            "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\nkeyUsage=digitalSignature\n",
        )?;
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
        openssl(dir, &ca)?;
        for (name, cn) in [("server", "127.0.0.1"), ("client", "wfl-client")] {
            let (key, csr, crt, ext) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.crt"),
                format!("{name}.ext"),
            );
            let subj = format!("/CN={cn}");
            let mut req = vec!["req"];
            req.extend(ec);
            req.extend(["-keyout", &key, "-out", &csr, "-subj", &subj]);
            openssl(dir, &req)?;
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
            )?;
        }
        Ok(TlsFiles {
            ca: dir.join("ca.crt"),
            server_cert: dir.join("server.crt"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.crt"),
            client_key: dir.join("client.key"),
        })
    }
}

/// An etcd process of ours (see the module documentation), killed by PID on drop.
#[derive(Debug)]
pub struct Etcd {
    child: Option<Child>,
    /// The namespace it runs in (`ip netns exec`), or `None`: the caller's.
    ns: Option<String>,
    endpoint: String,
    data: PathBuf,
    log: PathBuf,
    args: Vec<String>,
    tls: Option<TlsFiles>,
    /// `user:password` for etcdctl once authentication is on.
    user: Option<String>,
    /// The scratch directory of a loopback etcd (its data and log), removed on drop.
    _scratch: Option<tempfile::TempDir>,
}

impl Etcd {
    /// Starts a single member on this namespace's loopback (free ports, scratch data).
    pub fn loopback() -> anyhow::Result<Etcd> {
        Etcd::loopback_with(&[], false)
    }

    /// Like [`Etcd::loopback`] with more etcd `flags` (`--auth-token-ttl=1`) and, with `tls`,
    /// serving TLS with client-certificate authentication.
    pub fn loopback_with(flags: &[&str], tls: bool) -> anyhow::Result<Etcd> {
        let scratch = tempfile::Builder::new()
            .prefix("weft-etcd-")
            .tempdir()
            .context("creating etcd's scratch directory")?;
        let tls = if tls {
            Some(TlsFiles::generate(scratch.path())?)
        } else {
            None
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let client = format!("{scheme}://127.0.0.1:{}", free_port()?);
        let peer = format!("http://127.0.0.1:{}", free_port()?);
        let mut args = vec![
            format!("--name={SINGLE}"),
            format!("--listen-client-urls={client}"),
            format!("--advertise-client-urls={client}"),
            format!("--listen-peer-urls={peer}"),
            format!("--initial-advertise-peer-urls={peer}"),
            format!("--initial-cluster={SINGLE}={peer}"),
        ];
        if let Some(t) = &tls {
            args.extend([
                format!("--cert-file={}", t.server_cert.display()),
                format!("--key-file={}", t.server_key.display()),
                format!("--trusted-ca-file={}", t.ca.display()),
                "--client-cert-auth".to_owned(),
            ]);
        }
        args.extend(flags.iter().map(|f| (*f).to_owned()));
        let data = scratch.path().join("data");
        args.push(format!("--data-dir={}", data.display()));
        let mut etcd = Etcd {
            child: None,
            ns: None,
            endpoint: client,
            data,
            log: scratch.path().join("etcd.log"),
            args,
            tls,
            user: None,
            _scratch: Some(scratch),
        };
        etcd.spawn()?;
        Ok(etcd)
    }

    /// Starts a single member in `ns`, serving `http://<ip>:2379` (`http://[<ip>]:2379` for
    /// an IPv6 address; and that namespace's loopback), with its data in `<dir>/etcd-data`
    /// and its log in `<dir>/etcd.log`; waits until it is healthy.
    pub fn start(ns: &Netns, ip: impl Into<IpAddr>, dir: &Path) -> anyhow::Result<Etcd> {
        let peer = format!("http://127.0.0.1:{PEER_PORT}");
        let mut etcd = Etcd::member(ns, ip, &peer, SINGLE, &format!("{SINGLE}={peer}"), dir);
        etcd.spawn()?;
        Ok(etcd)
    }

    /// An etcd member named `name` in `ns` (not started yet: [`Etcd::launch`]), serving
    /// clients on `http://<ip>:2379` and its namespace's loopback, talking to its peers on
    /// `peer` (a URL), in the cluster `initial_cluster` (`name=peer-url,...`), with its data
    /// in `<dir>/etcd-<name>` and its log in `<dir>/etcd-<name>.log` (the single member of
    /// [`Etcd::start`]: `<dir>/etcd-data`, `<dir>/etcd.log`).
    pub fn member(
        ns: &Netns,
        ip: impl Into<IpAddr>,
        peer: &str,
        name: &str,
        initial_cluster: &str,
        dir: &Path,
    ) -> Etcd {
        let client = format!("http://{}", SocketAddr::new(ip.into(), CLIENT_PORT));
        let (data, log) = if name == SINGLE {
            (dir.join("etcd-data"), dir.join("etcd.log"))
        } else {
            (
                dir.join(format!("etcd-{name}")),
                dir.join(format!("etcd-{name}.log")),
            )
        };
        let args = vec![
            format!("--name={name}"),
            format!("--data-dir={}", data.display()),
            format!("--listen-client-urls={client},http://127.0.0.1:{CLIENT_PORT}"),
            format!("--advertise-client-urls={client}"),
            format!("--listen-peer-urls={peer}"),
            format!("--initial-advertise-peer-urls={peer}"),
            format!("--initial-cluster={initial_cluster}"),
        ];
        Etcd {
            child: None,
            ns: Some(ns.name().to_owned()),
            endpoint: client,
            data,
            log,
            args,
            tls: None,
            user: None,
            _scratch: None,
        }
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        self.launch()?;
        self.wait_healthy()
    }

    /// A command running `program` where this etcd runs.
    fn command(&self, program: &str) -> Command {
        match &self.ns {
            Some(ns) => {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", ns, program]);
                cmd
            }
            None => Command::new(program),
        }
    }

    /// Starts the etcd process (on its data, if any) without waiting for it to be healthy:
    /// a cluster member is healthy only once a quorum runs.
    pub fn launch(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            bail!("etcd {} is already running", self.endpoint);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let child = self
            .command("etcd")
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting etcd (is it installed?)")?;
        netns::register_pid(child.id() as i32);
        self.child = Some(child);
        Ok(())
    }

    /// Waits (up to 20 s) until `etcdctl endpoint health` succeeds on this member.
    pub fn wait_healthy(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + HEALTHY_TIMEOUT;
        while !self.ctl_ok(&["endpoint", "health"]) {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                if let Some(child) = self.child.take() {
                    netns::unregister_pid(child.id() as i32);
                }
                bail!("etcd exited ({status}): {}", self.log());
            }
            if Instant::now() > deadline {
                bail!("etcd not healthy after {HEALTHY_TIMEOUT:?}: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// Whether this etcd process runs (it was started and not stopped).
    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// The client URL.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// weftd's store flags for this etcd.
    pub fn store_args(&self) -> Vec<String> {
        vec!["--etcd-endpoints".to_owned(), self.endpoint.clone()]
    }

    /// The certificates, for an etcd serving TLS.
    pub fn tls(&self) -> Option<&TlsFiles> {
        self.tls.as_ref()
    }

    /// Kills etcd (by PID), keeping its data.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            netns::unregister_pid(child.id() as i32);
        }
    }

    /// Starts it again on the same addresses and data.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.spawn()
    }

    /// Starts it again with an empty data dir: every key and lease is gone, the revision
    /// starts over.
    pub fn restart_empty(&mut self) -> anyhow::Result<()> {
        self.stop();
        if self.data.exists() {
            std::fs::remove_dir_all(&self.data)
                .with_context(|| format!("removing {}", self.data.display()))?;
        }
        self.spawn()
    }

    /// Turns on etcd's authentication with a `root` user; etcdctl uses it from then on.
    pub fn enable_auth(&mut self, password: &str) -> anyhow::Result<()> {
        self.ctl(&["user", "add", &format!("root:{password}")])?;
        self.ctl(&["auth", "enable"])?;
        self.user = Some(format!("root:{password}"));
        Ok(())
    }

    /// etcd's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn ctl_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = self.command("etcdctl");
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoint))
            .arg("--command-timeout=5s");
        if let Some(t) = &self.tls {
            cmd.arg(format!("--cacert={}", t.ca.display()))
                .arg(format!("--cert={}", t.client_cert.display()))
                .arg(format!("--key={}", t.client_key.display()));
        }
        if let Some(user) = &self.user {
            cmd.arg(format!("--user={user}"));
        }
        cmd.args(args);
        cmd
    }

    /// Whether `etcdctl args` succeeds.
    pub fn ctl_ok(&self, args: &[&str]) -> bool {
        self.ctl_cmd(args)
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// `etcdctl args`'s stdout, or an error with its stderr.
    pub fn ctl(&self, args: &[&str]) -> anyhow::Result<String> {
        let out: Output = self.ctl_cmd(args).output().context("running etcdctl")?;
        if !out.status.success() {
            bail!(
                "etcdctl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Puts `value` at `<prefix>/<name>`.
    pub fn put(&self, name: &str, value: &str) -> anyhow::Result<()> {
        self.ctl(&["put", &format!("{PREFIX}/{name}"), value])
            .map(drop)
    }

    /// Deletes `<prefix>/<name>`.
    pub fn del(&self, name: &str) -> anyhow::Result<()> {
        self.ctl(&["del", &format!("{PREFIX}/{name}")]).map(drop)
    }

    /// The value at `<prefix>/<name>` (empty when there is none).
    pub fn get(&self, name: &str) -> anyhow::Result<String> {
        let out = self.ctl(&["get", "--print-value-only", &format!("{PREFIX}/{name}")])?;
        Ok(out.trim_end_matches('\n').to_owned())
    }

    /// Runs `etcdctl txn` with `ops` (`put <key> <value>` / `del <key>` lines, keys under the
    /// prefix already expanded): many writes in one revision, as a burst.
    pub fn txn(&self, ops: &[String]) -> anyhow::Result<()> {
        let mut input = String::from("\n");
        for op in ops {
            input.push_str(op);
            input.push('\n');
        }
        input.push_str("\n\n");
        let mut child = self
            .ctl_cmd(&["txn"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("running etcdctl txn")?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(input.as_bytes()).context("etcdctl txn")?;
        }
        let out = child.wait_with_output().context("etcdctl txn")?;
        if !out.status.success() {
            bail!(
                "etcdctl txn: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// The current store revision.
    pub fn revision(&self) -> anyhow::Result<i64> {
        let out = self.ctl(&["endpoint", "status", "-w", "json"])?;
        let v: serde_json::Value = serde_json::from_str(&out).context("etcdctl status JSON")?;
        v.get(0)
            .and_then(|s| s.pointer("/Status/header/revision"))
            .and_then(serde_json::Value::as_i64)
            .with_context(|| format!("no revision in {out}"))
    }

    /// Compacts the history up to the current revision (a watch from before fails).
    pub fn compact(&self) -> anyhow::Result<i64> {
        let rev = self.revision()?;
        self.ctl(&["compact", &rev.to_string(), "--physical"])?;
        Ok(rev)
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}
