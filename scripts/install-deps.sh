#!/usr/bin/env bash
# Installs the system packages UPMT's tests and demo use (Debian/Ubuntu, as root).
# Idempotent: does nothing when everything is present.
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have ip      || need+=(iproute2)
have nft     || need+=(nftables)
have iperf3  || need+=(iperf3)
have ping    || need+=(iputils-ping)
have sipp    || need+=(sip-tester)
have curl    || need+=(curl)
have python3 || need+=(python3)
have strace  || need+=(strace)
have ss      || need+=(iproute2)

if [ ${#need[@]} -gt 0 ]; then
    echo "installing: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
