//! Traffic checks between namespaces: ping (weftctl's own ICMP echo, [`super::ping`]), a
//! verified TCP stream of a given size or for a given time, UDP datagrams echoed and
//! compared, and waiting for a listening port; and the latency workloads of `weftctl bench`:
//! a TCP request/response exchange ([`tcp_rr`]) and per-packet ping round trips
//! ([`ping_rtts`]).
//!
//! Contract: every check is bounded in time (no check can hang a test) and returns an error
//! that says what was sent, from where to where, and what went wrong. The TCP stream's bytes
//! come from a seeded pseudo-random [`Pattern`] and the receiver compares every byte it gets
//! against the pattern at that offset, so a byte lost, duplicated, reordered or corrupted
//! anywhere in the stream fails the check with its offset (stronger than comparing hashes
//! at the end). Sockets are opened on threads that entered the namespaces, not in child
//! processes, so nothing outside the testbed is needed.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::ping::{self, Echo};
use weft_testkit::netns::Netns;

/// The pattern's period: a prime, so no segment or buffer size lines up with it.
pub const PATTERN_PERIOD: usize = 1_000_003;
/// Size of the TCP stream's read and write buffers.
const STREAM_BUF: usize = 256 * 1024;
/// How long a UDP check waits for each echo before it resends.
const ECHO_WAIT: Duration = Duration::from_millis(500);
/// How often a UDP datagram is sent before the check gives up on it.
pub const ECHO_TRIES: usize = 6;
/// Bytes of sequence number at the start of each echoed datagram.
const ECHO_SEQ_LEN: usize = 8;

/// A deterministic pseudo-random byte sequence of period [`PATTERN_PERIOD`], laid out twice
/// so that any window of up to one period is one slice.
#[derive(Debug, Clone)]
pub struct Pattern {
    bytes: Vec<u8>,
}

impl Pattern {
    /// The pattern for `seed` (xorshift64*).
    pub fn new(seed: u64) -> Pattern {
        let mut state = seed | 1;
        let mut bytes = Vec::with_capacity(2 * PATTERN_PERIOD + 8);
        while bytes.len() < PATTERN_PERIOD {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            bytes.extend_from_slice(&state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
        }
        bytes.truncate(PATTERN_PERIOD);
        bytes.extend_from_within(..PATTERN_PERIOD);
        Pattern { bytes }
    }

    /// The `len` (at most [`PATTERN_PERIOD`]) bytes at stream offset `offset`.
    pub fn window(&self, offset: u64, len: usize) -> &[u8] {
        let start = (offset % PATTERN_PERIOD as u64) as usize;
        &self.bytes[start..start + len.min(PATTERN_PERIOD)]
    }
}

/// What a verified TCP stream measured.
#[derive(Debug, Clone, Copy)]
pub struct StreamReport {
    /// Bytes received and verified.
    pub bytes: u64,
    /// From connect to the receiver's end of stream.
    pub elapsed: Duration,
    /// The longest time the receiver waited between two reads that returned data (from the
    /// accept to the first one included): how long the stream stood still at worst.
    pub longest_gap: Duration,
}

impl StreamReport {
    /// Goodput in Gbit/s.
    pub fn gbit_per_s(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.elapsed.as_secs_f64().max(1e-9) / 1e9
    }
}

/// One end of a check: a namespace and an address in it.
#[derive(Debug, Clone, Copy)]
pub struct End<'a> {
    /// The namespace.
    pub ns: &'a Netns,
    /// The address to bind.
    pub ip: IpAddr,
}

/// Pings `to` from `from.ip` inside `from.ns` until `count` echo requests of `size` data
/// bytes (None: ping's default 56; Some: with DF set) are answered, one request every
/// 200 ms, each reply awaited up to 2 s, for at most `count + 5` seconds (as `ping -c count
/// -w count+5`: a request lost while a path settles is made up for).
pub fn ping(from: End<'_>, to: IpAddr, count: u16, size: Option<usize>) -> anyhow::Result<()> {
    let echo = Echo {
        count,
        size: size.unwrap_or(ping::DEFAULT_SIZE),
        dont_fragment: size.is_some(),
        deadline: Some(Duration::from_secs(u64::from(count) + 5)),
        ..Echo::default()
    };
    let report = ping::echo(from, to, &echo)?;
    if report.received() < usize::from(count) {
        bail!(
            "ping {to} from {} in {} (size {size:?}): {report}",
            from.ip,
            from.ns.name()
        );
    }
    Ok(())
}

