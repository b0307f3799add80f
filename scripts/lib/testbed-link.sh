# shellcheck shell=bash
# shellcheck disable=SC2154  # the L_* settings are assigned with printf -v (load_link)
# `link` verbs of scripts/testbed.sh: impairments on the mobile host's access links.
#
# Per link IFACE (wlan0 -> nat0, umts0 -> nat1) the settings live in
# $STATE/link-IFACE.state; from them:
#   delay, jitter, loss  -> upmt-linkemu spliced into the NAT's end of the link (only while
#                           one of them is non-zero; otherwise the link is a plain veth)
#   rate                 -> tbf on mh:IFACE (uplink) and/or nat:lan (downlink)
#   blackhole            -> nftables table `inet upmt_blackhole` in the NAT dropping everything
#                           that enters or leaves lan* (the interfaces stay up)
# Directions: "up" is mh -> network (like netem on the MH's interface), "down" the reverse.

LINK_KEYS="delay_up jitter_up loss_up delay_down jitter_down loss_down dist rate_up rate_down blackhole seed generation"

link_state_file() { echo "$STATE/link-$1.state"; }

# reset_link: every L_<key> to its default (nothing impaired).
reset_link() {
    local k
    for k in $LINK_KEYS; do printf -v "L_$k" '%s' 0; done
    L_dist=uniform
    L_blackhole=off
    L_seed=1
}

# load_link IFACE: sets L_<key> for every key from the link's state file.
load_link() {
    local k v f
    reset_link
    f=$(link_state_file "$1")
    [ -e "$f" ] || return 0
    while IFS='=' read -r k v; do
        case " $LINK_KEYS " in *" $k "*) printf -v "L_$k" '%s' "$v" ;; esac
    done <"$f"
}

save_link() {
    local k v f
    f=$(link_state_file "$1")
    for k in $LINK_KEYS; do
        v="L_$k"
        echo "$k=${!v}"
    done >"$f.tmp"
    mv "$f.tmp" "$f"
}

is_num() { [[ "$1" =~ ^[0-9]+(\.[0-9]+)?$ ]]; }

# unit VALUE SUFFIX: VALUE without an optional unit suffix ("40ms" -> "40").
unit() { echo "${1%"$2"}"; }
nonzero() { awk -v x="$1" 'BEGIN { exit !(x + 0 > 0) }'; }

# set_dir KEY VALUE DIR: L_KEY_up and/or L_KEY_down.
set_dir() {
    case "$3" in
    up) printf -v "L_$1_up" '%s' "$2" ;;
    down) printf -v "L_$1_down" '%s' "$2" ;;
    both) printf -v "L_$1_up" '%s' "$2"; printf -v "L_$1_down" '%s' "$2" ;;
    *) die "dir must be up, down or both (got '$3')" ;;
    esac
}

needs_emu() {
    local k v
    for k in delay_up jitter_up loss_up delay_down jitter_down loss_down; do
        v="L_$k"
        nonzero "${!v}" && return 0
    done
    return 1
}

