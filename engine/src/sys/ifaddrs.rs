//! Which interface holds an address, and which addresses an interface holds (`getifaddrs(3)`).
//!
//! Contract: [`interface_with_address`], [`addresses_of`] and [`all`] walk the list `getifaddrs` returns once, copy out
//! what they need, and free the list before returning;
//! no pointer into it escapes.

use std::ffi::CStr;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::io::cvt;

/// The name of the interface that has `addr` assigned, or `None` when none has.
pub fn interface_with_address(addr: IpAddr) -> io::Result<Option<String>> {
    let mut found = None;
    walk(|name, here| {
        if here == addr {
            found = Some(name.to_owned());
            true
        } else {
            false
        }
    })?;
    Ok(found)
}

/// The addresses assigned to the interface `name`, in the order `getifaddrs` lists them.
pub fn addresses_of(name: &str) -> io::Result<Vec<IpAddr>> {
    let mut found = Vec::new();
    walk(|ifname, addr| {
        if ifname == name {
            found.push(addr);
        }
        false
    })?;
    Ok(found)
}

/// Every (interface name, address) pair, in the order `getifaddrs` lists them.
pub fn all() -> io::Result<Vec<(String, IpAddr)>> {
    let mut found = Vec::new();
    walk(|ifname, addr| {
        found.push((ifname.to_owned(), addr));
        false
    })?;
    Ok(found)
}

/// Calls `f(interface name, address)` for each IPv4 / IPv6 address until it returns true.
fn walk(mut f: impl FnMut(&str, IpAddr) -> bool) -> io::Result<()> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a pointer to a list it allocates into `head`.
    cvt(unsafe { libc::getifaddrs(&mut head) })?;
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: `ifa_addr` is non-null and points at a sockaddr of the family it names.
        let family = libc::c_int::from(unsafe { (*ifa.ifa_addr).sa_family });
        let here = match family {
            libc::AF_INET => {
                // SAFETY: the family is AF_INET, so `ifa_addr` points at a sockaddr_in.
                let sin = unsafe { &*ifa.ifa_addr.cast::<libc::sockaddr_in>() };
                IpAddr::V4(Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes()))
            }
            libc::AF_INET6 => {
                // SAFETY: the family is AF_INET6, so `ifa_addr` points at a sockaddr_in6.
                let sin6 = unsafe { &*ifa.ifa_addr.cast::<libc::sockaddr_in6>() };
                IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr))
            }
            _ => continue,
        };
        // SAFETY: `ifa_name` is a non-null NUL-terminated string owned by the list, and the
        // borrow ends before the list is freed.
        let name = unsafe { CStr::from_ptr(ifa.ifa_name) };
        if f(&name.to_string_lossy(), here) {
            break;
        }
    }
    // SAFETY: `head` came from getifaddrs and is freed once; nothing borrowed from it remains.
    unsafe { libc::freeifaddrs(head) };
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn loopback_address_is_on_lo() {
        // 127.0.0.1 is on `lo` in every namespace where lo has its address (the host's does).
        let name = interface_with_address(IpAddr::V4(Ipv4Addr::LOCALHOST)).unwrap();
        assert_eq!(name.as_deref(), Some("lo"));
        let none = interface_with_address("192.0.2.77".parse().unwrap()).unwrap();
        assert_eq!(none, None);
    }
}
