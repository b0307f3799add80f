#!/usr/bin/env bash
# UPMT reference testbed: the paper's Fig. 6 topology (DESIGN.md section 4) in network
# namespaces, with real nftables NATs and a link emulator on the mobile host's access links.
#
#                       access net 0: 192.168.100.0/24
#           wlan0 .25 ----------------------------- lan .1 [nat0] wan 198.18.0.1
#   [mh]                                                  masquerade    \
#           umts0 .25 ----------------------------- lan .1 [nat1] wan   \  198.18.0.254 to-nat0
#                       access net 1: 10.10.10.0/24       198.18.1.1 ----[inet]-- 198.18.1.254 to-nat1
#                                                                          |   \
#                   198.18.2.100/32 (anchor NAT address) via 198.18.2.1    |    \ 198.18.3.254 to-ch
#                                                          198.18.2.254 to-an    \
#                                                                  |              \
#                                                    eth0 198.18.2.1 [an]   eth0 198.18.3.1 [ch]
#
#   The two mh <-> nat links are plain veth pairs. When a `link` verb sets delay, jitter or
#   loss, the emulator (perf's `upmt-linkemu`) is spliced into the NAT's end of the link:
#
#     mh:wlan0 <-veth-> nat0:lan  ==[upmt-linkemu, AF_PACKET]==  nat0:lan-emu <-veth-> nat0:lan-in
#                       (raw port, no address)                   (raw port)            (.1, stack)
#
#   192.168.100.1 and lan's MAC move to lan-in while it is spliced, and back on `clear`.
#   Rate is a tbf qdisc (mh:IFACE for the uplink, nat:lan for the downlink); blackhole is an
#   nftables drop table in the NAT (the interface stays up, packets vanish).
#
# Usage: scripts/testbed.sh [--prefix P] [-q] VERB ...   (as root; docs/TESTBED.md has the details)
#   up [--nat-udp-timeout S]        build the topology (harmless when already up)
#   down                            remove every namespace and process it made (harmless twice)
#   status                          addresses, routes, impairments, emulator counters
#   exec NODE [--] CMD...           run CMD in NODE (mh nat0 nat1 inet an ch)
#   link IFACE up|down              administrative state of mh's IFACE (wlan0 or umts0)
#   link IFACE delay MS [jitter MS] [dist uniform|normal] [dir up|down|both]
#   link IFACE loss PCT [dir up|down|both]
#   link IFACE rate MBIT|off [dir up|down|both]
#   link IFACE blackhole on|off
#   link IFACE clear                remove every impairment (and the emulator from the path)
#   nat NATNODE udp-timeout S       conntrack UDP timeouts (unreplied and stream) in nat0/nat1
#   upmt start|stop|logs            the UPMT anchor (in an) and mobile host (in mh), example configs
#
# Namespaces are named PREFIX<node>, PREFIX defaulting to $UPMT_PREFIX or "upmt-".
# State (PIDs, link settings) lives in /run/upmt-testbed/PREFIX/.
set -eu
set -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PREFIX=${UPMT_PREFIX:-upmt-}
NODES=(mh nat0 nat1 inet an ch)
STATE_BASE=/run/upmt-testbed

die() { echo "testbed: $*" >&2; exit 1; }
say() { [ -n "${QUIET:-}" ] || echo "testbed: $*"; }

usage() {
    sed -n '/^# Usage:/,/^# State/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

# --- global options ---------------------------------------------------------------------
while [ $# -gt 0 ]; do
    case "$1" in
    --prefix) [ $# -ge 2 ] || die "--prefix needs a value"; PREFIX=$2; shift 2 ;;
    --prefix=*) PREFIX=${1#--prefix=}; shift ;;
    -q | --quiet) QUIET=1; shift ;;
    -h | --help | help) usage; exit 0 ;;
    *) break ;;
    esac
