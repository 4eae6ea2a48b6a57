//! Named network namespaces that tests and testbeds create, and the bookkeeping that removes
//! them.
//!
//! Contract: every namespace is named `wft-<pid>-<n>-<role>` ([`unique_id`] gives the
//! `wft-<pid>-<n>` part: the pid of the process that made it and a process-wide counter), created
//! with `ip netns add` and deleted by name with `ip netns del` when its [`Netns`] drops, also
//! during a panic, after the processes still inside are killed. Every namespace, and every
//! process and scratch directory registered with it, is listed in a process-wide registry so
//! that [`cleanup_all`] (the SIGINT / SIGTERM handler of weftctl's testbed commands) can remove
//! them when the normal drops will never run. [`reap_stale`] deletes `wft-<pid>-*` namespaces
//! left behind by a process that no longer exists (a test killed by a timeout), after killing
//! the processes inside them. Nothing else on the host is touched.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::thread::JoinHandle;

use anyhow::{bail, Context};
use rustix::process::{Pid, Signal};
use rustix::thread::LinkNameSpaceType;

/// The prefix of every namespace the kit creates.
pub const PREFIX: &str = "wft-";

static NEXT_ID: AtomicU32 = AtomicU32::new(0);

/// A fresh `wft-<pid>-<n>`, unique on this machine while this process runs: the start of the
/// names of one test's (or testbed's) namespaces.
pub fn unique_id() -> String {
    format!(
        "{PREFIX}{}-{}",
        std::process::id(),
        NEXT_ID.fetch_add(1, Ordering::Relaxed)
    )
}

/// Where `ip netns` keeps the namespace handles.
const NETNS_DIR: &str = "/run/netns";

/// Namespaces, processes and scratch directories alive in this process's tests and testbeds.
struct Registry {
    namespaces: Vec<String>,
    pids: Vec<i32>,
    dirs: Vec<PathBuf>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    namespaces: Vec::new(),
    pids: Vec::new(),
    dirs: Vec::new(),
});

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    // A panic while holding the lock leaves plain vectors behind: still usable.
    REGISTRY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Records a process a test started (so [`cleanup_all`] can kill it).
pub fn register_pid(pid: i32) {
    registry().pids.push(pid);
}

/// Forgets a process once it has been reaped.
pub fn unregister_pid(pid: i32) {
    registry().pids.retain(|p| *p != pid);
}

/// Records a scratch directory of a testbed (removed by [`cleanup_all`]).
pub fn register_dir(dir: &Path) {
    registry().dirs.push(dir.to_owned());
}

/// Forgets a scratch directory (its owner removes it).
pub fn unregister_dir(dir: &Path) {
    registry().dirs.retain(|d| d != dir);
}

