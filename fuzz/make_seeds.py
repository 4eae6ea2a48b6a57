#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets: the packet targets' from the kernel captures in
encap/tests/fixtures, the control-plane targets' from what flanneld, kubelet, Prometheus and
weftctl write (CONTROL_SEEDS).

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


# What the control-plane parsers read in real deployments, and a few near misses.
MAC = "c6:d2:4f:1a:2b:3c"
VXLAN_LEASE = '{"PublicIP":"192.168.1.10","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"%s"}}' % MAC
CONTROL_SEEDS = {
    # <prefix>/config: kube-flannel.yml's net-conf.json, flannel's docs, k3s's template.
    "network_config": [
        '{\n  "Network": "10.244.0.0/16",\n  "EnableNFTables": false,\n  "Backend": {\n    "Type": "vxlan"\n  }\n}\n',
        '{\n  "Network": "10.244.0.0/16",\n  "EnableIPv6": true,\n  "IPv6Network": "2001:cafe:42::/56",\n  "Backend": {\n    "Type": "vxlan"\n  }\n}\n',
        '{"Network": "10.0.0.0/8", "SubnetLen": 20, "SubnetMin": "10.10.0.0", "SubnetMax": "10.99.0.0", "Backend": {"Type": "udp", "Port": 7890}}',
        '{"Network": "10.42.0.0/16", "EnableIPv6": false, "EnableIPv4": true, "IPv6Network": "::/0", "Backend": {"Type": "vxlan"}}',
        '{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan","VNI":4096,"Port":4789,"GBP":false,"DirectRouting":false}}',
        '{"Network":"10.5.0.0/16"}',
        '{"network":"10.5.0.1/16","SUBNETLEN":26,"subnetMin":"10.5.4.0","SubnetMax":"10.5.8.192","backend":{"type":"vxlan"}}',
        '{"Network":"10.0.0.0/28","SubnetMin":"0.0.0.0"}',
        '{"Network":"10.5.0.0/16","EnableIPv6":true,"IPv6Network":"fd00::/120","IPv6SubnetMin":"fd00::80"}',
        '{"Network":"10.5.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:10:5::/48","IPv6SubnetLen":60,"IPv6SubnetMax":"fd00:10:5:fff0::"}',
        '{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}',
        '{"Network":"10.5.0.0/16","SubnetMin":"10.5.9.0","SubnetMax":"10.5.8.0"}',
    ],
    # A lease as `etcdctl get --prefix /coreos.com/network/subnets` prints it: key line, value line.
    "lease_attrs": [
        "10.244.1.0-24\n" + VXLAN_LEASE,
        '10.244.1.0-24&2001:cafe:42:1::-64\n{"PublicIP":"192.168.1.10","PublicIPv6":"2001:db8::10","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"%s"},"BackendV6Data":{"VNI":1,"VtepMAC":"%s"}}' % (MAC, MAC),
        '10.5.72.0-24\n{"PublicIP":"10.0.0.1","PublicIPv6":null}',
        '10.5.9.0-24\n{"PublicIP":"172.16.0.2","BackendType":"vxlan","BackendData":{"VtepMAC":"2A-9B-77-0E-AB-01"}}',
        '10.5.10.0-24\n{"PublicIP":"172.16.0.4","BackendType":"host-gw","BackendData":null}',
        '10.5.11.0-24\n{"PublicIP":"172.16.0.5","PublicIPv6":null,"BackendType":"wireguard","BackendData":{"PublicKey":"9yWp0Zh0Zs+Ikd7gCzOYqZEm6AqrRWTkKC1xNqA0vXM=","MTU":1420,"Weight":0.25}}',
        '10.5.12.0-24\n{"publicip":"172.16.0.3","Extra":5}',
        "10.5.72.0-024\n{}",
        MAC,
        "2A-9B-77-0E-AB-01",
    ],
    # Request heads as kubelet's probes, Prometheus and curl send them, and a few that are not.
    "http_head": [
        "GET /healthz HTTP/1.1\r\nHost: 10.0.0.1:8471\r\nUser-Agent: kube-probe/1.30\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        "GET /readyz HTTP/1.1\r\nHost: 10.0.0.1:8471\r\nUser-Agent: kube-probe/1.30\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        "GET /metrics HTTP/1.1\r\nHost: 10.0.0.1:8471\r\nUser-Agent: Prometheus/2.53.0\r\nAccept: application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2\r\nAccept-Encoding: gzip\r\nX-Prometheus-Scrape-Timeout-Seconds: 10\r\n\r\n",
        "GET /readyz?verbose HTTP/1.1\r\nHost: localhost:8471\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n",
        "GET /metrics HTTP/1.0\n\n",
        "HEAD /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "POST /readyz HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
        "GET / HTTP/1.1\r\n\r\n",
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        "get /healthz HTTP/1.1\r\n\r\n",
    ],
    # What weftctl and a person with socat send to the control socket.
    "control_request": ["stats\n", "routes\n", "stats", "  routes \r\n", "help\n", "st\xffats\n", "x" * 300],
    # --peers-file: the README's format, comments, dual stack, and lines build rejects.
    "peers_file": [
        '{"subnet": "10.244.2.0/24", "public_ip": "192.168.250.2", "backend": "udp"}\n'
        '{"subnet": "10.244.3.0/24", "public_ip": "192.168.250.3", "backend": "vxlan", "vtep_mac": "0e:00:00:00:00:03", "port": 8472}\n',
        "# node 1 (this one)\n"
        '{"subnet": "10.244.1.0/24", "public_ip": "192.168.250.1", "backend": "vxlan", "vtep_mac": "0e:00:00:00:00:01"}\n'
        "\n"
        '{"subnet": "10.244.2.0/24", "public_ip": "192.168.250.2", "backend": "vxlan", "vtep_mac": "0e:00:00:00:00:02"}\n'
        '{"subnet": "fd00:10:244:2::/64", "public_ip": "192.168.250.2", "backend": "vxlan", "vtep_mac": "0e:00:00:00:00:02"}\n'
        '{"subnet": "10.244.0.0/16", "public_ip": "192.168.250.9", "backend": "vxlan", "vtep_mac": "0e:00:00:00:00:09"}\n',
        '{"subnet": "10.244.2.0/24", "public_ip": "192.168.250.2", "backend": "vxlan", "vtep_mac": "0e:00:00:00:00:02"}\n'
        '{"subnet": "10.244.2.0/24", "public_ip": "192.168.250.4", "backend": "vxlan", "vtep_mac": "0e:00:00:00:00:04"}\n'
        '{"subnet": "10.244.5.0/24", "public_ip": "192.168.250.2", "backend": "vxlan", "vtep_mac": "0e:00:00:00:00:05"}\n'
        '{"subnet": "10.244.6.1/24", "public_ip": "192.168.250.6", "backend": "vxlan"}\n'
        '{"subnet": "fd00:10:244:7::/64", "public_ip": "fd00:250::7", "backend": "vxlan", "vtep_mac": "0e:00:00:00:00:07"}\n',
    ],
    # /run/flannel/subnet.env as flanneld writes it, and as people and tools edit it.
    "subnet_env": [
        "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
        "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_IPV6_NETWORK=2001:cafe:42::/56\nFLANNEL_IPV6_SUBNET=2001:cafe:42:1::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
        'export FLANNEL_SUBNET="10.5.72.1/24"\nexport FLANNEL_MTU=1472\n',
        "FLANNEL_SUBNET=10.0.0.13/30\r\nFLANNEL_IPV6_SUBNET=fd00::7d/126\r\n",
    ],
}

