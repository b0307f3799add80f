#!/usr/bin/env python3
"""Writes the seed corpus of the wire_parse fuzz target (corpus/wire_parse/).

Real-world shaped packets with valid checksums: IPv4/IPv6 x TCP/UDP/ICMP, IPv4 options,
IPv6 extension headers and fragments, ICMP errors with truncated quotes, UPMT tunnel frames.
Run from fuzz/: python3 gen_seeds.py (idempotent). The stable test wire/tests/corpus.rs
replays every file through wire::fuzz::parse_all.
"""
import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "wire_parse")


def csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data)//2}H", data))
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ip4(src, dst, proto, payload, options=b"", df=True, frag=0, mf=False, ident=0x1c46):
    ihl = 5 + len(options) // 4
    flags = (0x4000 if df else 0) | (0x2000 if mf else 0) | (frag // 8)
    hdr = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, ihl * 4 + len(payload), ident, flags, 64,
                      proto, 0, bytes(src), bytes(dst)) + options
    c = csum(hdr)
    hdr = hdr[:10] + struct.pack("!H", c) + hdr[12:]
    return hdr + payload


def ip6(src, dst, nh, payload):
    return struct.pack("!IHBB16s16s", 0x60000000, len(payload), nh, 64, bytes(src), bytes(dst)) + payload


def ph4(src, dst, proto, length):
    return bytes(src) + bytes(dst) + struct.pack("!BBH", 0, proto, length)


def ph6(src, dst, nh, length):
    return bytes(src) + bytes(dst) + struct.pack("!IxxxB", length, nh)


def udp(sport, dport, payload, ph):
    seg = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    c = csum(ph(8 + len(payload)) + seg) or 0xFFFF
    return seg[:6] + struct.pack("!H", c) + seg[8:]


def tcp(sport, dport, flags, options, payload, ph):
    off = (20 + len(options)) // 4
    seg = struct.pack("!HHIIBBHHH", sport, dport, 0x5B2E9F2A, 0, off << 4, flags, 64240, 0, 0) + options + payload
    c = csum(ph(len(seg)) + seg)
    return seg[:16] + struct.pack("!H", c) + seg[18:]


def icmp4(t, code, rest, data):
    m = struct.pack("!BBH", t, code, 0) + rest + data
    return m[:2] + struct.pack("!H", csum(m)) + m[4:]


def icmp6(t, code, rest, data, src, dst):
    m = struct.pack("!BBH", t, code, 0) + rest + data
    c = csum(ph6(src, dst, 58, len(m)) + m)
    return m[:2] + struct.pack("!H", c) + m[4:]


A4 = [100, 64, 0, 2]
B4 = [198, 18, 3, 1]
R4 = [198, 18, 0, 254]
A6 = bytes.fromhex("20010db8000000000000000000000001")
B6 = bytes.fromhex("20010db8000000000000000000000002")
R6 = bytes.fromhex("20010db80000000000000000000000ff")
SYN_OPTS = bytes.fromhex("020405b40402080a9b1a6e3c0000000001030307")


