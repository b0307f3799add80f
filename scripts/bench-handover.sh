#!/usr/bin/env bash
# Handover figures (issue 6): a 1 ms UDP echo probe (mh -> ch -> mh) and a bulk TCP flow
# through UPMT while wlan0 is handed over (make-before-break), cut, or blackholed.
#   sudo scripts/bench-handover.sh [REPEATS]      (default 3; results as JSON lines)
# The benchmark harness (perf, `upmt-bench handover`) supersedes this when it lands.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "needs root" >&2; exit 1; }
reps=${1:-3}
prefix="uphb$$-"
tb() { scripts/testbed.sh -q --prefix "$prefix" "$@"; }
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    tb down >/dev/null 2>&1 || true
}
trap cleanup EXIT INT TERM
cargo build --release --locked -q -p upmt -p perf
export UPMT_BIN=$PWD/target/release/upmt
probe=$PWD/target/release/upmt-udpprobe
tb up
tb exec ch -- "$probe" echo --bind 198.18.3.1:9000 >/dev/null 2>&1 &
pids+=($!)
tb exec ch -- iperf3 -s -B 198.18.3.1 >/dev/null 2>&1 &
pids+=($!)
tb upmt start

timeouts() { tb exec mh -- nstat -az TcpTimeouts | awk '/TcpTimeouts/ {print $2}'; }

scenario() { # NAME ACTION-AT-3S UNDO
    local name=$1 act=$2 undo=$3 i out rto0 rto1
    for ((i = 1; i <= reps; i++)); do
        tb exec mh upmt handover --all --to wlan0 >/dev/null
        sleep 1
        rto0=$(timeouts)
        tb exec mh -- iperf3 -c 198.18.3.1 -t 9 -b 200M >/dev/null 2>&1 &
        local ip=$!
        tb exec mh -- "$probe" send --to 198.18.3.1:9000 --interval-us 1000 --duration-ms 8000 >"/tmp/$prefix.out" &
        local pp=$!
        sleep 3
        eval "$act"
        sleep 3
        wait "$pp"
        wait "$ip" || true
        rto1=$(timeouts)
        eval "$undo"
        out=$(cat "/tmp/$prefix.out")
        echo "{\"scenario\":\"$name\",\"run\":$i,\"tcp_rto\":$((rto1 - rto0)),\"probe\":$out}"
        # let the path come back up
        for _ in $(seq 100); do
            [ "$(tb exec mh upmt status --json | grep -o '"state":"up"' | wc -l)" -ge 2 ] && break
            sleep 0.1
        done
    done
}

scenario make-before-break "tb exec mh upmt handover --all --to umts0 >/dev/null" "true"
scenario interface-down "tb link wlan0 down" "tb link wlan0 up"
scenario blackhole "tb link wlan0 blackhole on" "tb link wlan0 blackhole off"
rm -f "/tmp/$prefix.out"
