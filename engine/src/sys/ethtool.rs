//! Device offload features through the `SIOCETHTOOL` ioctl: what `ethtool -k` / `ethtool -K DEV
//! tx on|off gro on|off` read and switch, without the `ethtool` program.
//!
//! Contract: a [`Feature`] is one of the legacy single-feature command pairs of
//! include/uapi/linux/ethtool.h (`ETHTOOL_GTXCSUM` / `ETHTOOL_STXCSUM`, `ETHTOOL_GGRO` /
//! `ETHTOOL_SGRO`), which the kernel still serves (net/ethtool/ioctl.c
//! `ethtool_get_one_feature` / `ethtool_set_one_feature`) on every device. [`feature`] reads
//! whether it is on; [`set_feature`] asks for it on or off and reads back what the kernel made
//! of the request: a feature that stays otherwise (fixed by the device, or forced by another
//! feature) is an error, as is one the device cannot change at all (`EOPNOTSUPP`). The kernel's
//! own dependencies apply as they do for `ethtool -K`: transmit checksumming off also takes
//! TSO and UDP GSO away (net/core/dev.c `netdev_fix_features`), and on gives them back. Each
//! call opens its own short-lived `AF_INET` datagram socket in the calling thread's network
//! namespace (control-plane calls, like [`super::netif`]); setting needs `CAP_NET_ADMIN`.

use std::fmt;
use std::io;
use std::os::fd::AsFd;

use socket2::{Domain, Socket, Type};

use super::ioctl::{set_ifr_name, zeroed_ifreq, IfreqDataIoctl};

/// `ETHTOOL_GTXCSUM`: get transmit checksum offload (include/uapi/linux/ethtool.h).
const ETHTOOL_GTXCSUM: u32 = 0x0000_0016;
/// `ETHTOOL_STXCSUM`: set transmit checksum offload (include/uapi/linux/ethtool.h).
const ETHTOOL_STXCSUM: u32 = 0x0000_0017;
/// `ETHTOOL_GGRO`: get generic receive offload (include/uapi/linux/ethtool.h).
const ETHTOOL_GGRO: u32 = 0x0000_002b;
/// `ETHTOOL_SGRO`: set generic receive offload (include/uapi/linux/ethtool.h).
const ETHTOOL_SGRO: u32 = 0x0000_002c;

/// `struct ethtool_value` (include/uapi/linux/ethtool.h): a command and one value.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

// SAFETY: on an AF_INET datagram socket SIOCETHTOOL reaches net/core/dev_ioctl.c `dev_ioctl`
// -> net/ethtool/ioctl.c `dev_ethtool`, which copies one `struct ifreq` in, reads the u32
// command at `ifr_data`, and for the ETHTOOL_[GS]TXCSUM / ETHTOOL_[GS]GRO commands (the only
// ones sent with this type, see `Feature::commands`) copies exactly one `struct ethtool_value`
// in (`ethtool_set_one_feature`) or out (`ethtool_get_one_feature`); nothing is kept.
const SIOCETHTOOL_VALUE: IfreqDataIoctl<EthtoolValue> =
    unsafe { IfreqDataIoctl::new(libc::SIOCETHTOOL) };

/// A device feature with a legacy ethtool command pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Feature {
    /// Transmit checksum offload of every kind (`ethtool -K DEV tx`: the checksum features,
    /// SCTP and FCoE CRC). A veth has it on by default, and then hands `CHECKSUM_PARTIAL`
    /// packets, and TSO / UDP GSO super-packets, across the pair uncomputed.
    TxChecksum,
    /// Generic receive offload (`ethtool -K DEV gro`). Off by default on a veth.
    Gro,
}

impl Feature {
    /// Every feature.
    pub const ALL: [Feature; 2] = [Feature::TxChecksum, Feature::Gro];

    /// The (get, set) commands.
    fn commands(self) -> (u32, u32) {
        match self {
            Feature::TxChecksum => (ETHTOOL_GTXCSUM, ETHTOOL_STXCSUM),
            Feature::Gro => (ETHTOOL_GGRO, ETHTOOL_SGRO),
        }
    }

