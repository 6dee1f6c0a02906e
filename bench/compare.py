#!/usr/bin/env python3
"""bench/compare.py A_IP A_PORT B_IP B_PORT QUERYFILE [N]: are two loopback servers' answers the same bytes?

Sends each of the first N (default 2000) "name type" lines of QUERYFILE to both servers over UDP three times
(EDNS 1232, EDNS 1232 with DO, no EDNS), with one ID, and compares the answers after the ID. Prints how many
were identical and, for the rest, what differed (size, flags/rcode, section counts, or other bytes such as a
TTL), with a few examples. Used to check that c2sink relays its upstream's bytes (A = c2sink, B = nsd) and
to see what a re-encoding front end changes (docs/performance.md).
"""
import collections
import ipaddress
import random
import socket
import struct
import sys

TYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28, "SRV": 33,
         "SVCB": 64, "HTTPS": 65, "ANY": 255, "CAA": 257}


def query(name, qtype, qid, edns, do):
    head = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 1 if edns else 0)
    labels = b"".join(bytes([len(l)]) + l.encode() for l in name.rstrip(".").split(".")) + b"\0"
    body = labels + struct.pack(">HH", TYPES[qtype.upper()], 1)
    if edns:
        body += b"\0" + struct.pack(">HHIH", 41, 1232, 0x8000 if do else 0, 0)
    return head + body


def ask(addr, packet):
    with socket.socket(socket.AF_INET6 if ":" in addr[0] else socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        s.sendto(packet, addr)
        try:
            return s.recvfrom(65535)[0]
        except socket.timeout:
            return None


def main():
    if len(sys.argv) not in (6, 7):
        sys.exit(__doc__)
    a = (sys.argv[1], int(sys.argv[2]))
    b = (sys.argv[3], int(sys.argv[4]))
    for ip, _ in (a, b):
        try:
            loopback = ipaddress.ip_address(ip).is_loopback  # a literal address: a host name is refused
        except ValueError:
            loopback = False
        if not loopback:
            sys.exit(f"compare.py: {ip} is not a loopback address (127.0.0.0/8 or ::1); refusing")
    n = int(sys.argv[6]) if len(sys.argv) == 7 else 2000
    lines = []
    with open(sys.argv[5]) as f:
        for number, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2 or fields[1].upper() not in TYPES:
                sys.exit(f"compare.py: {sys.argv[5]}:{number}: expected 'name type' with a type of "
                         f"{', '.join(TYPES)}, got {line.strip()!r}")
            lines.append(fields)
            if len(lines) == n:
                break
    seen = collections.Counter()
    examples = []
    for name, qtype in lines:
        for edns, do in ((True, False), (True, True), (False, False)):
            packet = query(name, qtype, random.randrange(65536), edns, do)
            ra, rb = ask(a, packet), ask(b, packet)
            if ra is None or rb is None:
                seen["no answer from " + ("A" if ra is None else "B")] += 1
                continue
            if ra[2:] == rb[2:]:
                seen["identical"] += 1
                continue
            why = [w for w, differs in (("size", len(ra) != len(rb)), ("flags/rcode", ra[2:4] != rb[2:4]),
                                        ("counts", ra[4:12] != rb[4:12])) if differs] or ["same size, other bytes"]
            seen[",".join(why)] += 1
            if len(examples) < 5:
                examples.append(f"{name} {qtype} edns={edns} do={do}: {len(ra)} vs {len(rb)} bytes, "
                                f"header {ra[2:12].hex()} vs {rb[2:12].hex()}")
    print(f"{sum(seen.values())} queries ({len(lines)} names x 3 EDNS variants), A={a[0]}:{a[1]} B={b[0]}:{b[1]}")
    for what, count in seen.most_common():
        print(f"  {what}: {count}")
    for e in examples:
        print(f"  e.g. {e}")


if __name__ == "__main__":
    main()
