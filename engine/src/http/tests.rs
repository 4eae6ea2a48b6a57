use weft_testkit::wait;

use super::*;
use crate::model::Backend;
use crate::pump::DropReason;

fn control_state() -> ControlState {
    let state = ControlState::detached(
        Backend::Udp,
        "{\"subnet\": \"10.244.2.0/24\", \"public_ip\": \"192.168.250.2\", \"backend\": \"udp\"}",
        2,
    );
    state.routes.load().peers()[0].counters().add_tx(2, 200);
    let (a, b) = (&state.counters[0], &state.counters[1]);
    a.gso_sends.add(4);
    b.gso_sends.add(3);
    a.gso_batch.record(1);
    a.gso_batch.record(44);
    b.gso_batch.record(3);
    b.gro_batch.record(64);
    b.count_drop(DropReason::UnknownPeer);
    state
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes()
}

#[test]
fn routes_every_status() {
    assert_eq!(route(&get("/healthz")), Ok(Endpoint::Healthz));
    assert_eq!(route(&get("/readyz")), Ok(Endpoint::Readyz));
    assert_eq!(route(&get("/metrics?x=1")), Ok(Endpoint::Metrics));
    assert_eq!(route(b"GET /metrics HTTP/1.0\n\n"), Ok(Endpoint::Metrics));
    assert_eq!(route(&get("/")), Err(404));
    assert_eq!(route(&get("/healthz/x")), Err(404));
    assert_eq!(route(b"POST /healthz HTTP/1.1\r\n\r\n"), Err(405));
    assert_eq!(route(b"HEAD /metrics HTTP/1.1\r\n\r\n"), Err(405));
    for bad in [
        &b"GET /healthz\r\n\r\n"[..],
        b"GET  /healthz HTTP/1.1\r\n\r\n",
        b"GET healthz HTTP/1.1\r\n\r\n",
        b"get /healthz HTTP/1.1\r\n\r\n",
        b"GET /healthz SPDY/3\r\n\r\n",
        b"\xff\xfe /healthz HTTP/1.1\r\n\r\n",
        b"no newline",
    ] {
        assert_eq!(route(bad), Err(400), "{bad:?}");
    }
}