/// Streams `bytes` pattern bytes from `from` to `to` over TCP and verifies every byte on
/// arrival. Fails if no byte moves for `stall`, or after `limit` overall.
pub fn tcp_stream(
    from: End<'_>,
    to: End<'_>,
    bytes: u64,
    seed: u64,
    stall: Duration,
    limit: Duration,
) -> anyhow::Result<StreamReport> {
    stream(from, to, Length::Bytes(bytes), None, seed, stall, limit)
}

/// Streams pattern bytes from `from` to `to` over TCP for `time` from the connection (the
/// sender then closes), verifying every byte on arrival; the report holds what arrived.
/// Fails if no byte moves for `stall`, or after `time + 2 * stall` overall.
pub fn tcp_stream_for(
    from: End<'_>,
    to: End<'_>,
    time: Duration,
    seed: u64,
    stall: Duration,
) -> anyhow::Result<StreamReport> {
    stream(
        from,
        to,
        Length::Time(time),
        None,
        seed,
        stall,
        time + stall * 2,
    )
}

/// Like [`tcp_stream_for`], at most `rate` bytes/s (the sender sleeps when ahead): a stream
/// that proves a connection survives for a long time without taking a core.
pub fn tcp_stream_paced(
    from: End<'_>,
    to: End<'_>,
    time: Duration,
    rate: u64,
    seed: u64,
    stall: Duration,
) -> anyhow::Result<StreamReport> {
    stream(
        from,
        to,
        Length::Time(time),
        Some(rate),
        seed,
        stall,
        time + stall * 2,
    )
}

/// How much a TCP stream sends.
#[derive(Debug, Clone, Copy)]
enum Length {
    /// This many bytes.
    Bytes(u64),
    /// For this long from the connection.
    Time(Duration),
}