cmd_link() {
    [ $# -ge 2 ] || die "link IFACE up|down|delay|loss|rate|blackhole|clear ..."
    local ifc=$1 what=$2
    shift 2
    case "$ifc" in wlan0 | umts0) ;; *) die "link: IFACE is wlan0 or umts0" ;; esac
    need_root
    lock
    is_up || die "testbed $PREFIX is not up"
    load_link "$ifc"
    local dir
    case "$what" in
    up)
        n mh link set dev "$ifc" up
        wait_oper mh "$ifc" up
        mh_routes "$ifc"
        say "mh:$ifc up"
        return 0
        ;;
    down)
        n mh link set dev "$ifc" down
        wait_oper mh "$ifc" down
        say "mh:$ifc down"
        return 0
        ;;
    delay)
        [ $# -ge 1 ] && set -- "$(unit "$1" ms)" "${@:2}"
        [ $# -ge 1 ] && is_num "$1" || die "link $ifc delay MS [jitter MS] [dist uniform|normal] [dir up|down|both]"
        local delay=$1 jitter=0
        dir=up
        shift
        while [ $# -gt 0 ]; do
            case "$1" in
            jitter) [ $# -ge 2 ] && is_num "$(unit "$2" ms)" || die "jitter MS"; jitter=$(unit "$2" ms); shift 2 ;;
            dist) [ $# -ge 2 ] || die "dist uniform|normal"
                case "$2" in uniform | normal) L_dist=$2 ;; *) die "dist uniform|normal" ;; esac
                shift 2 ;;
            dir) [ $# -ge 2 ] || die "dir up|down|both"; dir=$2; shift 2 ;;
            *) die "link delay: unexpected '$1'" ;;
            esac
        done
        set_dir delay "$delay" "$dir"
        set_dir jitter "$jitter" "$dir"
        ;;
    loss)
        [ $# -ge 1 ] && set -- "$(unit "$1" %)" "${@:2}"
        [ $# -ge 1 ] && is_num "$1" || die "link $ifc loss PCT [dir up|down|both]"
        awk -v x="$1" 'BEGIN { exit !(x <= 100) }' || die "loss is a percentage (0-100)"
        local loss=$1
        dir=up
        shift
        if [ $# -gt 0 ]; then
            [ "$1" = dir ] && [ $# -eq 2 ] || die "link loss: unexpected '$*'"
            dir=$2
        fi
        set_dir loss "$loss" "$dir"
        ;;
    rate)
        [ $# -ge 1 ] || die "link $ifc rate MBIT|off [dir up|down|both]"
        local rate
        rate=$(unit "$(unit "$1" mbit)" Mbit)
        [ "$rate" = off ] && rate=0
        is_num "$rate" || die "rate is in Mbit/s (or off)"
        dir=both
        shift
        if [ $# -gt 0 ]; then
            [ "$1" = dir ] && [ $# -eq 2 ] || die "link rate: unexpected '$*'"
            dir=$2
        fi
        set_dir rate "$rate" "$dir"
        ;;
    blackhole)
        case "${1:-}" in on | off) L_blackhole=$1 ;; *) die "link $ifc blackhole on|off" ;; esac
        ;;
    seed)
        [[ "${1:-}" =~ ^[0-9]+$ ]] || die "link $ifc seed N"
        L_seed=$1
        ;;
    clear)
        local g=$L_generation
        reset_link
        L_generation=$g
        ;;
    *) die "link: unknown action '$what'" ;;
    esac
    apply_link "$ifc"
    save_link "$ifc"
    say "$(link_summary "$ifc")"
}

apply_link() {
    local ifc=$1 nat
    nat=$(link_param "$ifc" nat)

    # Rate: token bucket on the egress of each direction.
    apply_tbf mh "$ifc" "$L_rate_up"
    apply_tbf "$nat" lan "$L_rate_down"

    # Blackhole: replace or remove the drop table atomically.
    if [ "$L_blackhole" = on ]; then
        nft_load "$nat" <<'EOF'
table inet upmt_blackhole
delete table inet upmt_blackhole
table inet upmt_blackhole {
    chain pre {
        type filter hook prerouting priority -300; policy accept;
        iifname "lan*" counter drop
    }
    chain post {
        type filter hook postrouting priority 300; policy accept;
        oifname "lan*" counter drop
    }
}
EOF
    else
        nft_load "$nat" <<'EOF'
table inet upmt_blackhole
delete table inet upmt_blackhole
EOF
    fi

    if needs_emu; then
        splice "$ifc"
        configure_emu "$ifc"
    else
        unsplice "$ifc"
    fi
}

apply_tbf() {
    local node=$1 dev=$2 rate=$3 burst
    if nonzero "$rate"; then
        # Burst: 2 ms worth of bytes, at least 16 kB (tbf segments larger GSO frames).
        burst=$(awk -v r="$rate" 'BEGIN { b = r * 1e6 / 8 * 0.002; if (b < 16000) b = 16000; printf "%d", b }')
        n "$node" link set dev "$dev" txqueuelen 1000
        tc -n "$PREFIX$node" qdisc replace dev "$dev" root tbf rate "${rate}mbit" burst "$burst" latency 50ms
    else
        tc -n "$PREFIX$node" qdisc del dev "$dev" root 2>/dev/null || true
    fi
}

# --- the emulator splice --------------------------------------------------------------------

