//! A minimal NFQUEUE client: the kernel hands us the ids of the packets an iptables
//! `-j NFQUEUE --queue-num N` rule queued, and forwards each one when we send its verdict.
//!
//! Contract: [`Queue::bind`] opens a `NETLINK_NETFILTER` socket in the calling thread's network
//! namespace, binds queue `N` for IPv4 in metadata-only copy mode (no packet bytes cross to
//! userspace: we only decide *when* a packet goes on) with a long queue, and waits for the
//! kernel's acknowledgement of each step. [`Queue::recv`] returns the ids of the packets queued
//! since the last call; [`Queue::accept`] releases packets in any order (the kernel reinjects
//! each one where it left the FORWARD chain), which is what lets a caller delay and reorder.
//! Packets still held when the socket closes are dropped by the kernel, so a caller releases
//! them first. The messages are built in safe code with the layouts of
//! include/uapi/linux/netlink.h, netfilter/nfnetlink.h and netfilter/nfnetlink_queue.h.

use std::io;
use std::os::fd::OwnedFd;
use std::time::Duration;

use anyhow::{bail, Context};
use rustix::net::{netlink, AddressFamily, RecvFlags, SendFlags, SocketType};

/// `NFNL_SUBSYS_QUEUE` (nfnetlink.h): the high byte of every queue message type.
const NFNL_SUBSYS_QUEUE: u16 = 3;
/// `NFQNL_MSG_PACKET`: a packet queued by the kernel.
const NFQNL_MSG_PACKET: u16 = 0;
/// `NFQNL_MSG_VERDICT`: our verdict on one packet.
const NFQNL_MSG_VERDICT: u16 = 1;
/// `NFQNL_MSG_CONFIG`: bind, copy mode, queue length.
const NFQNL_MSG_CONFIG: u16 = 2;
/// `NLMSG_ERROR` (netlink.h): an acknowledgement (error 0) or an error.
const NLMSG_ERROR: u16 = 2;
/// `NLM_F_REQUEST`, `NLM_F_ACK` (netlink.h).
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
/// `NFQA_CFG_CMD`, `NFQA_CFG_PARAMS`, `NFQA_CFG_QUEUE_MAXLEN` (nfnetlink_queue.h).
const NFQA_CFG_CMD: u16 = 1;
const NFQA_CFG_PARAMS: u16 = 2;
const NFQA_CFG_QUEUE_MAXLEN: u16 = 3;
/// `NFQNL_CFG_CMD_BIND`.
const NFQNL_CFG_CMD_BIND: u8 = 1;
/// `NFQNL_COPY_META`: the packet's metadata (its id), none of its bytes.
const NFQNL_COPY_META: u8 = 1;
/// `NFQA_PACKET_HDR`: `struct nfqnl_msg_packet_hdr` (packet_id be32, hw_protocol be16, hook u8).
const NFQA_PACKET_HDR: u16 = 1;
/// `NFQA_VERDICT_HDR`: `struct nfqnl_msg_verdict_hdr` (verdict be32, id be32).
const NFQA_VERDICT_HDR: u16 = 2;
/// `NF_ACCEPT` (netfilter.h).
const NF_ACCEPT: u32 = 1;
/// `NLA_TYPE_MASK` (netlink.h): the attribute type without the nested / byte-order flags.
const NLA_TYPE_MASK: u16 = 0x3fff;
/// `sizeof(struct nlmsghdr)`.
const NLMSG_HDR_LEN: usize = 16;
/// `sizeof(struct nfgenmsg)`: family u8, version u8, res_id be16.
const NFGENMSG_LEN: usize = 4;
/// `sizeof(struct nlattr)`.
const NLA_HDR_LEN: usize = 4;
/// A verdict message: header, nfgenmsg, one attribute of 8 bytes.
const VERDICT_LEN: usize = NLMSG_HDR_LEN + NFGENMSG_LEN + NLA_HDR_LEN + 8;
/// Packets the kernel may hold for us before it drops (counted as `queue_dropped`).
pub const QUEUE_MAXLEN: u32 = 1 << 16;
/// The socket's receive buffer (`SO_RCVBUFFORCE`): an overrun drops packets (`user_dropped`).
const RCVBUF: usize = 64 << 20;
/// Verdicts sent in one `send` (one netlink batch).
const VERDICT_BATCH: usize = 1024;
/// How long a configuration step may take to be acknowledged.
const ACK_TIMEOUT: Duration = Duration::from_secs(2);

const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// One bound queue.
#[derive(Debug)]
pub struct Queue {
    fd: OwnedFd,
    num: u16,
    seq: u32,
    buf: Vec<u8>,
    out: Vec<u8>,
    pending: usize,
}

