//! A request head on the health port (`--healthz-port`): whoever reaches the port (a kubelet
//! probe, Prometheus, anyone on the host network) reaches `http::route` and `http::respond`.
//! Each input is answered twice: by a `Health` with nothing set (just started: not ready, no
//! data path) and by a ready one with a data path (two pumps, two peers).
//!
//! Invariants: no panic; the status is one of the documented set (200, 400, 404, 405, 503) and
//! is what `route` decided (readiness only turns `/readyz` into 503); a request `route`
//! accepts has the request line `GET <path>[?query] HTTP/1.x` of its endpoint; the response is
//! well-formed HTTP/1.1: a status line with the code's reason phrase, header lines of a token,
//! `: ` and a value without control characters, `Content-Length` equal to the body's length,
//! `Connection: close`, `Allow: GET` exactly on 405, a blank line, then the body; a `/metrics`
//! body is Prometheus text (HELP / TYPE comments and `name{labels} value` samples).
#![no_main]

use std::sync::LazyLock;

use engine::control::ControlState;
use engine::http::{respond, route, Endpoint, Health};
use engine::model::Backend;
use engine::pump::DropReason;
use libfuzzer_sys::fuzz_target;

static IDLE: LazyLock<Health> = LazyLock::new(Health::new);

static READY: LazyLock<Health> = LazyLock::new(|| {
    let state = ControlState::detached(
        Backend::Vxlan,
        r#"{"subnet": "10.244.2.0/24", "public_ip": "192.168.250.2", "backend": "vxlan", "vtep_mac": "0e:00:00:00:00:02"}
{"subnet": "10.244.3.0/24", "public_ip": "192.168.250.3", "backend": "vxlan", "vtep_mac": "0e:00:00:00:00:03"}"#,
        2,
    );
    state.routes.load().peers()[0].counters().add_tx(2, 200);
    state.counters[0].gso_batch.record(44);
    state.counters[1].gro_batch.record(64);
    state.counters[1].count_drop(DropReason::UnknownPeer);
    let health = Health::new();
    health.set_dataplane(state);
    health.set_per_peer_metrics(true);
    health.set_ready();
    health
});

fuzz_target!(|head: &[u8]| {
    let routed = route(head);
    if let Ok(endpoint) = routed {
        check_request_line(head, endpoint);
    }
    for (health, ready) in [(&*IDLE, false), (&*READY, true)] {
        let r = respond(head, health);
        let expected = match routed {
            Ok(Endpoint::Readyz) if !ready => 503,
            Ok(_) => 200,
            Err(status) => status,
        };
        assert_eq!(r.status, expected, "{head:?}");
        assert!([200, 400, 404, 405, 503].contains(&r.status));
        let bytes = r.to_bytes();
        let body = check_response(&bytes, r.status);
        assert_eq!(body, r.body.as_bytes());
        if routed == Ok(Endpoint::Metrics) {
            check_metrics(&r.body);
        }
    }
});

fn check_request_line(head: &[u8], endpoint: Endpoint) {
    let end = head.iter().position(|&b| b == b'\n').expect("a line");
    let line = std::str::from_utf8(&head[..end]).expect("UTF-8");
    let line = line.strip_suffix('\r').unwrap_or(line);
    let path = match endpoint {
        Endpoint::Healthz => "/healthz",
        Endpoint::Readyz => "/readyz",
        Endpoint::Metrics => "/metrics",
    };
    let rest = line
        .strip_prefix("GET ")
        .and_then(|l| l.strip_prefix(path))
        .unwrap_or_else(|| panic!("{line:?} accepted as {endpoint:?}"));
    let (query, version) = rest.rsplit_once(' ').expect("a version");
    assert!(query.is_empty() || query.starts_with('?'), "{line:?}");
    assert!(!query.contains(' '));
    assert!(version.starts_with("HTTP/1."), "{line:?}");
}

/// Checks the response's framing and returns its body.
fn check_response(bytes: &[u8], status: u16) -> &[u8] {
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a blank line");
    let head = std::str::from_utf8(&bytes[..split]).expect("an ASCII head");
    let body = &bytes[split + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("a status line");
    let reason = status_line
        .strip_prefix(&format!("HTTP/1.1 {status} "))
        .unwrap_or_else(|| panic!("{status_line:?}"));
    assert!(!reason.is_empty() && reason != "Unknown", "{status_line:?}");
    assert!(reason.bytes().all(|b| b == b' ' || b.is_ascii_graphic()));
    let mut length = None;
    let mut close = false;
    let mut allow = false;
    for line in lines {
        let (name, value) = line.split_once(": ").expect("a header line");
        assert!(!name.is_empty(), "{line:?}");
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)),
            "{line:?}"
        );
        assert!(
            value.bytes().all(|b| b == b' ' || b.is_ascii_graphic()),
            "{line:?}"
        );
        match name.to_ascii_lowercase().as_str() {
            "content-length" => {
                assert!(length.is_none(), "two Content-Length");
                length = Some(value.parse::<usize>().expect("a length"));
            }
            "connection" => close = value == "close",
            "allow" => allow = value == "GET",
            _ => {}
        }
    }
    assert_eq!(length, Some(body.len()));
    assert!(close);
    assert_eq!(allow, status == 405);
    body
}

/// The Prometheus text exposition format 0.0.4, line by line.
fn check_metrics(body: &str) {
    assert!(body.ends_with('\n'));
    for line in body.lines() {
        if let Some(comment) = line.strip_prefix("# ") {
            let mut words = comment.splitn(3, ' ');
            let (Some(kind), Some(name)) = (words.next(), words.next()) else {
                panic!("{line:?}");
            };
            assert!(kind == "HELP" || kind == "TYPE", "{line:?}");
            assert!(metric_name(name), "{line:?}");
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("a sample");
        value.parse::<f64>().unwrap_or_else(|_| panic!("{line:?}"));
        let name = series.split_once('{').map_or(series, |(n, labels)| {
            assert!(labels.ends_with('}'), "{line:?}");
            n
        });
        assert!(metric_name(name), "{line:?}");
    }
}

fn metric_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}
