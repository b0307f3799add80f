# shellcheck shell=bash
# `testbed.sh upmt start|stop|logs`: the UPMT daemons in the testbed (sourced by testbed.sh).
#
#   start   the anchor in PREFIXan and the mobile host in PREFIXmh, with the example
#           (UPMT_ANCHOR_CONFIG, UPMT_MOBILE_CONFIG override the configuration files)
#           configurations in examples/ (anchor.toml, mobile.toml, credentials.toml,
#           policy.toml); returns once the host is associated with a tunnel up on wlan0 and
#           on umts0. Logs: $STATE/upmt/{anchor,mobile}.log.
#   stop    ends both (SIGTERM: the host de-registers; the TUNs and their routes go) and
#           leaves the topology up.
#   logs    prints both logs.
#
# The binary is $UPMT_BIN if set, else target/release/upmt, else target/debug/upmt (build
# one with `cargo build --release -p upmt`). Each daemon's control socket defaults to
# /run/upmt/NAMESPACE/{anchor,mobile}.sock, so `testbed.sh exec mh upmt status` finds it.

upmt_bin() {
    local b
    for b in "${UPMT_BIN:-}" "$ROOT/target/release/upmt" "$ROOT/target/debug/upmt"; do
        [ -n "$b" ] && [ -x "$b" ] && { echo "$b"; return 0; }
    done
    die "no upmt binary: cargo build --release -p upmt (or set UPMT_BIN)"
}

# is_upmt PID: PID is one of our daemons (guards against a recycled PID).
is_upmt() { [ "$(cat "/proc/$1/comm" 2>/dev/null || true)" = "upmt" ]; }

# running ROLE: that daemon of this testbed is alive.
running() { [ -e "$STATE/upmt-$1.pid" ] && is_upmt "$(cat "$STATE/upmt-$1.pid")"; }

upmt_sock() { echo "/run/upmt/$PREFIX$1/$2.sock"; }

# upmt_wait_tunnels BIN: both tunnels of the mobile host are up.
upmt_tunnels_up() {
    local json
    json=$(nx mh "$1" status --json 2>/dev/null) || return 1
    python3 - "$json" <<'PY'
import json, sys
s = json.loads(sys.argv[1])
up = {t["iface"] for t in s.get("tunnels", []) if t.get("state") == "up"}
sys.exit(0 if s.get("vipa") and {"wlan0", "umts0"} <= up else 1)
PY
}

upmt_start() {
    local bin dir
    bin=$(upmt_bin)
    dir=$STATE/upmt
    mkdir -p "$dir"
    if running anchor && running mobile; then
        say "upmt already running (prefix $PREFIX)"
        return 0
    fi
    if ! running anchor; then
        ip netns exec "${PREFIX}an" env RUST_LOG="${RUST_LOG:-info}" "$bin" anchor \
            --config "${UPMT_ANCHOR_CONFIG:-$ROOT/examples/anchor.toml}" >"$dir/anchor.log" 2>&1 9>&- &
        echo $! >"$STATE/upmt-anchor.pid"
        poll 250 0.02 test -S "$(upmt_sock an anchor)" || {
            cat "$dir/anchor.log" >&2
            die "the anchor did not start"
        }
    fi
    if ! running mobile; then
        ip netns exec "${PREFIX}mh" env RUST_LOG="${RUST_LOG:-info}" "$bin" mobile \
            --config "${UPMT_MOBILE_CONFIG:-$ROOT/examples/mobile.toml}" >"$dir/mobile.log" 2>&1 9>&- &
        echo $! >"$STATE/upmt-mobile.pid"
    fi
    poll 500 0.03 upmt_tunnels_up "$bin" || {
        echo "--- anchor log" >&2
        cat "$dir/anchor.log" >&2
        echo "--- mobile log" >&2
        cat "$dir/mobile.log" >&2
        die "the mobile host did not associate with tunnels up on wlan0 and umts0"
    }
    say "upmt running: anchor in ${PREFIX}an, mobile host in ${PREFIX}mh (tunnels up on wlan0, umts0)"
}

upmt_stop() {
    local role f pid
    for role in mobile anchor; do
        f=$STATE/upmt-$role.pid
        [ -e "$f" ] || continue
        pid=$(cat "$f" 2>/dev/null || true)
        [ -n "$pid" ] && is_upmt "$pid" && stop_pid "$pid"
        rm -f "$f"
    done
    say "upmt stopped (prefix $PREFIX)"
}

cmd_upmt() {
    need_root
    is_up || die "testbed $PREFIX is not up"
    case "${1:-}" in
    start) lock; upmt_start ;;
    stop) lock; upmt_stop ;;
    logs) cat "$STATE/upmt/anchor.log" "$STATE/upmt/mobile.log" 2>/dev/null || true ;;
    *) die "upmt start|stop|logs" ;;
    esac
}
