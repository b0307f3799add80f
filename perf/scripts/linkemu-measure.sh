#!/usr/bin/env bash
# Measures the link emulator in the reference testbed (root; a few minutes):
#   - delay accuracy: median ping RTT through mh:wlan0 with `link wlan0 delay D`, minus the
#     unimpaired median, for several D; the emulator's own release lateness
#   - loss accuracy over many pings
#   - throughput (iperf3, TCP mh -> ch and ch -> mh, UDP 100 Mbit/s): plain veth (emulator
#     out of the path), emulator spliced in (delay only), tbf `rate 100`, rate 100 + delay
#
#   sudo perf/scripts/linkemu-measure.sh            # uses target/release/upmt-linkemu
#
# Results go to stdout; docs/benchmarks/perf.md keeps the figures of record.
set -eu
set -o pipefail
cd "$(dirname "$0")/../.."

[ "$(id -u)" -eq 0 ] || { echo "needs root: sudo $0" >&2; exit 1; }
for t in ip nft ping iperf3 ss; do
    command -v "$t" >/dev/null || { echo "missing $t (scripts/install-deps.sh)" >&2; exit 1; }
done
cargo build --release -q -p perf --bin upmt-linkemu
export UPMT_LINKEMU=$PWD/target/release/upmt-linkemu

prefix="lm$$-"
tb() { scripts/testbed.sh -q --prefix "$prefix" "$@"; }
cleanup() { tb down >/dev/null 2>&1 || true; }
trap cleanup EXIT INT TERM
status_file="/run/upmt-testbed/$prefix/linkemu-wlan0.status"

# rtt COUNT: "median min max" of ping RTTs (ms) from mh to ch over wlan0, after a warm-up.
rtt() {
    tb exec mh ping -n -q -c 5 -i 0.02 -I wlan0 198.18.3.1 >/dev/null
    tb exec mh ping -n -c "$1" -i 0.02 -I wlan0 198.18.3.1 | sed -n 's/.*time=\([0-9.]*\).*/\1/p' |
        sort -n | awk '{ a[NR] = $1 } END { printf "%.3f %.3f %.3f", a[int((NR + 1) / 2)], a[1], a[NR] }'
}

iperf() {
    tb exec ch iperf3 -s -1 -B 198.18.3.1 >/dev/null 2>&1 &
    local srv=$! i
    for ((i = 0; i < 50; i++)); do
        tb exec ch ss -ltn | grep -q ':5201 ' && break
        sleep 0.1
    done
    tb exec mh iperf3 -c 198.18.3.1 -B 192.168.100.25 -t 5 "$@" | grep receiver | sed 's/^\[ *[0-9]*\] *//'
    wait "$srv" || true
}

emu_counters() {
    grep -E '^(up|down)\.(lost|queue_full|tx_errors|late_mean_us|late_max_us) ' "$status_file" |
        paste -sd' ' || true
}

echo "== $(date -u +%FT%TZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
tb up
read -r base _ _ <<<"$(rtt 100)"
echo "unimpaired RTT median: $base ms"
echo
echo "delay_ms  median_rtt  added  error  min  max"
for d in 1 5 10 20 40 100; do
    tb link wlan0 delay "$d"
    read -r med min max <<<"$(rtt 100)"
    awk -v d="$d" -v m="$med" -v b="$base" -v lo="$min" -v hi="$max" \
        'BEGIN { printf "%8s  %10.3f  %5.3f  %+.3f  %.3f  %.3f\n", d, m, m - b, m - b - d, lo, hi }'
done
echo "emulator: $(emu_counters)"
tb link wlan0 clear

echo
tb link wlan0 delay 20 jitter 5
echo "delay 20 jitter 5 uniform: median min max = $(rtt 300)"
tb link wlan0 delay 20 jitter 5 dist normal
echo "delay 20 jitter 5 normal:  median min max = $(rtt 300)"
tb link wlan0 clear

tb link wlan0 loss 20
out=$(tb exec mh ping -n -q -c 2000 -i 0.005 -W 1 -I wlan0 198.18.3.1 | grep transmitted)
echo "loss 20 over 2000 pings: $out"
tb link wlan0 clear

echo
echo "== throughput (iperf3, 5 s)"
echo "plain veth, TCP up:          $(iperf)"
echo "plain veth, TCP down:        $(iperf -R)"
tb link wlan0 delay 5
echo "emulator delay 5, TCP up:    $(iperf)"
echo "emulator delay 5, TCP down:  $(iperf -R)"
echo "  emulator: $(emu_counters)"
tb link wlan0 clear
tb link wlan0 rate 100
echo "tbf rate 100, TCP up:        $(iperf)"
tb link wlan0 delay 20
echo "rate 100 + delay 20, TCP up:   $(iperf)"
echo "rate 100 + delay 20, TCP down: $(iperf -R)"
echo "  emulator: $(emu_counters)"
tb link wlan0 clear
tb link wlan0 delay 10
echo "emulator delay 10, UDP 100M: $(iperf -u -b 100M -l 1400)"
echo "  emulator: $(emu_counters)"
tb link wlan0 clear
echo "== load after: $(cut -d' ' -f1-3 /proc/loadavg)"