# Inputs the targets failed on, kept as seeds (each fix also has a unit test in engine).
REGRESSION_SEEDS = {
    "lease_attrs": [
        # SubnetKey::parse took a key spelt otherwise than flannel's (`09` for `9`).
        '10.244.1.0-24&2001:cafe:09:1::-64\n{"PublicIP":"192.168.1.10","PublicIPv6":"2001:db8:Y10","BackendType":"vxlan","BackendData":{01:db8:Y10","BackendType":"vxlan","BackendData":{"VNI":{"VNY":1,"VtepMAC":"c6:d2:4f:1a:2b:3c"}}',
        # Another backend's data did not read back to the same number after to_json.
        '10.5.11.0-24\n{"PublilIP":"172.96.0.5","PublicIPv6":null,"BackendType":"wPu0894,5ireg]uard","BackendData":{"PublicKey":"2yWp0NqA0v/XM=","MTUIP":"172.96.0.5","PublicIPv6":null,"BackendType":"wireg]uard","BacWe":1170.247377777777770,"blicIP":"172.96.0.5","PublicIPv6777777ek7}":null,"BackendType":"wireg]uard","BacWeight":0.12}}',
        # parse_mac took a sign (`+c` as 0x0c).
        "c6:d2:4f:1a:2b:+c",
    ],
    "peers_file": [
        # parse_mac took a sign (`+e` as 0x0e).
        '{"subnet": "10.244.2.0/24", "public_ip": "192.168.250.2", "portend": "vxlan", "vtep_mac": "0e:00:00:00:00:02"}\n'
        '{"subnet": "10.244.2.0/24", "public_ip": "192.168.250.4", "backend": "vxlan", "vtep_mac": "0e:00:00:00:00:04"}\n'
        '{"subnet": "10.244.5.0/24", "public_ip": "192.168.250.2", "backend": "vxlan", "vtep_mac": "+e:00:00:00:00:05"}\n'
        '{"subnet": "10.244.6.1/24", "public_ip": "192.168.250.6", "backend": "vxlan"}\n'
        '{"subnet": "fd00:10:244:7::/64", "public_ip": "fd00:250::7", "backend": "vxlan", "vtep_mac": "0e:00:00:00:00:07"}\n',
    ],
}


def control_seeds():
    for target, seeds in list(CONTROL_SEEDS.items()) + list(REGRESSION_SEEDS.items()):
        for seed in seeds:
            # \xff in a seed stands for a byte that is not UTF-8.
            yield target, seed.encode("utf-8").replace(b"\xc3\xbf", b"\xff")


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
    for target, seed in control_seeds():
        write(target, seed)


if __name__ == "__main__":
    main()
