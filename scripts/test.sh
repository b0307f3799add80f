#!/usr/bin/env bash
# Runs every UPMT test: unit, property and corpus-replay tests, then the tests that need
# root and the kernel (TUN, io_uring, network namespaces, nftables, iperf3, sipp).
#
#   sudo scripts/test.sh            # everything
#   sudo scripts/test.sh -p wire    # extra arguments go to cargo test
#
# Root tests create their own uniquely named namespaces and remove them, pass or fail.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "scripts/test.sh: the end-to-end tests need root (network namespaces, TUN)." >&2
    echo "run: sudo scripts/test.sh" >&2
    exit 1
fi

scripts/install-deps.sh

before=$(ip netns list 2>/dev/null | wc -l)

cargo test --workspace --locked "$@"

after=$(ip netns list 2>/dev/null | wc -l)
if [ "$after" -gt "$before" ]; then
    echo "scripts/test.sh: tests left network namespaces behind:" >&2
    ip netns list >&2
    exit 1
fi
