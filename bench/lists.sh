#!/usr/bin/env bash
# Lists at scale: load time, resident memory added, lookup cost (median) and reload peak, on generated lists of
# 10^4 .. 3x10^6 domains; then the reload peak of the real c2sink serving a 1M list, and its DNS throughput with
# and without that list. Loopback only.
#   bash bench/lists.sh             # the figures (about a minute)
#   bash bench/lists.sh --criterion # also the criterion benchmarks (benches/lists.rs)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin c2sink --example list_probe --example list_qps
probe=target/release/examples/list_probe

echo "== matcher, one list (examples/list_probe.rs)"
for n in 10000 100000 1000000 3000000; do
    "$probe" "$n"
done

echo "== c2sink serving a 1,000,000-domain list: reload peak vs steady state"
dir=$(mktemp -d)
trap 'kill "${pid:-}" 2>/dev/null || true; rm -rf "$dir"' EXIT
"$probe" 1000000 --write "$dir/big.txt"
cp blocklists/3cx.txt "$dir/3cx.txt"
rss() { awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status"; }
start() { # config-file -> pid, waits until ready
    target/release/c2sink serve --config "$1" >/dev/null 2>"$dir/log" &
    pid=$!
    for _ in $(seq 1 200); do grep -q "c2sink ready" "$dir/log" && return; sleep 0.05; done
    echo "c2sink did not start:"; cat "$dir/log"; exit 1
}
base_cfg='[server]
listen = ["127.0.0.1:0"]
[upstream]
servers = ["127.0.0.1:9"]
[reload]
watch = false
[[blocklists]]
name = "3cx"
path = "3cx.txt"'
echo "$base_cfg" > "$dir/small.toml"
printf '%s\n[[blocklists]]\nname = "big"\npath = "big.txt"\n' "$base_cfg" > "$dir/big.toml"

start "$dir/small.toml"; sleep 0.5
small=$(rss "$pid" VmRSS); kill "$pid"; wait "$pid" 2>/dev/null || true

t0=$(date +%s.%N); start "$dir/big.toml"; t1=$(date +%s.%N); sleep 0.5
steady=$(rss "$pid" VmRSS)
echo 5 > "/proc/$pid/clear_refs"    # resets VmHWM to the current RSS
echo "one-more.example" >> "$dir/big.txt"
kill -HUP "$pid"
for _ in $(seq 1 400); do grep -q "reloaded" "$dir/log" && break; sleep 0.05; done
grep -q "reloaded" "$dir/log" || { echo "no reload:"; cat "$dir/log"; exit 1; }
peak=$(rss "$pid" VmHWM); after=$(rss "$pid" VmRSS)
kill "$pid"; wait "$pid" 2>/dev/null || true
awk -v s="$small" -v st="$steady" -v p="$peak" -v a="$after" -v t0="$t0" -v t1="$t1" 'BEGIN {
    printf "c2sink with 3cx only: %.1f MB RSS; with +1M list: %.1f MB (+%.1f MB), start %.2f s\n", s/1024, st/1024, (st-s)/1024, t1-t0
    printf "reload of the 1M list: peak %.1f MB = %.2fx steady; after reload %.1f MB\n", p/1024, p/st, a/1024
}'
grep -o 'took_ms=[0-9]*' "$dir/log" | sed 's/^/reload /'

echo "== DNS throughput, 3cx only vs 3cx + 1M list (examples/list_qps.rs; alternating rounds)"
target/release/examples/list_qps target/release/c2sink 5 6

if [[ "${1:-}" == "--criterion" ]]; then
    cargo bench --bench lists
fi
