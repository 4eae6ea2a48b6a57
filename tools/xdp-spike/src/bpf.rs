//! The XDP program, hand-assembled, and the three bpf(2) commands that put it on a device.
//!
//! Contract: [`program`] returns the instructions of an XDP program that redirects IPv4 UDP
//! datagrams to one destination port (unfragmented, no IP options) into slot
//! `rx_queue_index` of an `XSKMAP` and passes everything else to the kernel
//! (`bpf_redirect_map`'s fallback action is `XDP_PASS`, so a queue without a socket passes
//! too). [`XskMap::create`], [`load_xdp`] and [`attach_xdp`] are `BPF_MAP_CREATE`,
//! `BPF_PROG_LOAD` and `BPF_LINK_CREATE`; the link holds the program on the device until its
//! fd is closed (also when the process dies), so nothing is left behind.
//!
//! No C library and no ELF: the program is 25 instructions, written here with their encoding
//! (include/uapi/linux/bpf.h, bpf_common.h). A verifier rejection returns the verifier's log.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

/// One eBPF instruction (`struct bpf_insn`): the register nibbles are `dst | src << 4`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

// Opcodes (bpf_common.h: class | size/op | mode/source).
const LDX_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const LDX_H: u8 = 0x69; // BPF_LDX | BPF_MEM | BPF_H
const LDX_B: u8 = 0x71; // BPF_LDX | BPF_MEM | BPF_B
const MOV64_X: u8 = 0xbf; // BPF_ALU64 | BPF_MOV | BPF_X
const MOV64_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const ADD64_K: u8 = 0x07; // BPF_ALU64 | BPF_ADD | BPF_K
const AND64_K: u8 = 0x57; // BPF_ALU64 | BPF_AND | BPF_K
const JGT_X: u8 = 0x2d; // BPF_JMP | BPF_JGT | BPF_X
const JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const LD_IMM64: u8 = 0x18; // BPF_LD | BPF_IMM | BPF_DW
const CALL: u8 = 0x85; // BPF_JMP | BPF_CALL
const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT
/// `src_reg` of a `LD_IMM64` whose immediate is a map fd.
const PSEUDO_MAP_FD: u8 = 1;
/// `BPF_FUNC_map_lookup_elem` is 1; `bpf_redirect_map` is helper 51.
const FUNC_REDIRECT_MAP: i32 = 51;
/// `XDP_PASS` (enum xdp_action).
const XDP_PASS: i32 = 2;

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}

// Offsets in the frame (Ethernet, then IPv4 without options, then UDP).
const ETH_TYPE: i16 = 12;
const IP_VER_IHL: i16 = 14;
const IP_FRAG: i16 = 20;
const IP_PROTO: i16 = 23;
const UDP_DPORT: i16 = 36;
const HEADERS_LEN: i32 = 42;

/// The program: redirect IPv4/UDP to `port` into `xskmap_fd[rx_queue_index]`, pass the rest.
/// Multi-byte fields are loaded in host (little-endian) order, so constants are byte-swapped.
pub(crate) fn program(xskmap_fd: i32, port: u16) -> Vec<Insn> {
    // struct xdp_md: data at 0, data_end at 4, rx_queue_index at 16.
    let pass_from = |here: i16, len: i16| len - here - 1;
    let mut p = vec![
        insn(MOV64_X, 6, 1, 0, 0),                                // 0: r6 = ctx
        insn(LDX_W, 2, 1, 0, 0),                                  // 1: r2 = data
        insn(LDX_W, 3, 1, 4, 0),                                  // 2: r3 = data_end
        insn(MOV64_X, 4, 2, 0, 0),                                // 3: r4 = data
        insn(ADD64_K, 4, 0, 0, HEADERS_LEN),                      // 4: r4 += 42
        insn(JGT_X, 4, 3, 0, 0),                                  // 5: if r4 > end: pass
        insn(LDX_H, 5, 2, ETH_TYPE, 0),                           // 6
        insn(JNE_K, 5, 0, 0, 0x0008),                             // 7: ETH_P_IP
        insn(LDX_B, 5, 2, IP_VER_IHL, 0),                         // 8
        insn(JNE_K, 5, 0, 0, 0x45),                               // 9: v4, no options
        insn(LDX_B, 5, 2, IP_PROTO, 0),                           // 10
        insn(JNE_K, 5, 0, 0, i32::from(libc::IPPROTO_UDP as u8)), // 11
        insn(LDX_H, 5, 2, IP_FRAG, 0),                            // 12
        insn(AND64_K, 5, 0, 0, 0xff3f),                           // 13: MF | offset
        insn(JNE_K, 5, 0, 0, 0),                                  // 14: a fragment: pass
        insn(LDX_H, 5, 2, UDP_DPORT, 0),                          // 15
        insn(JNE_K, 5, 0, 0, i32::from(port.swap_bytes())),       // 16
        insn(LDX_W, 2, 6, 16, 0),                                 // 17: r2 = rx_queue_index
        insn(LD_IMM64, 1, PSEUDO_MAP_FD, 0, xskmap_fd),           // 18: r1 = map
        insn(0, 0, 0, 0, 0),                                      // 19: (second half)
        insn(MOV64_K, 3, 0, 0, XDP_PASS),                         // 20: flags = fallback
        insn(CALL, 0, 0, 0, FUNC_REDIRECT_MAP),                   // 21
        insn(EXIT, 0, 0, 0, 0),                                   // 22
        insn(MOV64_K, 0, 0, 0, XDP_PASS),                         // 23: pass:
        insn(EXIT, 0, 0, 0, 0),                                   // 24
    ];
    let pass = 23;
    for (i, ins) in p.iter_mut().enumerate() {
        if ins.code == JGT_X || ins.code == JNE_K {
            ins.off = pass_from(i as i16, pass);
        }
    }
    p
}

