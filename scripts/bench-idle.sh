#!/usr/bin/env bash
# Idle cost of the daemons (issue 6 figure): reference testbed, `upmt start`, 5 s settle,
# then CPU (utime+stime from /proc/PID/stat) over 60 s, VmRSS and threads of each daemon,
# and the mobile host's data-plane counters.
#   sudo scripts/bench-idle.sh [SECONDS]      (default 60)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "needs root" >&2; exit 1; }
secs=${1:-60}
p="upid$$-"
tb() { scripts/testbed.sh -q --prefix "$p" "$@"; }
trap 'tb down >/dev/null 2>&1 || true' EXIT INT TERM
cargo build --release --locked -q -p upmt
export UPMT_BIN=$PWD/target/release/upmt
tb up >/dev/null
tb upmt start >/dev/null
sleep 5
# The daemon of ROLE running in namespace NS (by PID, never by name alone).
daemon_pid() {
    for q in $(pgrep -f "upmt $1 --config" || true); do
        if [ "$(ip netns identify "$q")" = "$2" ]; then echo "$q"; return; fi
    done
}
m=$(daemon_pid mobile "${p}mh"); a=$(daemon_pid anchor "${p}an")
[ -n "$m" ] && [ -n "$a" ] || { echo "daemons not found" >&2; exit 1; }
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
m0=$(ticks "$m"); a0=$(ticks "$a")
sleep "$secs"
m1=$(ticks "$m"); a1=$(ticks "$a")
hz=$(getconf CLK_TCK)
for r in "mobile $m $m0 $m1" "anchor $a $a0 $a1"; do
    set -- $r
    printf '%s: CPU %s ticks in %ss (%s %%), %s, %s\n' "$1" "$(($4 - $3))" "$secs" \
        "$(awk -v t=$(($4 - $3)) -v hz="$hz" -v s="$secs" 'BEGIN{printf "%.3f", t*100/hz/s}')" \
        "$(grep VmRSS "/proc/$2/status" | tr -s ' \t' ' ')" "$(grep Threads "/proc/$2/status" | tr -s ' \t' ' ')"
done
tb exec mh -- upmt status --json | python3 -c 'import json,sys; print("mobile dataplane:", json.load(sys.stdin).get("dataplane"))'