emu_bin() {
    if [ -n "${UPMT_LINKEMU:-}" ]; then
        [ -x "$UPMT_LINKEMU" ] || die "UPMT_LINKEMU=$UPMT_LINKEMU is not executable"
        echo "$UPMT_LINKEMU"
        return
    fi
    local target=${CARGO_TARGET_DIR:-$ROOT/target} c best=""
    for c in "$target/release/upmt-linkemu" "$target/debug/upmt-linkemu"; do
        [ -x "$c" ] || continue
        if [ -z "$best" ] || [ "$c" -nt "$best" ]; then best=$c; fi
    done
    if [ -z "$best" ] && command -v cargo >/dev/null 2>&1; then
        echo "testbed: building upmt-linkemu (cargo build --release -p perf)" >&2
        (cd "$ROOT" && cargo build --release -q -p perf --bin upmt-linkemu >&2) &&
            best="$target/release/upmt-linkemu"
    fi
    [ -n "$best" ] || die "upmt-linkemu not found: run 'cargo build --release -p perf' or set UPMT_LINKEMU"
    echo "$best"
}

random_mac() {
    printf '02:%02x:%02x:%02x:%02x:%02x\n' $((RANDOM % 256)) $((RANDOM % 256)) $((RANDOM % 256)) \
        $((RANDOM % 256)) $((RANDOM % 256))
}

emu_pid() {
    local f="$STATE/linkemu-$1.pid" pid
    [ -e "$f" ] || return 1
    pid=$(cat "$f" 2>/dev/null || true)
    [ -n "$pid" ] && alive "$pid" && is_ours "$pid" || return 1
    echo "$pid"
}

write_emu_conf() {
    local ifc=$1 f="$STATE/linkemu-$1.conf"
    cat >"$f.tmp" <<EOF
# upmt-linkemu configuration for mh:$ifc (written by scripts/testbed.sh)
# port a = nat:lan (towards mh), port b = nat:lan-emu (towards the NAT's stack)
# "up" = a -> b (mh -> network), "down" = b -> a
generation = $L_generation
seed = $L_seed
jitter_dist = $L_dist
up.delay_ms = $L_delay_up
up.jitter_ms = $L_jitter_up
up.loss_pct = $L_loss_up
down.delay_ms = $L_delay_down
down.jitter_ms = $L_jitter_down
down.loss_pct = $L_loss_down
EOF
    mv "$f.tmp" "$f"
}

status_changed() {
    [ "$(sed -n 's/^uptime_s = //p' "$STATE/linkemu-$1.status" 2>/dev/null || true)" != "$2" ]
}

# generation_is IFACE GEN: the emulator's status file shows generation GEN applied.
generation_is() {
    [ "$(sed -n 's/^generation = //p' "$STATE/linkemu-$1.status" 2>/dev/null || true)" = "$2" ]
}

# splice IFACE: put upmt-linkemu between mh:IFACE and the NAT's stack (no-op if it is).
splice() {
    local ifc=$1 nat gw mac emu pid i
    emu_pid "$ifc" >/dev/null && return 0
    nat=$(link_param "$ifc" nat)
    gw=$(link_param "$ifc" gw)
    emu=$(emu_bin)
    if [ ! -e "$STATE/link-$ifc.mac" ]; then
        nx "$nat" cat /sys/class/net/lan/address >"$STATE/link-$ifc.mac"
    fi
    mac=$(cat "$STATE/link-$ifc.mac")

    # The inner pair: lan-emu (emulator's port b, raw) <-> lan-in (the NAT's new LAN side).
    n "$nat" link del dev lan-in 2>/dev/null || true
    n "$nat" link add name lan-in type veth peer name lan-emu
    n "$nat" link set dev lan-in address "$mac"
    n "$nat" link set dev lan-emu arp off
    nsysctl "$nat" net/ipv6/conf/lan-emu/disable_ipv6 1

    L_generation=$((L_generation + 1))
    write_emu_conf "$ifc"
    rm -f "$STATE/linkemu-$ifc.pid" "$STATE/linkemu-$ifc.status"
    nx "$nat" setsid "$emu" --port-a lan --port-b lan-emu \
        --config "$STATE/linkemu-$ifc.conf" --status "$STATE/linkemu-$ifc.status" \
        --pid-file "$STATE/linkemu-$ifc.pid" \
        </dev/null >>"$STATE/linkemu-$ifc.log" 2>&1 9>&- &
    pid=$!
    for ((i = 0; i < 250; i++)); do
        [ -s "$STATE/linkemu-$ifc.pid" ] && break
        alive "$pid" || break
        sleep 0.02
    done
    if ! emu_pid "$ifc" >/dev/null; then
        tail -5 "$STATE/linkemu-$ifc.log" >&2 || true
        n "$nat" link del dev lan-in 2>/dev/null || true
        die "upmt-linkemu did not start (log: $STATE/linkemu-$ifc.log)"
    fi

    # Switch over: lan becomes a raw port (fresh MAC, no address, no ARP, no IPv6), the NAT's
    # address and MAC move to lan-in. mh's neighbour entry for the gateway stays valid.
    n "$nat" addr del "$gw/24" dev lan
    n "$nat" link set dev lan address "$(random_mac)" arp off
    nsysctl "$nat" net/ipv6/conf/lan/disable_ipv6 1
    n "$nat" addr add "$gw/24" dev lan-in
    n "$nat" link set dev lan-emu up
    n "$nat" link set dev lan-in up
    wait_oper "$nat" lan-in up
}

