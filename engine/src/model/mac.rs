//! VtepMACs: [`parse_mac`] and [`format_mac`] in Go's `net.ParseMAC` / `HardwareAddr.String`
//! forms, as flannel writes them.

use encap::backend::Mac;

use super::prefix::AddrParseError;

/// Parses a 6-byte MAC in Go's `net.ParseMAC` colon or dash form (`0e:5a:1b:2c:3d:4e`,
/// `0E-5A-1B-2C-3D-4E`): exactly two hex digits per byte, one separator throughout.
pub fn parse_mac(s: &str) -> Result<Mac, AddrParseError> {
    let bad = || {
        AddrParseError(format!(
            "{s:?} is not a MAC address (expected 0e:5a:1b:2c:3d:4e)"
        ))
    };
    let sep = if s.contains('-') { '-' } else { ':' };
    let mut mac = [0u8; 6];
    let mut parts = s.split(sep);
    for byte in &mut mac {
        let part = parts.next().ok_or_else(bad)?;
        // from_str_radix alone would take a sign: "+e" as 0x0e (found by fuzz/peers_file).
        if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
    }
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok(mac)
}

/// Formats a MAC address as lower-case colon-separated hex.
pub fn format_mac(mac: &Mac) -> String {
    let [a, b, c, d, e, f] = *mac;
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn mac_round_trip() {
        let m = parse_mac("0e:5A:1b:2c:3d:4e").unwrap();
        assert_eq!(m, [0x0e, 0x5a, 0x1b, 0x2c, 0x3d, 0x4e]);
        assert_eq!(parse_mac("0E-5A-1B-2C-3D-4E").unwrap(), m);
        assert_eq!(format_mac(&m), "0e:5a:1b:2c:3d:4e");
        for bad in [
            "",
            "0e:5a:1b:2c:3d",
            "0e:5a:1b:2c:3d:4e:5f",
            "0e:5a:1b:2c:3d:4g",
            "0e::1b:2c:3d:4e",
            "0e:5a:1b:2c:3d:4e0",
            "+e:00:00:00:00:05",
            "0e:00:00:00:00:+5",
            "0e:00:00:00:00:-5",
            "+:00:00:00:00:05",
            "e:5a:1b:2c:3d:4e",
            "0e-5a:1b:2c:3d:4e",
        ] {
            assert!(parse_mac(bad).is_err(), "{bad}");
        }
    }
}
