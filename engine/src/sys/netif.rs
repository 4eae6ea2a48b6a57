//! Interface configuration through the classic `SIOC*` ioctls on a control socket.
//!
//! Contract: enough to bring a TUN up with an MTU and an address (IPv4 or IPv6) without netlink:
//! flags, MTU, index, address. Each call opens its own short-lived `AF_INET` (or `AF_INET6`)
//! datagram socket in the calling thread's network namespace; these are control-plane calls,
//! not for the packet path. Netlink replaces them when routes are needed.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::AsFd;

use socket2::{Domain, Socket, Type};

use super::ioctl::{set_ifr_name, zeroed_ifreq, PtrIoctl};

// The ifreq requests below, on an AF_INET datagram socket, reach
// net/core/dev_ioctl.c `dev_ioctl` (flags, MTU, index) or net/ipv4/devinet.c `devinet_ioctl`
// (address, netmask) through `sock_do_ioctl`, which copy one `struct ifreq` in and, for the
// getters, back out; nothing is kept.
// SAFETY: see above.
const SIOCGIFFLAGS: PtrIoctl<libc::ifreq> = unsafe { PtrIoctl::new(libc::SIOCGIFFLAGS) };
// SAFETY: see above.
const SIOCSIFFLAGS: PtrIoctl<libc::ifreq> = unsafe { PtrIoctl::new(libc::SIOCSIFFLAGS) };
// SAFETY: see above.
const SIOCGIFMTU: PtrIoctl<libc::ifreq> = unsafe { PtrIoctl::new(libc::SIOCGIFMTU) };
// SAFETY: see above.
const SIOCSIFMTU: PtrIoctl<libc::ifreq> = unsafe { PtrIoctl::new(libc::SIOCSIFMTU) };
// SAFETY: see above.
const SIOCGIFINDEX: PtrIoctl<libc::ifreq> = unsafe { PtrIoctl::new(libc::SIOCGIFINDEX) };
// SAFETY: see above.
const SIOCGIFTXQLEN: PtrIoctl<libc::ifreq> = unsafe { PtrIoctl::new(libc::SIOCGIFTXQLEN) };
// SAFETY: see above.
const SIOCSIFTXQLEN: PtrIoctl<libc::ifreq> = unsafe { PtrIoctl::new(libc::SIOCSIFTXQLEN) };
// SAFETY: see above (AF_INET socket: devinet_ioctl).
const SIOCSIFADDR_V4: PtrIoctl<libc::ifreq> = unsafe { PtrIoctl::new(libc::SIOCSIFADDR) };
// SAFETY: see above (AF_INET socket: devinet_ioctl).
const SIOCSIFNETMASK: PtrIoctl<libc::ifreq> = unsafe { PtrIoctl::new(libc::SIOCSIFNETMASK) };
// SAFETY: on an AF_INET6 socket SIOCSIFADDR reaches net/ipv6/af_inet6.c `inet6_ioctl` ->
// `addrconf_add_ifaddr`, which copies one `struct in6_ifreq` in; nothing is kept.
const SIOCSIFADDR_V6: PtrIoctl<libc::in6_ifreq> = unsafe { PtrIoctl::new(libc::SIOCSIFADDR) };

fn control_socket(domain: Domain) -> io::Result<Socket> {
    Socket::new(domain, Type::DGRAM.cloexec(), None)
}

fn ifreq_for(name: &str) -> io::Result<libc::ifreq> {
    let mut ifr = zeroed_ifreq();
    set_ifr_name(&mut ifr, name, false)?;
    Ok(ifr)
}

/// The interface flags (`IFF_UP`, `IFF_RUNNING`, ...) of `name`.
pub fn flags(name: &str) -> io::Result<libc::c_int> {
    let sock = control_socket(Domain::IPV4)?;
    let mut ifr = ifreq_for(name)?;
    // SAFETY: `sock` is an AF_INET datagram socket, the kind SIOCGIFFLAGS was declared for.
    unsafe { SIOCGIFFLAGS.exec(sock.as_fd(), &mut ifr) }?;
    // SAFETY: SIOCGIFFLAGS wrote `ifru_flags`; every bit pattern is a valid c_short.
    let flags = unsafe { ifr.ifr_ifru.ifru_flags };
    // The flags are an unsigned 16-bit field carried in a c_short.
    Ok(libc::c_int::from(flags as u16))
}