done
[ $# -ge 1 ] || { usage >&2; exit 2; }
VERB=$1
shift
[[ "$PREFIX" =~ ^[A-Za-z0-9_.-]{1,40}$ ]] || die "bad prefix '$PREFIX' (letters, digits, _ . -)"
STATE=$STATE_BASE/$PREFIX

# shellcheck source=lib/testbed-common.sh
. "$ROOT/scripts/lib/testbed-common.sh"
# shellcheck source=lib/testbed-link.sh
. "$ROOT/scripts/lib/testbed-link.sh"
# shellcheck source=lib/testbed-upmt.sh
. "$ROOT/scripts/lib/testbed-upmt.sh"

need_root() {
    [ "$(id -u)" -eq 0 ] || die "needs root (network namespaces): sudo $0 $VERB"
    local t
    for t in ip nft ping flock; do
        command -v "$t" >/dev/null 2>&1 || die "missing tool '$t' (apt-get install iproute2 nftables iputils-ping util-linux)"
    done
}

# --- up -----------------------------------------------------------------------------------
build() {
    local node
    mkdir -p "$STATE"
    for node in "${NODES[@]}"; do
        ip netns add "$PREFIX$node"
        n "$node" link set dev lo up
        # No reverse-path filter whatever the host's defaults (devconf_inherit_init_net):
        # the mobile host receives on one interface what its main table would send on another.
        nsysctl "$node" net/ipv4/conf/all/rp_filter 0
        nsysctl "$node" net/ipv4/conf/default/rp_filter 0
    done

    # Links: create each veth pair straight inside its two namespaces (never in the host's).
    veth mh wlan0 nat0 lan
    veth mh umts0 nat1 lan
    veth nat0 wan inet to-nat0
    veth nat1 wan inet to-nat1
    veth an eth0 inet to-an
    veth ch eth0 inet to-ch

    n mh addr add 192.168.100.25/24 dev wlan0
    n mh addr add 10.10.10.25/24 dev umts0
    n nat0 addr add 192.168.100.1/24 dev lan
    n nat0 addr add 198.18.0.1/24 dev wan
    n nat1 addr add 10.10.10.1/24 dev lan
    n nat1 addr add 198.18.1.1/24 dev wan
    n inet addr add 198.18.0.254/24 dev to-nat0
    n inet addr add 198.18.1.254/24 dev to-nat1
    n inet addr add 198.18.2.254/24 dev to-an
    n inet addr add 198.18.3.254/24 dev to-ch
    n an addr add 198.18.2.1/24 dev eth0
    n ch addr add 198.18.3.1/24 dev eth0

    local pair
    for pair in mh:wlan0 mh:umts0 nat0:lan nat0:wan nat1:lan nat1:wan inet:to-nat0 inet:to-nat1 \
        inet:to-an inet:to-ch an:eth0 ch:eth0; do
        n "${pair%%:*}" link set dev "${pair#*:}" up
    done

    for node in nat0 nat1 inet an; do
        nsysctl "$node" net/ipv4/ip_forward 1
    done

    # Routing. The NATs and the end hosts default to the core router; the core router knows
    # every public /24 directly and the anchor's NAT public address through the anchor.
    n nat0 route add default via 198.18.0.254 dev wan
    n nat1 route add default via 198.18.1.254 dev wan
    n an route add default via 198.18.2.254 dev eth0
    n ch route add default via 198.18.3.254 dev eth0
    n inet route add 198.18.2.100/32 via 198.18.2.1 dev to-an

    # The mobile host: two defaults (wlan0 preferred), and per-interface source routing so
    # that traffic sourced from an interface's address, or bound to it, leaves through it.
    n mh rule add from 192.168.100.25 lookup "$(link_param wlan0 table)" priority 1000
    n mh rule add from 10.10.10.25 lookup "$(link_param umts0 table)" priority 1001
    mh_routes wlan0
    mh_routes umts0

    # The local NATs: real nftables masquerade towards the core.
    for node in nat0 nat1; do
        nft_load "$node" <<'EOF'
table ip upmt_nat {
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "wan" masquerade
    }
}
EOF
    done

    # Readiness: every link has carrier, then mh reaches ch through both access networks.
    for pair in mh:wlan0 mh:umts0 nat0:lan nat0:wan nat1:lan nat1:wan inet:to-nat0 \
        inet:to-nat1 inet:to-an inet:to-ch an:eth0 ch:eth0; do
        wait_oper "${pair%%:*}" "${pair#*:}" up
    done
    local ifc
    for ifc in wlan0 umts0; do
        poll 50 0.1 nx mh ping -n -q -c 1 -W 1 -I "$ifc" 198.18.3.1 >/dev/null 2>&1 ||
            die "mh cannot reach ch through $ifc"
    done
    touch "$STATE/up"
}

cmd_up() {
    local udp_timeout=""
    while [ $# -gt 0 ]; do
        case "$1" in
        --nat-udp-timeout) [ $# -ge 2 ] || die "--nat-udp-timeout needs seconds"; udp_timeout=$2; shift 2 ;;
        --nat-udp-timeout=*) udp_timeout=${1#*=}; shift ;;
        *) die "up: unknown option '$1'" ;;
        esac
    done
    need_root
    lock
    if is_up; then
        say "already up (prefix $PREFIX)"
    else
        if any_ns_exists || [ -d "$STATE" ]; then
            say "removing a partial testbed first"
            teardown
        fi
        trap 'teardown_on_failure' EXIT
        build
        trap - EXIT
        say "up (prefix $PREFIX): namespaces ${NODES[*]/#/$PREFIX}"
    fi
    if [ -n "$udp_timeout" ]; then
        nat_udp_timeout nat0 "$udp_timeout"
        nat_udp_timeout nat1 "$udp_timeout"
    fi
}

teardown_on_failure() {
    local rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "testbed: up failed, removing what was made" >&2
        teardown || true
    fi
}