fn stream(
    from: End<'_>,
    to: End<'_>,
    length: Length,
    pace: Option<u64>,
    seed: u64,
    stall: Duration,
    limit: Duration,
) -> anyhow::Result<StreamReport> {
    let expected = match length {
        Length::Bytes(bytes) => Some(bytes),
        Length::Time(_) => None,
    };
    let pattern = Arc::new(Pattern::new(seed));
    let deadline = Instant::now() + limit;
    let (port_tx, port_rx) = mpsc::channel();
    let dst = to.ip;
    let rx_pattern = Arc::clone(&pattern);
    let receiver = to.ns.spawn_inside(move || {
        let conn =
            accept_one(dst, &port_tx, deadline).context("accepting the stream's connection")?;
        let started = Instant::now();
        conn.set_nonblocking(false)?;
        conn.set_read_timeout(Some(stall))?;
        let mut timed = GapTimer {
            inner: conn,
            last: started,
            longest: Duration::ZERO,
        };
        let got = verify(&mut timed, &rx_pattern, expected, deadline)?;
        Ok(StreamReport {
            bytes: got,
            elapsed: started.elapsed(),
            longest_gap: timed.longest,
        })
    });

    let port = port_rx
        .recv_timeout(limit)
        .map_err(|_| anyhow::anyhow!("the receiver never listened"));
    let port = match port {
        Ok(p) => p,
        Err(e) => {
            return Err(join(receiver).err().unwrap_or(e)).context("TCP stream: receiver");
        }
    };
    let src = from.ip;
    let tx_pattern = Arc::clone(&pattern);
    let sender = from.ns.spawn_inside(move || {
        let to = SocketAddr::new(dst, port);
        let socket = Socket::new(Domain::for_address(to), Type::STREAM, Some(Protocol::TCP))?;
        socket
            .bind(&SockAddr::from(SocketAddr::new(src, 0)))
            .with_context(|| format!("sender: binding {src}"))?;
        socket
            .connect_timeout(&to.into(), stall)
            .with_context(|| format!("sender: connecting {src} -> {to}"))?;
        let mut conn: TcpStream = socket.into();
        conn.set_write_timeout(Some(stall))?;
        let connected = Instant::now();
        let (bytes, until) = match length {
            Length::Bytes(bytes) => (bytes, None),
            Length::Time(time) => (u64::MAX, Some(connected + time)),
        };
        let mut sent: u64 = 0;
        while sent < bytes && until.is_none_or(|t| Instant::now() < t) {
            if Instant::now() >= deadline {
                bail!("sender: time limit {limit:?} reached after {sent} bytes");
            }
            let mut len = (bytes - sent).min(STREAM_BUF as u64) as usize;
            if let Some(rate) = pace {
                let allowed = (rate as f64 * connected.elapsed().as_secs_f64()) as u64;
                if sent >= allowed {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                len = len.min((allowed - sent) as usize);
            }
            match conn.write(tx_pattern.window(sent, len)) {
                Ok(n) => sent += n as u64,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    bail!("sender: stalled for {stall:?} after {sent} bytes")
                }
                Err(e) => return Err(e).context(format!("sender: write after {sent} bytes")),
            }
        }
        conn.shutdown(std::net::Shutdown::Write)?;
        // Keep the socket until the receiver has everything (a close with unread data
        // would reset the connection).
        conn.set_read_timeout(Some(stall))?;
        let mut sink = [0u8; 16];
        let _ = conn.read(&mut sink);
        Ok(sent)
    });
    let size = match length {
        Length::Bytes(bytes) => format!("of {bytes} bytes"),
        Length::Time(time) => format!("for {time:?}"),
    };
    let what = format!(
        "TCP stream {size} {} ({}) -> {} ({})",
        from.ip,
        from.ns.name(),
        to.ip,
        to.ns.name()
    );
    let rx = join(receiver);
    let tx = join(sender);
    match (rx, tx) {
        (Ok(report), Ok(_)) => Ok(report),
        (Err(rx), Ok(_)) => Err(rx).context(what),
        (Ok(_), Err(tx)) => Err(tx).context(what),
        (Err(rx), Err(tx)) => Err(rx).context(format!("{what}; sender: {tx:#}")),
    }
}

/// A reader that measures the longest wait between two reads that returned data.
struct GapTimer<R> {
    inner: R,
    last: Instant,
    longest: Duration,
}

impl<R: Read> Read for GapTimer<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            let now = Instant::now();
            self.longest = self.longest.max(now - self.last);
            self.last = now;
        }
        Ok(n)
    }
}

/// Reads `reader` to its end, checking every byte against `pattern` from offset 0; returns
/// the byte count, which must be `bytes`. A read timeout set on the reader is a stall.
pub fn verify_stream<R: Read>(
    reader: &mut R,
    pattern: &Pattern,
    bytes: u64,
    deadline: Instant,
) -> anyhow::Result<u64> {
    verify(reader, pattern, Some(bytes), deadline)
}

/// [`verify_stream`] with the byte count known (`Some`) or whatever arrives (`None`).
fn verify<R: Read>(
    reader: &mut R,
    pattern: &Pattern,
    expected: Option<u64>,
    deadline: Instant,
) -> anyhow::Result<u64> {
    let bytes = expected.unwrap_or(u64::MAX);
    let of = expected.map_or(String::new(), |b| format!(" of {b}"));
    let mut buf = vec![0u8; STREAM_BUF];
    let mut got: u64 = 0;
    loop {
        if Instant::now() >= deadline {
            bail!("receiver: time limit reached after {got}{of} bytes");
        }
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                bail!("receiver: stalled after {got}{of} bytes")
            }
            Err(e) => return Err(e).context(format!("receiver: read after {got} bytes")),
        };
        if got + n as u64 > bytes {
            bail!(
                "receiver: more bytes than sent ({} > {bytes})",
                got + n as u64
            );
        }
        let expected = pattern.window(got, n);
        if buf[..n] != *expected {
            let at = buf[..n]
                .iter()
                .zip(expected)
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            bail!(
                "receiver: byte {} of the stream differs from what was sent",
                got + at as u64
            );
        }
        got += n as u64;
    }
    if expected.is_some_and(|b| got != b) {
        bail!("receiver: the stream ended after {got}{of} bytes");
    }
    Ok(got)
}