/// Sets `IFF_UP` on `name` (like `ip link set NAME up`).
pub fn set_up(name: &str) -> io::Result<()> {
    let sock = control_socket(Domain::IPV4)?;
    let mut ifr = ifreq_for(name)?;
    // SAFETY: `sock` is an AF_INET datagram socket, the kind SIOCGIFFLAGS was declared for.
    unsafe { SIOCGIFFLAGS.exec(sock.as_fd(), &mut ifr) }?;
    // SAFETY: SIOCGIFFLAGS wrote `ifru_flags`; every bit pattern is a valid c_short.
    let current = unsafe { ifr.ifr_ifru.ifru_flags };
    ifr.ifr_ifru.ifru_flags = current | super::tun::iff(libc::IFF_UP);
    // SAFETY: `sock` is an AF_INET datagram socket, the kind SIOCSIFFLAGS was declared for.
    unsafe { SIOCSIFFLAGS.exec(sock.as_fd(), &mut ifr) }?;
    Ok(())
}

/// The MTU of `name`.
pub fn mtu(name: &str) -> io::Result<u32> {
    let sock = control_socket(Domain::IPV4)?;
    let mut ifr = ifreq_for(name)?;
    // SAFETY: `sock` is an AF_INET datagram socket, the kind SIOCGIFMTU was declared for.
    unsafe { SIOCGIFMTU.exec(sock.as_fd(), &mut ifr) }?;
    // SAFETY: SIOCGIFMTU wrote `ifru_mtu`; every bit pattern is a valid c_int.
    let mtu = unsafe { ifr.ifr_ifru.ifru_mtu };
    u32::try_from(mtu).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "negative MTU"))
}

/// Sets the MTU of `name`.
pub fn set_mtu(name: &str, mtu: u32) -> io::Result<()> {
    let sock = control_socket(Domain::IPV4)?;
    let mut ifr = ifreq_for(name)?;
    ifr.ifr_ifru.ifru_mtu = libc::c_int::try_from(mtu)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "MTU does not fit a C int"))?;
    // SAFETY: `sock` is an AF_INET datagram socket, the kind SIOCSIFMTU was declared for.
    unsafe { SIOCSIFMTU.exec(sock.as_fd(), &mut ifr) }?;
    Ok(())
}

/// The transmit queue length of `name` (`ip link`'s `qlen`; a TUN's per-queue packet ring).
pub fn txqueuelen(name: &str) -> io::Result<u32> {
    let sock = control_socket(Domain::IPV4)?;
    let mut ifr = ifreq_for(name)?;
    // SAFETY: `sock` is an AF_INET datagram socket, the kind SIOCGIFTXQLEN was declared for.
    unsafe { SIOCGIFTXQLEN.exec(sock.as_fd(), &mut ifr) }?;
    // SAFETY: SIOCGIFTXQLEN wrote `ifr_qlen`, the int of the union that `ifru_mtu` names too;
    // every bit pattern is a valid c_int.
    let qlen = unsafe { ifr.ifr_ifru.ifru_mtu };
    u32::try_from(qlen).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "negative qlen"))
}

/// Sets the transmit queue length of `name` (`ip link set NAME txqueuelen N`). A TUN resizes
/// the packet ring of every queue to it.
pub fn set_txqueuelen(name: &str, len: u32) -> io::Result<()> {
    let sock = control_socket(Domain::IPV4)?;
    let mut ifr = ifreq_for(name)?;
    // `ifr_qlen` is the union's int, the same one as `ifru_mtu`.
    ifr.ifr_ifru.ifru_mtu = libc::c_int::try_from(len).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "queue length does not fit a C int",
        )
    })?;
    // SAFETY: `sock` is an AF_INET datagram socket, the kind SIOCSIFTXQLEN was declared for.
    unsafe { SIOCSIFTXQLEN.exec(sock.as_fd(), &mut ifr) }?;
    Ok(())
}

