//! A client for weftd's control socket ([`engine::control`]).
//!
//! Contract: [`request`] connects to the socket, writes one request line (`stats`, `routes`),
//! reads the reply until weftd closes the connection and parses it as JSON, all within
//! [`TIMEOUT`]; [`request_in`] does it from inside a network namespace (weftd's default
//! socket is an abstract name, which belongs to its namespace). [`find`] picks the socket when
//! none is named: the only weftd listening in the caller's namespace. [`drops`] and [`counter`]
//! read the `stats` reply without panicking on any shape (a missing field reads as 0).

use std::io::{Read, Write};
use std::time::Duration;

use anyhow::{bail, Context};
use engine::control::ControlAddr;
use serde_json::Value;

/// How long a request may take.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// The control socket to talk to: `given`, else the one weftd listening in this network
/// namespace (an error naming the choices when there are several, or saying where to run when
/// there is none).
pub fn find(given: Option<ControlAddr>) -> anyhow::Result<ControlAddr> {
    if let Some(addr) = given {
        return Ok(addr);
    }
    let found = ControlAddr::discover().context("listing unix sockets (/proc/net/unix)")?;
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!(
            "no weftd control socket (@weft/...) in this network namespace: run weftctl where \
             weftd runs (e.g. `ip netns exec NODE weftctl stats`), or pass --control"
        ),
        many => bail!(
            "several weftd control sockets in this network namespace: {}; pass --control",
            many.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// [`request`] from a thread inside the network namespace `netns` (a name under /run/netns),
/// to `addr` or, without one, to the weftd found there ([`find`]).
pub fn request_in(netns: &str, addr: Option<&ControlAddr>, req: &str) -> anyhow::Result<Value> {
    let (netns, addr, req) = (netns.to_owned(), addr.cloned(), req.to_owned());
    std::thread::spawn(move || {
        weft_testkit::netns::enter(&netns)?;
        request(&find(addr)?, &req)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the control request thread panicked"))?
}

/// Sends `request` (without the newline) and returns the parsed reply.
pub fn request(addr: &ControlAddr, request: &str) -> anyhow::Result<Value> {
    let what = || format!("control request {request:?} to {addr}");
    let mut conn = addr
        .connect()
        .with_context(|| format!("{}: connecting (is weftd running?)", what()))?;
    conn.set_read_timeout(Some(TIMEOUT))?;
    conn.set_write_timeout(Some(TIMEOUT))?;
    conn.write_all(format!("{request}\n").as_bytes())
        .with_context(what)?;
    let mut reply = Vec::new();
    conn.read_to_end(&mut reply).with_context(what)?;
    serde_json::from_slice(&reply).with_context(|| {
        format!(
            "{}: the reply is not JSON: {:?}",
            what(),
            String::from_utf8_lossy(&reply)
        )
    })
}

/// The drop counter for `reason` in a `stats` reply (0 when absent).
pub fn drops(stats: &Value, reason: &str) -> u64 {
    stats
        .get("drops")
        .and_then(|d| d.get(reason))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

/// The sum of all drop counters in a `stats` reply.
pub fn total_drops(stats: &Value) -> u64 {
    stats
        .get("drops")
        .and_then(Value::as_object)
        .map_or(0, |d| d.values().filter_map(Value::as_u64).sum())
}

/// The sum of the transmit side's drop counters (TUN -> UDP: `no_route`, `too_big`, ...; the
/// reasons for which [`DropReason::on_transmit`] holds) in a `stats` reply.
///
/// [`DropReason::on_transmit`]: engine::pump::DropReason::on_transmit
pub fn transmit_drops(stats: &Value) -> u64 {
    engine::pump::DropReason::ALL
        .iter()
        .filter(|r| r.on_transmit())
        .map(|r| drops(stats, r.as_str()))
        .sum()
}

/// A pump counter (`tun_rx_packets`, `udp_rx_datagrams`, ...) in a `stats` reply.
pub fn counter(stats: &Value, name: &str) -> u64 {
    stats
        .get("pump")
        .and_then(|p| p.get(name))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_counters_from_any_shape() {
        let stats: Value = serde_json::json!({
            "pump": {"tun_rx_packets": 5},
            "drops": {"spoofed": 2, "unknown_peer": 3},
        });
        assert_eq!(drops(&stats, "spoofed"), 2);
        assert_eq!(drops(&stats, "truncated"), 0);
        assert_eq!(total_drops(&stats), 5);
        assert_eq!(counter(&stats, "tun_rx_packets"), 5);
        assert_eq!(total_drops(&Value::Null), 0);
        assert_eq!(counter(&serde_json::json!([1, 2]), "x"), 0);
    }
}