impl Queue {
    /// Binds queue `num` of the calling thread's namespace.
    pub fn bind(num: u16) -> anyhow::Result<Queue> {
        let fd = rustix::net::socket(
            AddressFamily::NETLINK,
            SocketType::RAW,
            Some(netlink::NETFILTER),
        )
        .context("opening a NETLINK_NETFILTER socket")?;
        rustix::net::sockopt::set_socket_recv_buffer_size_force(&fd, RCVBUF)
            .context("SO_RCVBUFFORCE on the NFQUEUE socket")?;
        rustix::net::sockopt::set_socket_timeout(
            &fd,
            rustix::net::sockopt::Timeout::Recv,
            Some(ACK_TIMEOUT),
        )
        .context("SO_RCVTIMEO on the NFQUEUE socket")?;
        let mut q = Queue {
            fd,
            num,
            seq: 0,
            buf: vec![0; 1 << 16],
            out: Vec::with_capacity(VERDICT_BATCH * VERDICT_LEN),
            pending: 0,
        };
        let pf = (libc_af_inet() as u16).to_be_bytes();
        q.configure(NFQA_CFG_CMD, &[NFQNL_CFG_CMD_BIND, 0, pf[0], pf[1]])
            .with_context(|| format!("binding NFQUEUE {num}"))?;
        let mut params = 0u32.to_be_bytes().to_vec();
        params.push(NFQNL_COPY_META);
        q.configure(NFQA_CFG_PARAMS, &params)
            .context("setting the copy mode")?;
        q.configure(NFQA_CFG_QUEUE_MAXLEN, &QUEUE_MAXLEN.to_be_bytes())
            .context("setting the queue length")?;
        Ok(q)
    }

    /// The socket, for `poll`.
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// Sends one configuration message with one attribute and waits for its acknowledgement.
    fn configure(&mut self, attr: u16, data: &[u8]) -> anyhow::Result<()> {
        self.seq += 1;
        let mut msg = Vec::with_capacity(64);
        header(
            &mut msg,
            NFQNL_MSG_CONFIG,
            NLM_F_REQUEST | NLM_F_ACK,
            self.seq,
            self.num,
        );
        push_attr(&mut msg, attr, data);
        finish(&mut msg, 0);
        rustix::net::send(&self.fd, &msg, SendFlags::empty()).context("send")?;
        loop {
            let (n, _) = rustix::net::recv(&self.fd, &mut self.buf[..], RecvFlags::empty())
                .context("waiting for the kernel's acknowledgement")?;
            for (ty, body) in messages(&self.buf[..n]) {
                if ty == NLMSG_ERROR {
                    let errno = body
                        .get(..4)
                        .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                        .context("a truncated netlink error")?;
                    if errno == 0 {
                        return Ok(());
                    }
                    return Err(io::Error::from_raw_os_error(-errno).into());
                }
            }
        }
    }

    /// The ids of the packets queued since the last call, appended to `ids` (without
    /// blocking). Returns how many were appended; an overrun of the socket (`ENOBUFS`: the
    /// kernel dropped packets it could not tell us about, `user_dropped`) is returned as an
    /// error the caller may count and go on.
    pub fn recv(&mut self, ids: &mut Vec<u32>) -> io::Result<usize> {
        let before = ids.len();
        loop {
            let n = match rustix::net::recv(&self.fd, &mut self.buf[..], RecvFlags::DONTWAIT) {
                Ok((n, _)) => n,
                Err(rustix::io::Errno::AGAIN) => break,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            };
            for (ty, body) in messages(&self.buf[..n]) {
                if ty != (NFNL_SUBSYS_QUEUE << 8 | NFQNL_MSG_PACKET) {
                    continue;
                }
                if let Some(id) = packet_id(body) {
                    ids.push(id);
                }
            }
        }
        Ok(ids.len() - before)
    }

    /// Queues the verdict "accept" for packet `id`; sent by [`Queue::flush`] (or when a batch
    /// is full).
    pub fn accept(&mut self, id: u32) -> anyhow::Result<()> {
        header(&mut self.out, NFQNL_MSG_VERDICT, NLM_F_REQUEST, 0, self.num);
        let start = self.out.len() - NLMSG_HDR_LEN - NFGENMSG_LEN;
        let mut hdr = [0u8; 8];
        hdr[..4].copy_from_slice(&NF_ACCEPT.to_be_bytes());
        hdr[4..].copy_from_slice(&id.to_be_bytes());
        push_attr(&mut self.out, NFQA_VERDICT_HDR, &hdr);
        finish(&mut self.out, start);
        self.pending += 1;
        if self.pending >= VERDICT_BATCH {
            self.flush()?;
        }
        Ok(())
    }

    /// Sends the verdicts queued by [`Queue::accept`].
    pub fn flush(&mut self) -> anyhow::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let sent = loop {
            match rustix::net::send(&self.fd, &self.out, SendFlags::empty()) {
                Err(rustix::io::Errno::INTR) => continue,
                other => break other,
            }
        };
        let sent = sent.context("sending NFQUEUE verdicts")?;
        if sent != self.out.len() {
            bail!("sent {sent} of {} bytes of verdicts", self.out.len());
        }
        self.out.clear();
        self.pending = 0;
        Ok(())
    }
}