/// The interface index of `name`.
pub fn index(name: &str) -> io::Result<u32> {
    let sock = control_socket(Domain::IPV4)?;
    let mut ifr = ifreq_for(name)?;
    // SAFETY: `sock` is an AF_INET datagram socket, the kind SIOCGIFINDEX was declared for.
    unsafe { SIOCGIFINDEX.exec(sock.as_fd(), &mut ifr) }?;
    // SAFETY: SIOCGIFINDEX wrote `ifru_ifindex`; every bit pattern is a valid c_int.
    let index = unsafe { ifr.ifr_ifru.ifru_ifindex };
    u32::try_from(index).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "negative ifindex"))
}

fn sockaddr_v4(addr: Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(addr.octets()),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: `sockaddr_in` and `sockaddr` are both 16-byte plain-data repr(C) structs (the
    // kernel's own punning for AF_INET), and every bit pattern is a valid `sockaddr`.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

/// Sets the IPv4 address `addr/prefix_len` on `name` (SIOCSIFADDR then SIOCSIFNETMASK; the
/// kernel adds the prefix route).
pub fn set_ipv4_addr(name: &str, addr: Ipv4Addr, prefix_len: u8) -> io::Result<()> {
    if prefix_len > 32 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "IPv4 prefix longer than 32",
        ));
    }
    let sock = control_socket(Domain::IPV4)?;
    let mut ifr = ifreq_for(name)?;
    ifr.ifr_ifru.ifru_addr = sockaddr_v4(addr);
    // SAFETY: `sock` is an AF_INET datagram socket, the kind SIOCSIFADDR_V4 was declared for.
    unsafe { SIOCSIFADDR_V4.exec(sock.as_fd(), &mut ifr) }?;
    let mask = u32::MAX
        .checked_shl(32 - u32::from(prefix_len))
        .unwrap_or(0);
    ifr.ifr_ifru.ifru_netmask = sockaddr_v4(Ipv4Addr::from(mask));
    // SAFETY: `sock` is an AF_INET datagram socket, the kind SIOCSIFNETMASK was declared for.
    unsafe { SIOCSIFNETMASK.exec(sock.as_fd(), &mut ifr) }?;
    Ok(())
}

/// Adds the IPv6 address `addr/prefix_len` to `name` (the kernel adds the prefix route).
pub fn add_ipv6_addr(name: &str, addr: Ipv6Addr, prefix_len: u8) -> io::Result<()> {
    if prefix_len > 128 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "IPv6 prefix longer than 128",
        ));
    }
    let ifindex = index(name)?;
    let sock = control_socket(Domain::IPV6)?;
    let mut req = libc::in6_ifreq {
        ifr6_addr: libc::in6_addr {
            s6_addr: addr.octets(),
        },
        ifr6_prefixlen: u32::from(prefix_len),
        ifr6_ifindex: libc::c_int::try_from(ifindex)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "ifindex too large"))?,
    };
    // SAFETY: `sock` is an AF_INET6 datagram socket, the kind SIOCSIFADDR_V6 was declared for.
    unsafe { SIOCSIFADDR_V6.exec(sock.as_fd(), &mut req) }?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_index_1_with_a_large_mtu() {
        // `lo` exists in every network namespace and reading it needs no privilege.
        assert_eq!(index("lo").expect("index of lo"), 1);
        assert!(mtu("lo").expect("mtu of lo") >= 1280);
        assert!(flags("lo").expect("flags of lo") & libc::IFF_LOOPBACK != 0);
    }

    #[test]
    fn unknown_interface_is_enodev() {
        let err = mtu("wfe-nosuchif").expect_err("no such interface");
        assert_eq!(err.raw_os_error(), Some(libc::ENODEV));
        assert_eq!(
            index("").expect_err("empty").kind(),
            io::ErrorKind::InvalidInput
        );
    }

    #[test]
    fn v4_sockaddr_is_network_order() {
        let sa = sockaddr_v4(Ipv4Addr::new(10, 1, 2, 3));
        assert_eq!(i32::from(sa.sa_family), libc::AF_INET);
        // sa_data = port (2 bytes) then the address bytes in network order.
        let data: Vec<u8> = sa.sa_data.iter().map(|c| c.to_ne_bytes()[0]).collect();
        assert_eq!(&data[..6], &[0, 0, 10, 1, 2, 3]);
    }
}
