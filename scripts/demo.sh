#!/usr/bin/env bash
# UPMT demo in the reference testbed (network namespaces; needs root).
#
#   mh --wlan0-- nat0 --.                     .-- an (anchor, 198.18.2.1)
#                        >-- inet (core) ---<
#   mh --umts0-- nat1 --'                     '-- ch (correspondent, 198.18.3.1)
#
# Today (foundation): brings the topology up, shows ping, a web download and an iperf3 flow
# from the mobile host to the correspondent over each access network, impairs wlan0 with the
# link emulator (delay, blackhole), then removes everything it made.
# The anchor and mobile daemons replace the direct paths when they land (issue 6).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "demo.sh needs root (network namespaces): sudo scripts/demo.sh" >&2
    exit 1
fi
scripts/install-deps.sh

prefix="updemo$$-"
tb() { scripts/testbed.sh --prefix "$prefix" "$@"; }
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    tb down >/dev/null 2>&1 || true
}
trap cleanup EXIT INT TERM

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "building"
cargo build --release --locked -q -p perf

say "testbed up (prefix $prefix)"
tb up
tb status

say "ping mh -> ch over wlan0 and over umts0"
tb exec mh -- ping -c 3 -i 0.2 -I wlan0 198.18.3.1
tb exec mh -- ping -c 3 -i 0.2 -I umts0 198.18.3.1

say "web download from ch"
mkdir -p "/tmp/$prefix-www"
head -c 4000000 /dev/urandom > "/tmp/$prefix-www/blob"
tb exec ch -- python3 -m http.server 8080 --bind 198.18.3.1 --directory "/tmp/$prefix-www" >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 50); do tb exec ch -- ss -ltn | grep -q ':8080' && break; sleep 0.1; done
tb exec mh -- curl -s -o /dev/null -w 'downloaded %{size_download} bytes at %{speed_download} B/s\n' http://198.18.3.1:8080/blob

say "iperf3 mh -> ch (3 s)"
tb exec ch -- iperf3 -s -1 -B 198.18.3.1 >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 50); do tb exec ch -- ss -ltn | grep -q ':5201' && break; sleep 0.1; done
tb exec mh -- iperf3 -c 198.18.3.1 -t 3 | tail -4

say "wlan0: 40 ms delay from the link emulator"
tb link wlan0 delay 40
tb exec mh -- ping -c 5 -i 0.2 -I wlan0 198.18.3.1 | tail -1

say "wlan0: blackhole (interface up, packets vanish)"
tb link wlan0 blackhole on
tb exec mh -- ping -c 3 -i 0.2 -W 1 -I wlan0 198.18.3.1 | tail -2 || true
tb exec mh -- ping -c 3 -i 0.2 -I umts0 198.18.3.1 | tail -1

say "wlan0: clear"
tb link wlan0 clear
tb exec mh -- ping -c 3 -i 0.2 -I wlan0 198.18.3.1 | tail -1

rm -rf "/tmp/$prefix-www"
say "done: cleaning up"