/// Sends one datagram of each size from `from` to an echo server at `to`, and checks every
/// echo byte for byte (so both directions are checked). Each size is tried up to
/// [`ECHO_TRIES`] times; fails naming the sizes that never came back intact.
pub fn udp_echo(from: End<'_>, to: End<'_>, sizes: &[usize]) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let (port_tx, port_rx) = mpsc::channel();
    let dst = to.ip;
    let server_stop = Arc::clone(&stop);
    let server = to.ns.spawn_inside(move || {
        let socket = UdpSocket::bind((dst, 0)).with_context(|| format!("binding UDP {dst}"))?;
        let _ = port_tx.send(socket.local_addr()?.port());
        socket.set_read_timeout(Some(Duration::from_millis(100)))?;
        let mut buf = vec![0u8; 65536];
        let mut echoed = 0usize;
        while !server_stop.load(Ordering::Relaxed) {
            match socket.recv_from(&mut buf) {
                Ok((n, peer)) => {
                    socket.send_to(&buf[..n], peer)?;
                    echoed += 1;
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e).context("echo server: recv"),
            }
        }
        Ok(echoed)
    });
    let port = match port_rx.recv_timeout(Duration::from_secs(10)) {
        Ok(p) => p,
        Err(_) => {
            stop.store(true, Ordering::Relaxed);
            return Err(join(server)
                .err()
                .unwrap_or_else(|| anyhow::anyhow!("the echo server never bound")));
        }
    };
    let src = from.ip;
    let sizes_owned = sizes.to_vec();
    let client = from.ns.spawn_inside(move || {
        let socket = UdpSocket::bind((src, 0)).with_context(|| format!("binding UDP {src}"))?;
        socket.connect((dst, port))?;
        socket.set_read_timeout(Some(ECHO_WAIT))?;
        let mut failed = Vec::new();
        let mut buf = vec![0u8; 65536];
        for (seq, &size) in sizes_owned.iter().enumerate() {
            let payload = echo_payload(seq as u64, size);
            let mut ok = false;
            'tries: for _ in 0..ECHO_TRIES {
                // A send can fail while a neighbour or route settles: count it as a loss.
                let _ = socket.send(&payload);
                let until = Instant::now() + ECHO_WAIT;
                while Instant::now() < until {
                    match socket.recv(&mut buf) {
                        Ok(n) if buf[..n] == payload[..] => {
                            ok = true;
                            break 'tries;
                        }
                        // A late echo of an earlier datagram, or a corrupted one.
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
            }
            if !ok {
                failed.push(size);
            }
        }
        Ok(failed)
    });
    let failed = join(client);
    stop.store(true, Ordering::Relaxed);
    let served = join(server);
    let what = format!(
        "UDP echo {} ({}) -> {} ({})",
        from.ip,
        from.ns.name(),
        to.ip,
        to.ns.name()
    );
    let failed = failed.context(what.clone())?;
    served.context(what.clone())?;
    if !failed.is_empty() {
        bail!("{what}: no intact echo for datagram sizes {failed:?} (of {sizes:?})");
    }
    Ok(())
}

/// A datagram of `size` bytes: the sequence number, then pattern bytes (fewer than
/// [`ECHO_SEQ_LEN`] bytes: just pattern bytes).
fn echo_payload(seq: u64, size: usize) -> Vec<u8> {
    let mut p = Pattern::new(seq.wrapping_add(0x5eed))
        .window(0, size)
        .to_vec();
    if size >= ECHO_SEQ_LEN {
        p[..ECHO_SEQ_LEN].copy_from_slice(&seq.to_be_bytes());
    }
    p
}