/// Kills every process and deletes every namespace this process's tests and testbeds still hold. For
/// signal handlers and other exits where the testbed's drops will not run.
pub fn cleanup_all() {
    let (pids, namespaces, dirs) = {
        let mut r = registry();
        (
            std::mem::take(&mut r.pids),
            std::mem::take(&mut r.namespaces),
            std::mem::take(&mut r.dirs),
        )
    };
    for pid in &pids {
        if let Some(pid) = Pid::from_raw(*pid) {
            let _ = rustix::process::kill_process(pid, Signal::KILL);
        }
    }
    for ns in &namespaces {
        kill_inside(ns);
        let _ = Command::new("ip").args(["netns", "del", ns]).output();
    }
    for dir in &dirs {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// A network namespace created by a test or testbed; deleted by name on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates the namespace `name` (which must start with [`PREFIX`]) and brings its `lo` up.
    pub fn create(name: &str) -> anyhow::Result<Netns> {
        if !name.starts_with(PREFIX) {
            bail!("test namespaces are named {PREFIX}*, not {name:?}");
        }
        run_checked(Command::new("ip").args(["netns", "add", name]))
            .with_context(|| format!("creating network namespace {name}"))?;
        registry().namespaces.push(name.to_owned());
        let ns = Netns {
            name: name.to_owned(),
        };
        ns.exec_checked("ip", &["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Creates `<unique_id()>-<role>`: a namespace of its own for one test.
    pub fn unique(role: &str) -> anyhow::Result<Netns> {
        Netns::create(&format!("{}-{role}", unique_id()))
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip netns exec <name> <program> <args>`, not yet run.
    pub fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]).args(args);
        cmd
    }

    /// Runs `program args` inside the namespace and returns its stdout; an error (with the
    /// command and its stderr) when it fails.
    pub fn exec_checked(&self, program: &str, args: &[&str]) -> anyhow::Result<String> {
        run_checked(&mut self.command(program, args))
            .with_context(|| format!("in namespace {}", self.name))
    }

    /// Adds a veth pair: `port` in this namespace, its peer `peer_dev` in the namespace
    /// `peer` (by name).
    pub fn add_veth(&self, port: &str, peer: &str, peer_dev: &str) -> anyhow::Result<()> {
        self.exec_checked(
            "ip",
            &[
                "link", "add", port, "type", "veth", "peer", "name", peer_dev, "netns", peer,
            ],
        )
        .map(drop)
    }

    /// Runs `f` on a scoped thread that has entered this namespace (what it opens, and the
    /// programs it runs, live there) and returns its result; a panic in `f` propagates.
    pub fn run_inside<R: Send>(&self, f: impl FnOnce() -> R + Send) -> anyhow::Result<R> {
        std::thread::scope(|scope| {
            scope
                .spawn(|| -> anyhow::Result<R> {
                    enter(&self.name)?;
                    Ok(f())
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// Runs `f` on a new thread that has entered this namespace (sockets it opens live there).
    pub fn spawn_inside<R, F>(&self, f: F) -> JoinHandle<anyhow::Result<R>>
    where
        R: Send + 'static,
        F: FnOnce() -> anyhow::Result<R> + Send + 'static,
    {
        let name = self.name.clone();
        std::thread::spawn(move || {
            enter(&name)?;
            f()
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        kill_inside(&self.name);
        if let Err(e) = run_checked(Command::new("ip").args(["netns", "del", &self.name])) {
            eprintln!("deleting namespace {}: {e:#}", self.name);
        }
        registry().namespaces.retain(|n| *n != self.name);
    }
}

/// Moves the calling thread into the namespace `name`.
pub fn enter(name: &str) -> anyhow::Result<()> {
    let path = Path::new(NETNS_DIR).join(name);
    let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    rustix::thread::move_into_link_name_space(
        std::os::fd::AsFd::as_fd(&file),
        Some(LinkNameSpaceType::Network),
    )
    .with_context(|| format!("setns into network namespace {name}"))?;
    Ok(())
}

/// SIGKILLs every process still inside a namespace of ours (`ip netns pids`).
fn kill_inside(name: &str) {
    let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() else {
        return;
    };
    for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        if let Some(pid) = pid.parse().ok().and_then(Pid::from_raw) {
            let _ = rustix::process::kill_process(pid, Signal::KILL);
        }
    }
}

/// Deletes `wft-<pid>-*` namespaces whose creating process is gone (and kills what runs in
/// them). Returns the names deleted.
pub fn reap_stale() -> Vec<String> {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return Vec::new();
    };
    let mut reaped = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        kill_inside(name);
        if run_checked(Command::new("ip").args(["netns", "del", name])).is_ok() {
            reaped.push(name.to_owned());
        }
    }
    reaped
}

/// Runs a command, returning its stdout, or an error naming it with its stderr.
pub fn run_checked(cmd: &mut Command) -> anyhow::Result<String> {
    let shown = format!("{cmd:?}");
    let out: Output = cmd
        .output()
        .with_context(|| format!("running {shown} (is it installed?)"))?;
    if !out.status.success() {
        bail!(
            "{shown} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