/// `AF_INET` (the family our queue takes packets of).
fn libc_af_inet() -> u8 {
    AddressFamily::INET.as_raw() as u8
}

/// Appends a netlink header (length filled in by [`finish`]) and an `nfgenmsg` for `queue`.
fn header(msg: &mut Vec<u8>, kind: u16, flags: u16, seq: u32, queue: u16) {
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(&(NFNL_SUBSYS_QUEUE << 8 | kind).to_ne_bytes());
    msg.extend_from_slice(&flags.to_ne_bytes());
    msg.extend_from_slice(&seq.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    // AF_UNSPEC, NFNETLINK_V0, the queue number (big endian).
    msg.extend_from_slice(&[0, 0]);
    msg.extend_from_slice(&queue.to_be_bytes());
}

/// Writes the length of the message that starts at `start` into its header.
fn finish(msg: &mut [u8], start: usize) {
    let len = (msg.len() - start) as u32;
    msg[start..start + 4].copy_from_slice(&len.to_ne_bytes());
}

fn push_attr(msg: &mut Vec<u8>, ty: u16, data: &[u8]) {
    let len = NLA_HDR_LEN + data.len();
    // Attributes of a few bytes: the length fits u16.
    msg.extend_from_slice(&(len as u16).to_ne_bytes());
    msg.extend_from_slice(&ty.to_ne_bytes());
    msg.extend_from_slice(data);
    msg.resize(align4(msg.len()), 0);
}

/// The netlink messages in one datagram: (type, body after the netlink header). Stops at the
/// first malformed length.
fn messages(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if buf.len() < NLMSG_HDR_LEN {
            return None;
        }
        let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len < NLMSG_HDR_LEN || len > buf.len() {
            return None;
        }
        let ty = u16::from_ne_bytes([buf[4], buf[5]]);
        let body = &buf[NLMSG_HDR_LEN..len];
        buf = &buf[align4(len).min(buf.len())..];
        Some((ty, body))
    })
}

/// The packet id in the body of an `NFQNL_MSG_PACKET` message.
fn packet_id(body: &[u8]) -> Option<u32> {
    let mut attrs = body.get(NFGENMSG_LEN..)?;
    while attrs.len() >= NLA_HDR_LEN {
        let len = usize::from(u16::from_ne_bytes([attrs[0], attrs[1]]));
        let ty = u16::from_ne_bytes([attrs[2], attrs[3]]) & NLA_TYPE_MASK;
        if len < NLA_HDR_LEN || len > attrs.len() {
            return None;
        }
        if ty == NFQA_PACKET_HDR && len >= NLA_HDR_LEN + 4 {
            let d = &attrs[NLA_HDR_LEN..];
            return Some(u32::from_be_bytes([d[0], d[1], d[2], d[3]]));
        }
        attrs = &attrs[align4(len).min(attrs.len())..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_are_well_formed_netlink_messages() {
        let mut msg = Vec::new();
        header(&mut msg, NFQNL_MSG_VERDICT, NLM_F_REQUEST, 0, 7);
        push_attr(
            &mut msg,
            NFQA_VERDICT_HDR,
            &[0, 0, 0, 1, 0x12, 0x34, 0x56, 0x78],
        );
        finish(&mut msg, 0);
        assert_eq!(msg.len(), VERDICT_LEN);
        let all: Vec<_> = messages(&msg).collect();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].0, 0x0301);
        // nfgenmsg: AF_UNSPEC, version 0, queue 7 big endian.
        assert_eq!(&all[0].1[..4], &[0, 0, 0, 7]);
    }

    #[test]
    fn packet_ids_are_read_from_the_packet_header_attribute() {
        let mut msg = Vec::new();
        header(&mut msg, NFQNL_MSG_PACKET, 0, 0, 0);
        // An attribute before the header one, as the kernel may send (NFQA_MARK = 3).
        push_attr(&mut msg, 3, &[0, 0, 0, 9]);
        push_attr(&mut msg, NFQA_PACKET_HDR, &[0, 0, 1, 2, 0x08, 0x00, 2]);
        finish(&mut msg, 0);
        // Two messages in one datagram.
        let copy = msg.clone();
        msg.extend_from_slice(&copy);
        let ids: Vec<_> = messages(&msg).filter_map(|(_, b)| packet_id(b)).collect();
        assert_eq!(ids, [258, 258]);
        // A truncated attribute yields nothing rather than garbage.
        assert_eq!(packet_id(&[0, 0, 0, 0, 40, 0, 1, 0]), None);
        // A length past the datagram ends the iteration.
        let mut bad = copy.clone();
        bad[0] = 200;
        assert_eq!(messages(&bad).count(), 0);
    }
}
