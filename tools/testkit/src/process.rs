//! Processes tests start (inside their namespaces or not), with their output in a log file.
//!
//! Contract: a [`Process`] is a child started by this process (`ip netns exec` execs the
//! program, so the child's pid is the program's). Dropping it sends SIGTERM, waits up to
//! [`TERM_GRACE`], then SIGKILLs, and reaps the child, so its pid is never reused while we
//! might still signal it. Stdout and stderr go to one log file that [`Process::wait_for_line`]
//! watches and [`Process::tail`] quotes in error messages.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rustix::process::{Pid, Signal};

use crate::netns::{register_pid, unregister_pid};

/// How long a process gets between SIGTERM and SIGKILL.
pub const TERM_GRACE: Duration = Duration::from_secs(2);
/// How often log files and exit statuses are polled.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Lines of log quoted in errors.
const TAIL_LINES: usize = 40;

/// A started process and its log.
#[derive(Debug)]
pub struct Process {
    label: String,
    child: Option<Child>,
    /// Set once the child has been reaped.
    status: Option<ExitStatus>,
    log: PathBuf,
}

impl Process {
    /// Starts `cmd` with stdout and stderr appended to `log`.
    pub fn spawn(label: &str, mut cmd: Command, log: &Path) -> anyhow::Result<Process> {
        let file = File::create(log).with_context(|| format!("creating log {}", log.display()))?;
        let err = file
            .try_clone()
            .context("duplicating the log file handle")?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(file))
            .stderr(Stdio::from(err));
        let shown = format!("{cmd:?}");
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {label}: {shown}"))?;
        register_pid(child.id() as i32);
        Ok(Process {
            label: label.to_owned(),
            child: Some(child),
            status: None,
            log: log.to_owned(),
        })
    }

    /// The label given at spawn.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The last lines of the log, for error messages.
    pub fn tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        let start = lines.len().saturating_sub(TAIL_LINES);
        lines[start..].join("\n")
    }

    /// The exit status, if the process has exited (or was stopped).
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.as_mut()?.try_wait().ok().flatten();
        }
        self.status
    }

    /// Waits until a log line contains `needle`; fails if the process exits first or after
    /// `timeout`, quoting the log.
    pub fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log().lines().any(|l| l.contains(needle)) {
                return Ok(());
            }
            if let Some(status) = self.try_status() {
                bail!(
                    "{} exited ({status}) before printing {needle:?}; its log:\n{}",
                    self.label,
                    self.tail()
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} did not print {needle:?} within {timeout:?}; its log:\n{}",
                    self.label,
                    self.tail()
                );
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Waits for the process to exit by itself, up to `timeout` (it is killed after that).
    pub fn wait(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status() {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                self.stop();
                bail!(
                    "{} did not exit within {timeout:?} (killed); its log:\n{}",
                    self.label,
                    self.tail()
                );
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Sends `signal` to the process (our child, not yet reaped: the pid is still its own).
    pub fn signal(&mut self, signal: Signal) -> anyhow::Result<()> {
        if self.try_status().is_some() {
            bail!("{} has already exited", self.label);
        }
        let pid = self.pid().context("the process was stopped")?;
        let pid = Pid::from_raw(pid as i32).context("pid 0")?;
        rustix::process::kill_process(pid, signal)
            .with_context(|| format!("sending {signal:?} to {}", self.label))
    }

    /// SIGTERM, up to [`TERM_GRACE`], SIGKILL; reaps the child. Returns the exit status and
    /// whether SIGKILL was needed.
    pub fn stop(&mut self) -> Option<(ExitStatus, bool)> {
        let mut child = self.child.take()?;
        let pid = child.id();
        let result = terminate(&mut child);
        unregister_pid(pid as i32);
        if let Some((status, _)) = result {
            self.status = Some(status);
        }
        result
    }
}

fn terminate(child: &mut Child) -> Option<(ExitStatus, bool)> {
    if let Ok(Some(status)) = child.try_wait() {
        return Some((status, false));
    }
    if let Some(pid) = Pid::from_raw(child.id() as i32) {
        // The child is not reaped yet, so the pid is still ours.
        let _ = rustix::process::kill_process(pid, Signal::TERM);
    }
    let deadline = Instant::now() + TERM_GRACE;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some((status, false));
        }
        std::thread::sleep(POLL_INTERVAL);
    }
    let _ = child.kill();
    child.wait().ok().map(|s| (s, true))
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}
