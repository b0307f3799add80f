# shellcheck shell=bash
# Helpers for scripts/testbed.sh (sourced; expects PREFIX, STATE, STATE_BASE, NODES, die).

# n NODE ARGS...: `ip ARGS` inside NODE's namespace.
n() { local node=$1; shift; ip -n "$PREFIX$node" "$@"; }

# nx NODE CMD...: run CMD inside NODE's namespace.
nx() { local node=$1; shift; ip netns exec "$PREFIX$node" "$@"; }

# nsysctl NODE path/under/proc/sys VALUE
nsysctl() { nx "$1" sh -c 'echo "$1" > "/proc/sys/$2"' _ "$3" "$2"; }

# veth NODE1 IF1 NODE2 IF2: a veth pair made directly inside the two namespaces.
veth() { n "$1" link add name "$2" type veth peer name "$4" netns "$PREFIX$3"; }

valid_node() {
    local x
    for x in "${NODES[@]}"; do [ "$x" = "$1" ] && return 0; done
    return 1
}

ns_exists() { [ -e "/run/netns/$PREFIX$1" ]; }

any_ns_exists() {
    local node
    for node in "${NODES[@]}"; do ns_exists "$node" && return 0; done
    return 1
}

is_up() {
    [ -e "$STATE/up" ] || return 1
    local node
    for node in "${NODES[@]}"; do ns_exists "$node" || return 1; done
}

# poll TRIES INTERVAL CMD...: run CMD until it succeeds, at most TRIES times.
poll() {
    local tries=$1 interval=$2 i
    shift 2
    for ((i = 0; i < tries; i++)); do
        "$@" && return 0
        sleep "$interval"
    done
    return 1
}

# oper_is NODE IF up|down: the interface's operational state (lower case).
oper_is() {
    local s
    s=$(nx "$1" cat "/sys/class/net/$2/operstate" 2>/dev/null) || return 1
    [ "$s" = "$3" ]
}

wait_oper() { poll 100 0.02 oper_is "$@" || die "$1:$2 did not become $3"; }

# Serialises verbs that change a testbed (not `exec`): one lock file per prefix.
lock() {
    mkdir -p "$STATE_BASE"
    exec 9>"$STATE_BASE/$PREFIX.lock"
    flock -w 60 9 || die "another testbed.sh holds $STATE_BASE/$PREFIX.lock"
}

alive() { [ -d "/proc/$1" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }

# is_ours PID: PID is one of our link emulators (guards against a recycled PID).
is_ours() { [ "$(cat "/proc/$1/comm" 2>/dev/null || true)" = "upmt-linkemu" ]; }

# stop_pid PID: SIGTERM, up to 3 s to exit, then SIGKILL. By PID only.
stop_pid() {
    local pid=$1 i
    alive "$pid" || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 150; i++)); do
        alive "$pid" || return 0
        sleep 0.02
    done
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        alive "$pid" || return 0
        sleep 0.02
    done
}

nft_load() { nx "$1" nft -f -; }

# link_param IFACE KEY: the fixed plan of the mobile host's two access links.
link_param() {
    case "$1:$2" in
    wlan0:nat) echo nat0 ;;
    wlan0:addr) echo 192.168.100.25 ;;
    wlan0:gw) echo 192.168.100.1 ;;
    wlan0:net) echo 192.168.100.0/24 ;;
    wlan0:table) echo 100 ;;
    wlan0:metric) echo 100 ;;
    umts0:nat) echo nat1 ;;
    umts0:addr) echo 10.10.10.25 ;;
    umts0:gw) echo 10.10.10.1 ;;
    umts0:net) echo 10.10.10.0/24 ;;
    umts0:table) echo 101 ;;
    umts0:metric) echo 200 ;;
    *) die "no parameter $2 for link $1" ;;
    esac
}

# mh_routes IFACE: (re)install the mobile host's routes through IFACE; the kernel drops
# them when the interface goes down, `link IFACE up` puts them back.
mh_routes() {
    local ifc=$1 gw table
    gw=$(link_param "$ifc" gw)
    table=$(link_param "$ifc" table)
    n mh route replace default via "$gw" dev "$ifc" metric "$(link_param "$ifc" metric)"
    n mh route replace "$(link_param "$ifc" net)" dev "$ifc" src "$(link_param "$ifc" addr)" table "$table"
    n mh route replace default via "$gw" dev "$ifc" table "$table"
}