// bpf(2) commands and types (include/uapi/linux/bpf.h).
const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;
/// `XDP_FLAGS_DRV_MODE` (if_link.h): native XDP, refused rather than degraded to generic.
pub(crate) const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
/// `XDP_FLAGS_SKB_MODE`: generic XDP.
pub(crate) const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;

#[repr(C)]
#[derive(Default)]
struct MapCreate {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
}

#[repr(C)]
#[derive(Default)]
struct MapUpdate {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Default)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct LinkCreate {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
    _rest: [u64; 4],
}

/// bpf(2) with an attribute struct; returns the new fd (or 0) or the error.
///
/// # Safety
/// `T` must be the `union bpf_attr` member `cmd` reads, and every pointer inside it valid
/// for what the kernel reads or writes during the call.
unsafe fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: the caller upholds the attribute contract; the size is that of `T`.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// An owned fd from bpf(2)'s return value.
fn owned(fd: libc::c_long) -> OwnedFd {
    // SAFETY: bpf(2) returned a new fd that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd as i32) }
}

/// A `BPF_MAP_TYPE_XSKMAP`: queue index -> AF_XDP socket.
#[derive(Debug)]
pub(crate) struct XskMap(OwnedFd);

impl XskMap {
    /// A map with `entries` slots (one per receive queue).
    pub(crate) fn create(entries: u32) -> io::Result<XskMap> {
        let mut attr = MapCreate {
            map_type: BPF_MAP_TYPE_XSKMAP,
            key_size: 4,
            value_size: 4,
            max_entries: entries,
            ..MapCreate::default()
        };
        // SAFETY: MapCreate is the BPF_MAP_CREATE prefix of bpf_attr; it holds no pointers.
        unsafe { bpf(BPF_MAP_CREATE, &mut attr) }.map(|fd| XskMap(owned(fd)))
    }

    /// Puts socket `xsk` in slot `queue`.
    pub(crate) fn insert(&self, queue: u32, xsk: impl AsFd) -> io::Result<()> {
        let key = queue;
        let value: u32 = xsk.as_fd().as_raw_fd() as u32;
        let mut attr = MapUpdate {
            map_fd: self.0.as_raw_fd() as u32,
            key: &key as *const u32 as u64,
            value: &value as *const u32 as u64,
            ..MapUpdate::default()
        };
        // SAFETY: key and value are live u32s of the map's key and value size.
        unsafe { bpf(BPF_MAP_UPDATE_ELEM, &mut attr) }.map(drop)
    }

    /// The map's fd as the program's `LD_IMM64` immediate.
    pub(crate) fn raw(&self) -> i32 {
        self.0.as_raw_fd()
    }
}

/// Loads `insns` as an XDP program. On a verifier rejection the error carries its log.
pub(crate) fn load_xdp(insns: &[Insn]) -> anyhow::Result<OwnedFd> {
    let license = CString::new("GPL")?;
    let mut log = vec![0u8; 64 * 1024];
    let mut name = [0u8; 16];
    name[..9].copy_from_slice(b"xdp_spike");
    let mut attr = ProgLoad {
        prog_type: BPF_PROG_TYPE_XDP,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        prog_name: name,
        ..ProgLoad::default()
    };
    // SAFETY: insns, license and log outlive the call; log_size is log's length.
    match unsafe { bpf(BPF_PROG_LOAD, &mut attr) } {
        Ok(fd) => Ok(owned(fd)),
        Err(e) => {
            let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
            anyhow::bail!(
                "BPF_PROG_LOAD: {e}; verifier log:\n{}",
                String::from_utf8_lossy(&log[..end])
            )
        }
    }
}

/// Attaches `prog` to device `ifindex` as XDP with `flags` (native or generic); the returned
/// link fd keeps it there.
pub(crate) fn attach_xdp(prog: impl AsFd, ifindex: u32, flags: u32) -> io::Result<OwnedFd> {
    let mut attr = LinkCreate {
        prog_fd: prog.as_fd().as_raw_fd() as u32,
        target_ifindex: ifindex,
        attach_type: BPF_XDP,
        flags,
        ..LinkCreate::default()
    };
    // SAFETY: LinkCreate is the BPF_LINK_CREATE member of bpf_attr; it holds no pointers.
    unsafe { bpf(BPF_LINK_CREATE, &mut attr) }.map(owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_jump_lands_on_pass() {
        let p = program(3, 8472);
        for (i, ins) in p.iter().enumerate() {
            if ins.code == JGT_X || ins.code == JNE_K {
                assert_eq!(i as i16 + ins.off + 1, 23, "insn {i}");
            }
        }
        assert_eq!(
            p[16].imm, 0x1821,
            "8472 as a little-endian load of network order"
        );
        assert_eq!(p[23].code, MOV64_K);
    }
}
