#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets from the kernel captures in encap/tests/fixtures.

Run from fuzz/: python3 make_seeds.py. Seeds are committed; libFuzzer grows its own corpus from them.
"""
import hashlib
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "encap", "tests", "fixtures", "kernel_vxlan.txt")
VXLAN_AND_ETHERNET = 22


def frames():
    with open(FIXTURES) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            yield bytes.fromhex(line.split()[2])


def write(target, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()), "wb") as f:
        f.write(data)


def csum_fold(data, initial=0):
    if len(data) % 2:
        data = data + b"\0"
    s = initial + sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def pseudo(v6, src, dst, proto, length):
    if v6:
        return csum_fold(src + dst + struct.pack("!IxxxB", length, proto))
    return csum_fold(src + dst + struct.pack("!xBH", proto, length))


SRC4, DST4 = bytes([10, 244, 1, 5]), bytes([10, 244, 2, 7])
SRC6 = bytes.fromhex("fd000000000000010000000000000005")
DST6 = bytes.fromhex("fd000000000000020000000000000007")


def packet(v6, tcp, payload, seq=1000, flags=0x10, ident=7, partial=False):
    """An IPv4/IPv6 TCP/UDP packet; the L4 checksum full, or partial (pseudo-header only)."""
    proto = 6 if tcp else 17
    if tcp:
        l4 = struct.pack("!HHIIBBHHH", 40000, 5201, seq, 77, 5 << 4, flags, 512, 0, 0) + payload
    else:
        l4 = struct.pack("!HHHH", 40000, 5201, 8 + len(payload), 0) + payload
    src, dst = (SRC6, DST6) if v6 else (SRC4, DST4)
    ps = pseudo(v6, src, dst, proto, len(l4))
    at = 16 if tcp else 6
    c = ps if partial else (~csum_fold(l4, ps) & 0xFFFF) or (0 if tcp else 0xFFFF)
    l4 = l4[:at] + struct.pack("!H", c) + l4[at + 2:]
    if v6:
        return struct.pack("!IHBB", 6 << 28, len(l4), proto, 64) + src + dst + l4
    ip = struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(l4), ident, 0x4000, 64, proto, 0) + src + dst
    ip = ip[:10] + struct.pack("!H", ~csum_fold(ip) & 0xFFFF) + ip[12:]
    return ip + l4


def virtio(gso_type, gso_size, csum_start, csum_offset, hdr_len):
    # struct virtio_net_hdr, native (little) endian on the machines weft runs on.
    return struct.pack("<BBHHHH", 1, gso_type, hdr_len, gso_size, csum_start, csum_offset)


def gso_seeds():
    payload = bytes(range(256)) * 16  # 4096 bytes
    for v6 in (False, True):
        l3 = 40 if v6 else 20
        for tcp in (True, False):
            pkt = packet(v6, tcp, payload, flags=0x18, partial=True)
            gso_type = (4 if v6 else 1) if tcp else 5
            hdr = l3 + (20 if tcp else 8)
            for max_inner, encap in ((1450, 1), (1472, 0), (576, 1)):
                vh = virtio(gso_type, 1000, l3, 16 if tcp else 6, hdr)
                yield struct.pack("<HB", max_inner - 68, encap) + vh + pkt
        small = packet(v6, True, b"hello", partial=True)
        yield struct.pack("<HB", 1400, 1) + virtio(0, 0, l3, 16, 0) + small


def gro_seeds():
    chunk = bytes(range(200)) * 7  # 1400 bytes
    for v6 in (False, True):
        for tcp in (True, False):
            segs = [
                packet(v6, tcp, chunk, seq=1000 + i * len(chunk), ident=7 + i,
                       flags=0x18 if i == 5 else 0x10)
                for i in range(6)
            ]
            segs.append(packet(v6, tcp, chunk[:100], seq=1000 + 6 * len(chunk)))
            body = b"".join(struct.pack("!H", len(s)) + s for s in segs)
            yield bytes([1]) + body
            yield bytes([3]) + body


def main():
    for frame in frames():
        inner = frame[VXLAN_AND_ETHERNET:]
        write("vxlan_decap", frame)
        write("udp_decap", inner)
        write("icmp_error", inner)
        write("ip_packet", inner)
    for seed in gso_seeds():
        write("gso_split", seed)
    for seed in gro_seeds():
        write("gro_coalesce", seed)
    inners = [f[VXLAN_AND_ETHERNET:] for f in frames()]
    write("gro_coalesce", bytes([0]) + b"".join(struct.pack("!H", len(i)) + i for i in inners))


if __name__ == "__main__":
    main()