def seeds():
    p4 = lambda proto: (lambda n: ph4(A4, B4, proto, n))
    p6 = lambda nh: (lambda n: ph6(A6, B6, nh, n))
    s = {}
    s["ipv4_udp_dns"] = ip4(A4, B4, 17, udp(50395, 53, bytes.fromhex("123401000001000000000000016103636f6d0000010001"), p4(17)))
    s["ipv4_udp_1400"] = ip4(A4, B4, 17, udp(5001, 5201, bytes(range(256)) * 5 + bytes(92), p4(17)))
    nocs = bytearray(ip4(A4, B4, 17, udp(4000, 4001, b"no checksum", p4(17))))
    nocs[26:28] = b"\0\0"
    s["ipv4_udp_zero_checksum"] = bytes(nocs)
    s["ipv4_tcp_syn_mss"] = ip4(A4, B4, 6, tcp(44346, 80, 0x02, SYN_OPTS, b"", p4(6)))
    s["ipv4_tcp_mss_odd_offset"] = ip4(A4, B4, 6, tcp(44346, 80, 0x02, bytes.fromhex("01020405b4010101"), b"", p4(6)))
    s["ipv4_tcp_data"] = ip4(A4, B4, 6, tcp(44346, 80, 0x18, b"", b"GET / HTTP/1.1\r\nHost: ch\r\n\r\n", p4(6)))
    s["ipv4_options_router_alert"] = ip4(A4, B4, 17, udp(1, 2, b"x", p4(17)), options=bytes.fromhex("94040000"))
    s["ipv4_first_fragment"] = ip4(A4, B4, 17, udp(5000, 53, bytes(64), p4(17))[:48], mf=True)
    s["ipv4_later_fragment"] = ip4(A4, B4, 17, bytes(40), frag=1480)
    s["ipv4_icmp_echo"] = ip4(A4, B4, 1, icmp4(8, 0, struct.pack("!HH", 0x1C46, 1), b"abcdefgh"))
    quoted_udp = ip4(A4, B4, 17, udp(50395, 53, bytes(32), p4(17)))[:28]
    s["ipv4_icmp_port_unreachable"] = ip4(B4, A4, 1, icmp4(3, 3, bytes(4), quoted_udp))
    quoted_tcp = ip4(A4, B4, 6, tcp(44346, 80, 0x02, SYN_OPTS, b"", p4(6)))[:28]
    s["ipv4_icmp_frag_needed_tcp"] = ip4(R4, A4, 1, icmp4(3, 4, struct.pack("!HH", 0, 1372), quoted_tcp))
    quoted_echo = ip4(A4, B4, 1, icmp4(8, 0, struct.pack("!HH", 7, 1), b"ping"))[:28]
    s["ipv4_icmp_time_exceeded_echo"] = ip4(R4, A4, 1, icmp4(11, 0, bytes(4), quoted_echo))
    s["ipv4_gre"] = ip4(A4, B4, 47, bytes(8))
    s["ipv6_udp"] = ip6(A6, B6, 17, udp(1234, 53, b"abcdefgh", p6(17)))
    s["ipv6_tcp_syn"] = ip6(A6, B6, 6, tcp(44346, 443, 0x02, SYN_OPTS, b"", p6(6)))
    ext = bytes.fromhex("3c00010400000000") + bytes.fromhex("2c00010400000000") + bytes.fromhex("3a00000112345678")
    s["ipv6_ext_frag_icmpv6"] = ip6(A6, B6, 0, ext + icmp6(128, 0, struct.pack("!HH", 1, 1), b"abcd", A6, B6))
    s["ipv6_later_fragment"] = ip6(A6, B6, 44, bytes.fromhex("110000b912345678") + bytes(16))
    s["ipv6_ah_udp"] = ip6(A6, B6, 51, bytes.fromhex("110100000000000100000002") + udp(9, 9, b"", p6(17)))
    s["ipv6_icmpv6_echo"] = ip6(A6, B6, 58, icmp6(128, 0, struct.pack("!HH", 0x77, 3), b"ping", A6, B6))
    q6 = ip6(A6, B6, 6, tcp(44346, 80, 0x02, b"", bytes(1300), p6(6)))
    ptb = icmp6(2, 0, struct.pack("!I", 1280), q6[:1280 - 48], R6, A6)
    s["ipv6_packet_too_big"] = ip6(R6, A6, 58, ptb)
    s["ipv6_dst_unreachable_short_quote"] = ip6(R6, A6, 58, icmp6(1, 4, bytes(4), q6[:48], R6, A6))
    s["tunnel_keepalive_request"] = bytes.fromhex("00010010") + struct.pack("!IIQ", 7, 42, 123456789)
    s["tunnel_keepalive_reply"] = bytes.fromhex("00020010") + struct.pack("!IIQ", 7, 42, 123456789)
    sip = b"MESSAGE sip:an@198.18.2.1 SIP/2.0\r\nContent-Length: 0\r\n\r\n"
    s["tunnel_signalling"] = struct.pack("!BBH", 0, 3, len(sip)) + sip
    s["tunnel_reserved_kind"] = bytes.fromhex("00090000")
    s["empty"] = b""
    s["garbage"] = bytes.fromhex("ff00ff00deadbeef")
    return s


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, data in seeds().items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
    print(f"wrote {len(seeds())} seeds to {OUT}")


if __name__ == "__main__":
    main()