#[test]
fn responds_with_readiness_and_metrics() {
    let health = Health::new();
    assert_eq!(respond(&get("/healthz"), &health).status, 200);
    assert_eq!(respond(&get("/healthz"), &health).body, "ok\n");
    assert_eq!(respond(&get("/readyz"), &health).status, 503);
    assert_eq!(respond(&get("/nope"), &health).status, 404);
    let r = respond(b"PUT /readyz HTTP/1.1\r\n\r\n", &health);
    assert_eq!(r.status, 405);
    assert!(String::from_utf8(r.to_bytes())
        .unwrap()
        .contains("Allow: GET\r\n"));
    assert_eq!(respond(b"garbage\r\n\r\n", &health).status, 400);

    health.set_dataplane(control_state());
    health.set_ready();
    // Per-peer series are opt-in.
    let off = respond(&get("/metrics"), &health).body;
    assert!(!off.contains("weft_peer_"), "{off}");
    health.set_per_peer_metrics(true);
    assert_eq!(respond(&get("/readyz"), &health).status, 200);
    let stats = Arc::new(ManagerStats::default());
    stats.renewals.fetch_add(5, Ordering::Relaxed);
    health.set_manager(stats);
    let m = respond(&get("/metrics"), &health);
    assert_eq!(m.status, 200);
    assert!(m.content_type.contains("version=0.0.4"));
    for line in [
        "weft_pump_gso_sends_total 7",
        "weft_pump_gso_fallback_sends_total 0",
        "weft_pump_gro_merged_total 0",
        "weft_pump_rx_csum_partial_total 0",
        "weft_drops_total{reason=\"unknown_peer\"} 1",
        "weft_drops_total{reason=\"spoofed\"} 0",
        "weft_routes 1",
        "weft_direct_routes 0",
        "# TYPE weft_gso_batch_segments histogram",
        "weft_gso_batch_segments_bucket{le=\"1\"} 1",
        "weft_gso_batch_segments_bucket{le=\"2\"} 1",
        "weft_gso_batch_segments_bucket{le=\"4\"} 2",
        "weft_gso_batch_segments_bucket{le=\"32\"} 2",
        "weft_gso_batch_segments_bucket{le=\"64\"} 3",
        "weft_gso_batch_segments_bucket{le=\"+Inf\"} 3",
        "weft_gso_batch_segments_sum 48",
        "weft_gso_batch_segments_count 3",
        "weft_gro_batch_datagrams_bucket{le=\"32\"} 0",
        "weft_gro_batch_datagrams_bucket{le=\"64\"} 1",
        "weft_gro_batch_datagrams_count 1",
        "weft_lease_renewals_total 5",
        "weft_lease_watch_reconnects_total 0",
        "weft_ready 1",
        "# TYPE weft_drops_total counter",
        "weft_peer_tx_packets_total{peer=\"192.168.250.2\"} 2",
        "weft_peer_tx_bytes_total{peer=\"192.168.250.2\"} 200",
        "weft_peer_rx_bytes_total{peer=\"192.168.250.2\"} 0",
        "# TYPE process_cpu_seconds_total counter",
    ] {
        assert!(m.body.lines().any(|l| l == line), "{line} in\n{}", m.body);
    }
    let build = format!(
        "weft_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    assert!(m.body.lines().any(|l| l == build), "{build} in\n{}", m.body);
    // Every sample line is `name{labels} value` with a numeric value.
    for l in m.body.lines().filter(|l| !l.starts_with('#')) {
        let (_, value) = l.rsplit_once(' ').unwrap();
        let v: f64 = value.parse().unwrap_or_else(|e| panic!("{l}: {e}"));
        assert!(v.is_finite() && v >= 0.0, "{l}");
    }
}

fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn serves_over_tcp_with_limits() {
    let health = Arc::new(Health::new());
    let addr = serve("127.0.0.1:0".parse().unwrap(), Arc::clone(&health)).unwrap();
    assert!(exchange(addr, &get("/healthz")).starts_with("HTTP/1.1 200 OK\r\n"));
    assert!(exchange(addr, &get("/readyz")).starts_with("HTTP/1.1 503 "));
    health.set_ready();
    assert!(exchange(addr, &get("/readyz")).starts_with("HTTP/1.1 200 "));
    assert!(exchange(addr, b"DELETE /healthz HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405 "));
    // A head that never ends within MAX_HEAD.
    let mut big = b"GET /healthz HTTP/1.1\r\nX: ".to_vec();
    big.resize(MAX_HEAD + 100, b'a');
    assert!(exchange(addr, &big).starts_with("HTTP/1.1 431 "));
    // A client that connects and says nothing does not block the next one for long.
    let idle = TcpStream::connect(addr).unwrap();
    let started = Instant::now();
    assert!(exchange(addr, &get("/healthz")).starts_with("HTTP/1.1 200 "));
    assert!(started.elapsed() <= CLIENT_TIMEOUT + Duration::from_secs(2));
    drop(idle);
}

#[test]
fn idle_clients_do_not_delay_a_probe() {
    let health = Arc::new(Health::new());
    let addr = serve("127.0.0.1:0".parse().unwrap(), Arc::clone(&health)).unwrap();
    // Slow-loris: clients that connect and send half a head, then nothing.
    let idle: Vec<TcpStream> = (0..MAX_CLIENTS - 1)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    assert!(exchange(addr, &get("/healthz")).starts_with("HTTP/1.1 200 "));
    assert!(
        // Far below CLIENT_TIMEOUT, what a server that waited on the idle clients would take.
        started.elapsed() < CLIENT_TIMEOUT / 2,
        "a probe waited {:?} behind idle clients",
        started.elapsed()
    );
    // Over the cap a connection is closed without a reply (once the accept thread has given
    // the last slot to one of `more`: probes are served until then), and the slots come back
    // as soon as the idle clients hang up, well before their CLIENT_TIMEOUT would free them.
    let more: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let probe = || exchange(addr, &get("/healthz"));
    assert!(
        wait::until(Duration::from_secs(3), || probe().is_empty()).is_some(),
        "a probe over the cap was still served"
    );
    drop(more);
    drop(idle);
    let served = || probe().starts_with("HTTP/1.1 200 ");
    assert!(
        wait::until(CLIENT_TIMEOUT / 2, served).is_some(),
        "the slots did not come back when the idle clients hung up"
    );
}

#[test]
fn listens_only_on_the_healthz_ip() {
    let health = Arc::new(Health::new());
    let addr = serve("127.0.0.1:0".parse().unwrap(), health).unwrap();
    assert!(exchange(addr, &get("/healthz")).starts_with("HTTP/1.1 200 "));
    // Another loopback address of this host, same port: nothing listens there.
    let other = SocketAddr::new("127.0.0.2".parse().unwrap(), addr.port());
    let refused = TcpStream::connect_timeout(&other, Duration::from_secs(2));
    assert!(
        refused.is_err(),
        "{other} answered: bound wider than --healthz-ip"
    );
}
