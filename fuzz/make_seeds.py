#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets from the kernel captures in encap/tests/fixtures.

Run from fuzz/: python3 make_seeds.py. Seeds are committed; libFuzzer grows its own corpus from them.
"""
import hashlib
import os

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


def main():
    for frame in frames():
        inner = frame[VXLAN_AND_ETHERNET:]
        write("vxlan_decap", frame)
        write("udp_decap", inner)
        write("icmp_error", inner)


if __name__ == "__main__":
    main()