# configure_emu IFACE: hand the current settings to the running emulator, wait until applied.
configure_emu() {
    local ifc=$1 pid
    pid=$(emu_pid "$ifc") || die "upmt-linkemu for $ifc is not running"
    L_generation=$((L_generation + 1))
    write_emu_conf "$ifc"
    kill -HUP "$pid"
    poll 250 0.02 generation_is "$ifc" "$L_generation" ||
        die "upmt-linkemu for $ifc did not apply generation $L_generation (log: $STATE/linkemu-$ifc.log)"
}

# unsplice IFACE: stop the emulator and give the plain veth its address back (no-op if plain).
unsplice() {
    local ifc=$1 nat gw pid
    nat=$(link_param "$ifc" nat)
    gw=$(link_param "$ifc" gw)
    if pid=$(emu_pid "$ifc"); then
        stop_pid "$pid"
    fi
    rm -f "$STATE/linkemu-$ifc.pid"
    [ -e "$STATE/link-$ifc.mac" ] || return 0
    n "$nat" link del dev lan-in 2>/dev/null || true
    n "$nat" link set dev lan address "$(cat "$STATE/link-$ifc.mac")" arp on
    nsysctl "$nat" net/ipv6/conf/lan/disable_ipv6 0
    n "$nat" addr replace "$gw/24" dev lan
    rm -f "$STATE/link-$ifc.mac"
}

link_summary() {
    local ifc=$1 s
    s="link $ifc:"
    s+=" up: delay ${L_delay_up} ms jitter ${L_jitter_up} ms loss ${L_loss_up} %;"
    s+=" down: delay ${L_delay_down} ms jitter ${L_jitter_down} ms loss ${L_loss_down} %;"
    s+=" jitter $L_dist; rate up ${L_rate_up} down ${L_rate_down} Mbit/s (0 = unlimited);"
    s+=" blackhole $L_blackhole"
    if needs_emu; then s+="; emulator in the path"; else s+="; plain veth"; fi
    echo "$s"
}

link_status() {
    local ifc=$1 nat pid
    nat=$(link_param "$ifc" nat)
    load_link "$ifc"
    echo "== link mh:$ifc <-> $nat:lan: mh:$ifc $(nx mh cat "/sys/class/net/$ifc/operstate")"
    echo "   $(link_summary "$ifc")"
    if pid=$(emu_pid "$ifc"); then
        # Fresh counters: SIGUSR1 makes the emulator rewrite its status file.
        local before
        before=$(sed -n 's/^uptime_s = //p' "$STATE/linkemu-$ifc.status" 2>/dev/null || true)
        kill -USR1 "$pid" 2>/dev/null || true
        poll 50 0.02 status_changed "$ifc" "$before" || true
        echo "   upmt-linkemu pid $pid:"
        sed 's/^/     /' "$STATE/linkemu-$ifc.status" 2>/dev/null || true
    fi
    if [ "$L_blackhole" = on ]; then
        echo "   blackhole drops: $(nx "$nat" nft list table inet upmt_blackhole 2>/dev/null |
            sed -n 's/.*counter packets \([0-9]*\).*/\1/p' | awk '{ s += $1 } END { print s + 0 }')"
    fi
}
