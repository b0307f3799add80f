#!/usr/bin/env bash
# UPMT demo in the reference testbed (network namespaces; needs root).
#
#   mh --wlan0-- nat0 --.                     .-- an (anchor, 198.18.2.1, NAT 198.18.2.100)
#     \                  >-- inet (core) ---<
#      `-umts0-- nat1 --'                     '-- ch (correspondent, 198.18.3.1)
#
# Builds UPMT, brings the topology up, starts the anchor and the mobile host, shows a ping,
# a web download and an iperf3 flow crossing UPMT (ch sees only 198.18.2.100), moves the
# flow between wlan0 and umts0, cuts wlan0 in the middle of a transfer, blackholes it, and
# prints what happened. Removes everything it made when it ends, pass or fail.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "demo.sh needs root (network namespaces): sudo scripts/demo.sh" >&2
    exit 1
fi
scripts/install-deps.sh

prefix="updemo$$-"
work=$(mktemp -d /tmp/upmt-demo.XXXXXX)
tb() { scripts/testbed.sh --prefix "$prefix" "$@"; }
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    tb down >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
tunnels() {
    tb exec mh upmt status --json | python3 -c '
import json, sys
s = json.load(sys.stdin)
print("  VIPA %s, %s" % (s["vipa"], s["association"]))
for t in s["tunnels"]:
    rtt = "%.2f ms" % t["rtt_ms"] if t["rtt_ms"] is not None else "-"
    print("  tunnel %-2s %-6s %-5s mapped %-22s rtt %-9s tx %10d B  rx %10d B" % (
        t["id"], t["iface"], t["state"], t["mapped"], rtt, t["tx_bytes"], t["rx_bytes"]))
for f in s["flows"]:
    if f["proto"] in ("tcp", "udp", "icmp"):
        print("  flow %-4s %-21s -> %-21s on %-6s tx %10d B  rx %10d B" % (
            f["proto"], f["src"], f["dst"], f["iface"], f["tx_bytes"], f["rx_bytes"]))
'
}

say "building (release)"
cargo build --release --locked -q -p upmt -p perf
export UPMT_BIN=$PWD/target/release/upmt

say "testbed up (prefix $prefix)"
tb up
tb exec ch -- python3 -m http.server 8080 --bind 198.18.3.1 --directory "$work" \
    >"$work/http.log" 2>&1 &
pids+=($!)
tb exec ch -- iperf3 -s -B 198.18.3.1 >"$work/iperf-server.log" 2>&1 &
pids+=($!)
head -c 30000000 /dev/urandom >"$work/blob"

say "starting the anchor (in an) and the mobile host (in mh)"
tb upmt start
# curl's --limit-rate paces its reads, not the wire: a small receive window keeps the
# transfers below running when the links change under them.
tb exec mh -- sysctl -qw net.ipv4.tcp_rmem="4096 131072 1048576"
tunnels

say "ping mh -> ch through UPMT"
tb exec mh -- ping -c 3 -i 0.2 198.18.3.1 | tail -2

say "web download (30 MB) through UPMT"
tb exec mh -- curl -sS -o "$work/dl" -w '  %{size_download} bytes at %{speed_download} B/s\n' \
    http://198.18.3.1:8080/blob
cmp -s "$work/blob" "$work/dl" && echo "  byte-exact"
echo "  the correspondent saw: $(grep -o '^[0-9.]*' "$work/http.log" | sort -u | tr '\n' ' ')"

say "iperf3, 8 s; handover to umts0 at 2 s, back to wlan0 at 5 s (make-before-break)"
tb exec mh -- iperf3 -c 198.18.3.1 -t 8 -i 1 >"$work/iperf1.log" 2>&1 &
ip1=$!
sleep 2
tb exec mh upmt handover --all --to umts0
sleep 3
tb exec mh upmt handover --all --to wlan0
wait "$ip1"
sed -n '/Interval/,/iperf Done/p' "$work/iperf1.log" | grep -v '^- -'

say "download at 5 MB/s; wlan0 goes down after 1.5 s (break-before-make)"
tb exec mh -- curl -sS --limit-rate 5M -o "$work/dl2" http://198.18.3.1:8080/blob &
c2=$!
sleep 1.5
tb link wlan0 down
tunnels
wait "$c2"
cmp -s "$work/blob" "$work/dl2" && echo "  transfer complete, byte-exact"
tb link wlan0 up
for _ in $(seq 100); do
    tb exec mh upmt status --json | grep -q '"iface":"wlan0","jitter_ms":[^,]*,"local":[^,]*,"loss_pct":[^,]*,"mapped":[^,]*,"rtt_ms":[^,]*,"rx_bytes":[0-9]*,"state":"up"' && break
    sleep 0.1
done

say "download at 5 MB/s; wlan0 blackholed after 1.5 s (up, but packets vanish)"
tb exec mh -- curl -sS --limit-rate 5M -o "$work/dl3" http://198.18.3.1:8080/blob &
c3=$!
sleep 1.5
tb link wlan0 blackhole on
wait "$c3"
cmp -s "$work/blob" "$work/dl3" && echo "  transfer complete, byte-exact"
tunnels
tb link wlan0 clear

say "the anchor's view"
tb exec an upmt status --json | python3 -c '
import json, sys
s = json.load(sys.stdin)
for h in s["hosts"]:
    print("  host %s VIPA %s, %d tunnels: %s" % (h["id"], h["vipa"], len(h["tunnels"]),
          ", ".join("%s@%s" % (t["id"], t["addr"]) for t in h["tunnels"])))
print("  NAT (%s): %d mappings on %s" % (s["nat"]["mode"], s["nat"]["mappings"], ", ".join(s["nat"]["public"])))
print("  drops: %s" % {k: v for k, v in s["drops"].items() if v})
'

tb upmt stop
say "done: cleaning up"
