//! What a client writes to the control socket (`@weft/<tun>` or `--control PATH`): any local
//! process in the network namespace (or with access to the socket file) reaches
//! `control::answer` and `control::reply`, with a fixed small `ControlState` (two pumps, two
//! peers, one of them dual stack), built as engine/src/control/mod.rs's unit tests build theirs.
//!
//! Invariants: no panic; the answer is exactly one line of JSON ending in `\n`, the `reply` to
//! the first line trimmed; `stats` gives the stats object (`pump`, `drops` with every drop
//! reason, `peers`, `driver`, `threads`, `offloads`), `routes` the array of the table's routes,
//! and anything else exactly `{"error": "..."}`; the JSON text reads back to the same value.
#![no_main]

use std::sync::LazyLock;

use engine::control::{answer, reply, ControlState};
use engine::model::Backend;
use engine::pump::DropReason;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

static STATE: LazyLock<ControlState> = LazyLock::new(|| {
    let state = ControlState::detached(
        Backend::Vxlan,
        r#"{"subnet": "10.244.2.0/24", "public_ip": "192.168.250.2", "backend": "vxlan", "vtep_mac": "0e:00:00:00:00:02"}
{"subnet": "fd00:10:244:2::/64", "public_ip": "192.168.250.2", "backend": "vxlan", "vtep_mac": "0e:00:00:00:00:02"}
{"subnet": "10.244.3.0/24", "public_ip": "192.168.250.3", "backend": "vxlan", "vtep_mac": "0e:00:00:00:00:03", "port": 4789}"#,
        2,
    );
    state.routes.load().peers()[0].counters().add_tx(2, 200);
    state.counters[0].tun_rx_packets.add(1);
    state.counters[1].tun_rx_packets.add(2);
    state.counters[1].count_drop(DropReason::UnknownPeer);
    state
});

fuzz_target!(|request: &[u8]| {
    let state = &*STATE;
    let out = answer(request, state);
    let json = out.strip_suffix('\n').expect("ends in a newline");
    assert!(!json.contains('\n'), "one line: {out:?}");
    let value: Value = serde_json::from_str(json).expect("JSON");

    let line = request.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let line = line.trim();
    assert_eq!(value, reply(line, state));
    check(line, &value);
    // `reply` on the raw text too, as a caller inside weftd would use it.
    if let Ok(text) = std::str::from_utf8(request) {
        let v = reply(text, state);
        check(text, &v);
        assert_eq!(serde_json::from_str::<Value>(&v.to_string()).ok(), Some(v));
    }
});

fn check(request: &str, value: &Value) {
    match request {
        "stats" => {
            for key in ["pump", "drops", "peers", "driver", "threads", "offloads"] {
                assert!(value.get(key).is_some(), "stats without {key}: {value}");
            }
            let drops = value["drops"].as_object().expect("drops");
            assert_eq!(drops.len(), DropReason::ALL.len());
            for r in DropReason::ALL {
                assert!(drops[r.as_str()].is_u64(), "{}", r.as_str());
            }
            assert_eq!(value["peers"].as_array().map(Vec::len), Some(2));
            assert_eq!(value["threads"], 2);
        }
        "routes" => {
            let routes = value.as_array().expect("an array");
            assert_eq!(routes.len(), 3);
            for r in routes {
                for key in ["subnet", "public_ip", "port", "backend", "vtep_mac"] {
                    assert!(r.get(key).is_some(), "a route without {key}: {r}");
                }
            }
        }
        _ => {
            let object = value.as_object().expect("an object");
            assert_eq!(object.len(), 1, "{value}");
            assert!(object["error"].is_string(), "{value}");
        }
    }
}