    /// ethtool's name for it (`ethtool -k`).
    pub fn name(self) -> &'static str {
        match self {
            Feature::TxChecksum => "tx-checksumming",
            Feature::Gro => "generic-receive-offload",
        }
    }
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One `SIOCETHTOOL` call with an `ethtool_value` command on `dev`; returns the value after it.
fn value_command(dev: &str, cmd: u32, data: u32) -> io::Result<u32> {
    let sock = Socket::new(Domain::IPV4, Type::DGRAM.cloexec(), None)?;
    let mut ifr = zeroed_ifreq();
    set_ifr_name(&mut ifr, dev, false)?;
    let mut value = EthtoolValue { cmd, data };
    // SAFETY: `sock` is an AF_INET datagram socket, the kind SIOCETHTOOL_VALUE was declared
    // for, and `cmd` is one of the commands of `Feature::commands`.
    unsafe { SIOCETHTOOL_VALUE.exec(sock.as_fd(), &mut ifr, &mut value) }?;
    Ok(value.data)
}

/// Whether `feature` is on for the device `dev` (any of its bits, for [`Feature::TxChecksum`]).
pub fn feature(dev: &str, feature: Feature) -> io::Result<bool> {
    let (get, _) = feature.commands();
    Ok(value_command(dev, get, 0)? != 0)
}

/// Turns `feature` on or off for the device `dev` (like `ethtool -K dev tx|gro on|off`) and
/// checks that it took.
pub fn set_feature(dev: &str, feature: Feature, on: bool) -> io::Result<()> {
    let (_, set) = feature.commands();
    value_command(dev, set, u32::from(on))?;
    let now = self::feature(dev, feature)?;
    if now != on {
        return Err(io::Error::other(format!(
            "{dev}: {feature} stays {} (the device or another feature keeps it)",
            if now { "on" } else { "off" }
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::in_netns;
    use std::process::Command;

    #[test]
    fn reads_need_no_privilege_and_unknown_devices_are_enodev() {
        // Reading a feature of `lo` changes nothing and needs no capability.
        assert!(feature("lo", Feature::TxChecksum).expect("tx-checksumming of lo"));
        let err = feature("wfe-nosuchif", Feature::Gro).expect_err("no such device");
        assert_eq!(err.raw_os_error(), Some(libc::ENODEV));
        assert_eq!(
            feature("", Feature::Gro).expect_err("empty").kind(),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(Feature::TxChecksum.to_string(), "tx-checksumming");
    }

    #[test]
    fn veth_features_switch_and_read_back() {
        require_root!();
        in_netns(|| {
            // A child process inherits this thread's network namespace.
            let out = Command::new("ip")
                .args(["link", "add", "wfe-eth0", "type", "veth"])
                .args(["peer", "name", "wfe-eth1"])
                .output()
                .expect("ip link add");
            assert!(out.status.success(), "{out:?}");
            for dev in ["wfe-eth0", "wfe-eth1"] {
                // The veth's defaults: tx checksum offload on, GRO off.
                assert!(feature(dev, Feature::TxChecksum).expect("read"));
                assert!(!feature(dev, Feature::Gro).expect("read"));
            }
            for on in [false, true, false] {
                for f in Feature::ALL {
                    set_feature("wfe-eth0", f, on).unwrap_or_else(|e| panic!("{f} {on}: {e}"));
                    assert_eq!(feature("wfe-eth0", f).expect("read"), on, "{f}");
                }
            }
            // The other end is untouched.
            assert!(feature("wfe-eth1", Feature::TxChecksum).expect("read"));
            // lo's checksum features are fixed: the kernel refuses the change.
            let err = set_feature("lo", Feature::TxChecksum, false).expect_err("lo");
            assert_eq!(err.raw_os_error(), Some(libc::EOPNOTSUPP), "{err}");
            let err = set_feature("wfe-nosuchif", Feature::Gro, true).expect_err("missing");
            assert_eq!(err.raw_os_error(), Some(libc::ENODEV));
        });
    }
}
