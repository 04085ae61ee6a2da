#!/usr/bin/env bash
# The full-size herald-load suite behind docs/BENCHMARKS.md: every scenario against a broker the
# tool spawns itself (fresh data directory each), one JSON report per scenario in OUT, then a
# Markdown table of the headline figures. Takes about six minutes on a 2-core box.
#
#   cargo build --release -p herald-broker -p herald-loadtest
#   loadtest/scripts/suite.sh [OUT]            # default OUT: target/herald-load-suite
set -euo pipefail
cd "$(dirname "$0")/../.."
bin_dir="${CARGO_TARGET_DIR:-target}/release"
out="${1:-target/herald-load-suite}"
mkdir -p "$out"
load() { "$bin_dir/herald-load" --spawn-broker --quiet "$@"; }

run() {
    local name=$1
    shift
    echo "== $name: herald-load --spawn-broker $*" >&2
    load --json "$out/$name.json" "$@" >"$out/$name.txt" 2>&1 || echo "   $name FAILED (see $out/$name.txt)" >&2
}

run idle connect --clients 1 --pings 1
run connect connect --clients 5000 --pings 10
run fanout fanout --members 5000 --messages 200
run fanout-1-shard --broker-shards 1 fanout --members 5000 --messages 200
run paced-100k paced --members 5000 --rate 20 --messages 200
run paced-20k paced --members 5000 --rate 4 --messages 80
run groups groups --groups 500 --group-size 10 --messages 20 --rate 2
run direct direct --pairs 100 --messages 100 --rate 10
run direct-acked direct --pairs 1000 --messages 20 --rate 0
run read-storm read-storm --members 5000
run reconnect-storm reconnect-storm --members 5000 --backlog 100
run recall recall --members 1000 --messages 20
run ding ding --recipients 4999 --ack-spread-ms 2000
run checkin-burst checkin-burst --people 5000 --window-s 60
run call-join call-join --devices 999 --window-s 3

python3 "$(dirname "$0")/table.py" "$out"