/// Waits until something listens on `port` (TCP or UDP) inside `ns` (`ss -Hln`).
pub fn wait_for_port(ns: &Netns, udp: bool, port: u16, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let flag = if udp { "-Hlnu" } else { "-Hlnt" };
    let suffix = format!(":{port}");
    loop {
        let out = ns.exec_checked("ss", &[flag])?;
        let listening = out.lines().any(|l| {
            l.split_whitespace()
                .nth(3)
                .is_some_and(|local| local.ends_with(&suffix))
        });
        if listening {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "nothing listens on {} port {port} in {} after {timeout:?}",
                if udp { "UDP" } else { "TCP" },
                ns.name()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Round-trip times of `count` one-byte request/response exchanges over one TCP connection
/// (TCP_NODELAY on both ends) from `from` to an echo server at `to`, after `warmup`
/// unrecorded exchanges. Fails if one exchange takes longer than `stall`, or after `limit`.
pub fn tcp_rr(
    from: End<'_>,
    to: End<'_>,
    warmup: usize,
    count: usize,
    stall: Duration,
    limit: Duration,
) -> anyhow::Result<Vec<Duration>> {
    let deadline = Instant::now() + limit;
    let (port_tx, port_rx) = mpsc::channel();
    let dst = to.ip;
    let server = to.ns.spawn_inside(move || {
        let mut conn =
            accept_one(dst, &port_tx, deadline).context("echo server: accepting the connection")?;
        conn.set_nonblocking(false)?;
        conn.set_nodelay(true)?;
        conn.set_read_timeout(Some(stall))?;
        let mut byte = [0u8; 1];
        let mut served = 0usize;
        loop {
            match conn.read(&mut byte) {
                Ok(0) => return Ok(served),
                Ok(_) => {
                    conn.write_all(&byte)
                        .context("echo server: writing the response")?;
                    served += 1;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(e).context(format!("echo server: read after {served} requests"))
                }
            }
        }
    });
    let port = match port_rx.recv_timeout(limit) {
        Ok(p) => p,
        Err(_) => {
            return Err(join(server)
                .err()
                .unwrap_or_else(|| anyhow::anyhow!("the echo server never listened")))
        }
    };
    let src = from.ip;
    let client = from.ns.spawn_inside(move || {
        let to = SocketAddr::new(dst, port);
        let socket = Socket::new(Domain::for_address(to), Type::STREAM, Some(Protocol::TCP))?;
        socket
            .bind(&SockAddr::from(SocketAddr::new(src, 0)))
            .with_context(|| format!("client: binding {src}"))?;
        socket
            .connect_timeout(&to.into(), stall)
            .with_context(|| format!("client: connecting {src} -> {to}"))?;
        let mut conn: TcpStream = socket.into();
        conn.set_nodelay(true)?;
        conn.set_read_timeout(Some(stall))?;
        let mut rtts = Vec::with_capacity(count);
        let mut byte = [0u8; 1];
        for i in 0..warmup + count {
            if Instant::now() >= deadline {
                bail!("client: time limit {limit:?} reached after {i} exchanges");
            }
            let started = Instant::now();
            byte[0] = i as u8;
            conn.write_all(&byte)
                .with_context(|| format!("client: request {i}"))?;
            let mut got = [0u8; 1];
            conn.read_exact(&mut got)
                .with_context(|| format!("client: response {i} (waited up to {stall:?})"))?;
            if got != byte {
                bail!("client: response {i} is {:?}, sent {:?}", got[0], byte[0]);
            }
            if i >= warmup {
                rtts.push(started.elapsed());
            }
        }
        conn.shutdown(std::net::Shutdown::Write)?;
        Ok(rtts)
    });
    let what = format!(
        "TCP request/response {} ({}) -> {} ({})",
        from.ip,
        from.ns.name(),
        to.ip,
        to.ns.name()
    );
    let rtts = join(client);
    let served = join(server);
    let rtts = rtts.context(what.clone())?;
    served.context(what)?;
    Ok(rtts)
}

/// Round-trip times of `count` pings from `from` to `to`, one every `interval`, each reply
/// awaited at most 1 s. The replies that came back, in order; fails when none did.
pub fn ping_rtts(
    from: End<'_>,
    to: IpAddr,
    count: u16,
    interval: Duration,
) -> anyhow::Result<Vec<Duration>> {
    let echo = Echo {
        count,
        interval,
        wait: Duration::from_secs(1),
        ..Echo::default()
    };
    let report = ping::echo(from, to, &echo)?;
    if report.received() == 0 {
        bail!("ping {to} from {} in {}: {report}", from.ip, from.ns.name());
    }
    Ok(report.replies())
}

/// Joins a check thread, turning a panic into an error.
pub(super) fn join<R>(handle: std::thread::JoinHandle<anyhow::Result<R>>) -> anyhow::Result<R> {
    handle
        .join()
        .unwrap_or_else(|_| Err(anyhow::anyhow!("the check thread panicked")))
}

/// Listens on `ip` (any port), sends the port to `port_tx`, and accepts one connection,
/// polling every 5 ms until `deadline`.
fn accept_one(
    ip: IpAddr,
    port_tx: &mpsc::Sender<u16>,
    deadline: Instant,
) -> anyhow::Result<TcpStream> {
    let listener = TcpListener::bind((ip, 0)).with_context(|| format!("binding TCP {ip}"))?;
    let _ = port_tx.send(listener.local_addr()?.port());
    listener.set_nonblocking(true)?;
    loop {
        match listener.accept() {
            Ok((conn, _)) => return Ok(conn),
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_windows_wrap_around_the_period() {
        let p = Pattern::new(7);
        let period = PATTERN_PERIOD as u64;
        assert_eq!(p.window(period - 3, 6)[..3], p.window(period - 3, 3)[..]);
        assert_eq!(p.window(period - 3, 6)[3..], p.window(0, 3)[..]);
        assert_eq!(p.window(5 * period + 11, 100), p.window(11, 100));
        assert_ne!(Pattern::new(8).window(0, 64), p.window(0, 64));
        assert_ne!(p.window(0, 64), p.window(64, 64));
    }

    fn stream_of(p: &Pattern, len: usize) -> Vec<u8> {
        let mut v = Vec::new();
        while v.len() < len {
            let chunk = (len - v.len()).min(PATTERN_PERIOD);
            v.extend_from_slice(p.window(v.len() as u64, chunk));
        }
        v
    }

    #[test]
    fn verify_stream_accepts_the_pattern_and_catches_every_fault() {
        let p = Pattern::new(42);
        let far = Instant::now() + Duration::from_secs(60);
        let len = 3 * PATTERN_PERIOD + 12_345;
        let good = stream_of(&p, len);
        let got = verify_stream(&mut &good[..], &p, len as u64, far).expect("intact stream");
        assert_eq!(got, len as u64);
        // A stream of unknown length (tcp_stream_for) takes whatever arrives intact.
        let got = verify(&mut &good[..], &p, None, far).expect("intact stream");
        assert_eq!(got, len as u64);

        let mut flipped = good.clone();
        flipped[2_000_001] ^= 0x40;
        let e = verify_stream(&mut &flipped[..], &p, len as u64, far).expect_err("corruption");
        assert!(e.to_string().contains("byte 2000001 "), "{e}");

        let e = verify(&mut &flipped[..], &p, None, far).expect_err("corruption");
        assert!(e.to_string().contains("byte 2000001 "), "{e}");

        let short = &good[..len - 1];
        let e = verify_stream(&mut &short[..], &p, len as u64, far).expect_err("short");
        assert!(e.to_string().contains("ended after"), "{e}");

        let e = verify_stream(&mut &good[..], &p, len as u64 - 1, far).expect_err("long");
        assert!(e.to_string().contains("more bytes"), "{e}");

        // A segment delivered twice (and the stream cut to length) shifts what follows.
        let mut dup = good[..1_000_000].to_vec();
        dup.extend_from_slice(&good[999_000..len - 1000]);
        let e = verify_stream(&mut &dup[..], &p, len as u64, far).expect_err("duplicate");
        assert!(e.to_string().contains("differs"), "{e}");

        let past = Instant::now();
        assert!(verify_stream(&mut &good[..], &p, len as u64, past).is_err());
    }

    #[test]
    fn echo_payloads_are_distinct_and_sized() {
        assert_eq!(echo_payload(1, 0).len(), 0);
        assert_eq!(echo_payload(1, 3).len(), 3);
        assert_eq!(echo_payload(1, 1472).len(), 1472);
        assert_ne!(echo_payload(1, 100), echo_payload(2, 100));
    }
}