# --- down ---------------------------------------------------------------------------------
teardown() {
    local f pid node
    # The processes this script started (the link emulators), by their recorded PID.
    if [ -d "$STATE" ]; then
        for f in "$STATE"/*.pid; do
            [ -e "$f" ] || continue
            pid=$(cat "$f" 2>/dev/null || true)
            [ -n "$pid" ] && is_ours "$pid" && stop_pid "$pid"
            rm -f "$f"
        done
    fi
    # Anything still running inside our namespaces (servers started with `exec ... &`).
    for node in "${NODES[@]}"; do
        ns_exists "$node" || continue
        for pid in $(ip netns pids "$PREFIX$node" 2>/dev/null || true); do
            stop_pid "$pid"
        done
    done
    for node in "${NODES[@]}"; do
        if ns_exists "$node"; then
            ip netns del "$PREFIX$node"
        fi
    done
    rm -rf "$STATE"
}

cmd_down() {
    need_root
    lock
    if ! any_ns_exists && [ ! -d "$STATE" ]; then
        rm -f "$STATE_BASE/$PREFIX.lock"
        say "nothing to do (prefix $PREFIX is down)"
        return 0
    fi
    teardown
    # Nothing of this prefix is left, not even its lock file.
    rm -f "$STATE_BASE/$PREFIX.lock"
    say "down (prefix $PREFIX)"
}

# --- status -------------------------------------------------------------------------------
cmd_status() {
    need_root
    if ! is_up; then
        echo "testbed $PREFIX: down"
        any_ns_exists && echo "(some namespaces of $PREFIX exist: run down)"
        return 3
    fi
    local node ifc
    echo "testbed $PREFIX: up"
    for node in "${NODES[@]}"; do
        echo "== $node ($PREFIX$node)"
        n "$node" -br addr show | grep -v '^lo ' | sed 's/^/   /'
    done
    echo "== mh routes"
    n mh route show | sed 's/^/   main: /'
    for ifc in wlan0 umts0; do
        n mh route show table "$(link_param "$ifc" table)" | sed "s/^/   table $(link_param "$ifc" table): /"
    done
    n mh rule show | sed 's/^/   rule: /'
    for node in nat0 nat1; do
        echo "== $node nat: udp timeout $(nx "$node" cat /proc/sys/net/netfilter/nf_conntrack_udp_timeout) s," \
            "stream $(nx "$node" cat /proc/sys/net/netfilter/nf_conntrack_udp_timeout_stream) s," \
            "conntrack entries $(nx "$node" cat /proc/sys/net/netfilter/nf_conntrack_count)"
    done
    for ifc in wlan0 umts0; do
        link_status "$ifc"
    done
}

# --- exec ---------------------------------------------------------------------------------
cmd_exec() {
    [ $# -ge 1 ] || die "exec NODE [--] CMD..."
    local node=$1
    shift
    valid_node "$node" || die "unknown node '$node' (one of: ${NODES[*]})"
    [ "${1:-}" = "--" ] && shift
    [ $# -ge 1 ] || die "exec $node: no command"
    ns_exists "$node" || die "testbed $PREFIX is not up"
    # The upmt binary (for `exec mh upmt status`), first on PATH when built.
    local b
    for b in "${UPMT_BIN:-}" "$ROOT/target/release/upmt" "$ROOT/target/debug/upmt"; do
        if [ -n "$b" ] && [ -x "$b" ]; then
            PATH="$(dirname "$b"):$PATH"
            break
        fi
    done
    exec ip netns exec "$PREFIX$node" "$@"
}

# --- nat ----------------------------------------------------------------------------------
cmd_nat() {
    [ $# -ge 3 ] || die "nat NATNODE udp-timeout SECONDS"
    local node=$1
    case "$node" in nat0 | nat1) ;; *) die "nat: NATNODE is nat0 or nat1" ;; esac
    need_root
    is_up || die "testbed $PREFIX is not up"
    case "$2" in
    udp-timeout) nat_udp_timeout "$node" "$3" ;;
    *) die "nat: unknown setting '$2' (udp-timeout)" ;;
    esac
}

nat_udp_timeout() {
    local node=$1 s=$2
    [[ "$s" =~ ^[0-9]+$ ]] && [ "$s" -ge 1 ] || die "udp-timeout: seconds must be a positive integer"
    nsysctl "$node" net/netfilter/nf_conntrack_udp_timeout "$s"
    nsysctl "$node" net/netfilter/nf_conntrack_udp_timeout_stream "$s"
    say "$node: UDP mapping timeout $s s (unreplied and stream)"
}

# --- main ---------------------------------------------------------------------------------
case "$VERB" in
up) cmd_up "$@" ;;
down) cmd_down "$@" ;;
status) cmd_status "$@" ;;
exec) cmd_exec "$@" ;;
link) cmd_link "$@" ;;
nat) cmd_nat "$@" ;;
upmt) cmd_upmt "$@" ;;
*) usage >&2; exit 2 ;;
esac
