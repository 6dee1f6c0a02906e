#!/usr/bin/env bash
# Soak: sustained mixed load on a release c2sink while one of its two upstreams flaps, on loopback only.
#
#   bench/soak.sh DURATION_SECONDS          e.g. bench/soak.sh 600
#   QPS=3000 TCP_QPS=200 FLAP_EVERY=20 FLAP_DOWN=5 bench/soak.sh 120
#
# Load: dnsperf over UDP (QPS) and over TCP (TCP_QPS) from a query file that is 99 % forwarded names and 1 %
# names under a blocked domain. Upstream 1 is killed for FLAP_DOWN seconds every FLAP_EVERY seconds and
# restarted on the same port; upstream 2 stays up. Reports lost queries, response codes, RSS and open fds at
# start / after warm-up / end, and blocked answers vs block-event lines. Kills only the processes it started.
set -euo pipefail
cd "$(dirname "$0")/.."

dur="${1:-120}"
qps="${QPS:-3000}"
tcp_qps="${TCP_QPS:-200}"
flap_every="${FLAP_EVERY:-20}"
flap_down="${FLAP_DOWN:-5}"
names="${NAMES:-50000}"

for tool in dnsperf ss awk; do
    command -v "$tool" >/dev/null || { echo "soak: $tool is needed (apt-get install dnsperf iproute2 gawk)" >&2; exit 2; }
done

work="bench/work/soak-$$"
mkdir -p "$work"
started=()
cleanup() {
    local p
    for p in "${started[@]}"; do kill "$p" 2>/dev/null || true; done
    if [ -s "$work/up1.pid" ]; then kill "$(cat "$work/up1.pid")" 2>/dev/null || true; fi
    for p in "${started[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

free_port() {
    local p
    for _ in $(seq 1 200); do
        p=$(( 20000 + RANDOM % 40000 ))
        if ! ss -Hlun "sport = :$p" | grep -q . && ! ss -Hltn "sport = :$p" | grep -q .; then
            echo "$p"; return
        fi
    done
    echo "soak: no free port" >&2; exit 2
}

echo "soak: building release binaries" >&2
cargo build --release --quiet --bin c2sink --example soak_upstream
bin=target/release/c2sink
upbin=target/release/examples/soak_upstream

# Query file: 99 % forwarded (A and some AAAA), 1 % under the blocked domain.
awk -v n="$names" 'BEGIN { for (i = 0; i < n; i++) {
    if (i % 100 == 0) print "h" i ".evil-c2.soak.test A";
    else if (i % 10 == 0) print "h" i ".soak.test AAAA";
    else print "h" i ".soak.test A" } }' > "$work/queries.txt"
echo "evil-c2.soak.test" > "$work/list.txt"

p1=$(free_port); p2=$(free_port)
"$upbin" "127.0.0.1:$p1" 2>>"$work/upstream.log" & echo $! > "$work/up1.pid"
"$upbin" "127.0.0.1:$p2" 2>>"$work/upstream.log" & started+=($!)

cat > "$work/c2sink.toml" <<CFG
[server]
listen = ["127.0.0.1:0"]
[upstream]
servers = ["127.0.0.1:$p1", "127.0.0.1:$p2"]
timeout_ms = 500
[[blocklists]]
name = "soak"
path = "list.txt"
[log]
events = "events.jsonl"
level = "info"
CFG

"$bin" serve --config "$work/c2sink.toml" 2>"$work/c2sink.log" &
c2pid=$!
started+=("$c2pid")
port=""
for _ in $(seq 1 100); do
    port=$(grep -o 'listening on 127.0.0.1:[0-9]*' "$work/c2sink.log" | head -1 | sed 's/.*://') || true
    [ -n "$port" ] && break
    sleep 0.1
done
[ -n "$port" ] || { echo "soak: c2sink did not start"; cat "$work/c2sink.log"; exit 1; }

sample() { # rss_kb fds
    local rss fds
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$c2pid/status" 2>/dev/null || echo 0)
    fds=$(ls "/proc/$c2pid/fd" 2>/dev/null | wc -l)
    echo "$rss $fds"
}
read -r rss0 fds0 < <(sample)
echo "soak: c2sink pid $c2pid on 127.0.0.1:$port; upstreams :$p1 (flaps) :$p2; ${dur}s at ${qps} qps UDP + ${tcp_qps} qps TCP" >&2

dnsperf -s 127.0.0.1 -p "$port" -d "$work/queries.txt" -l "$dur" -Q "$qps" -c 8 -q 1000 -t 3 \
    > "$work/dnsperf-udp.txt" 2>&1 & started+=($!); udp_pid=$!
dnsperf -m tcp -s 127.0.0.1 -p "$port" -d "$work/queries.txt" -l "$dur" -Q "$tcp_qps" -c 8 -q 100 -t 3 \
    > "$work/dnsperf-tcp.txt" 2>&1 & started+=($!); tcp_pid=$!

# Flap upstream 1 and sample memory while the load runs.
t0=$(date +%s)
next_flap=$(( t0 + flap_every - flap_down ))
flaps=0
rss_max=$rss0; rss_warm=""; fds_max=$fds0
: > "$work/samples.txt"
while kill -0 "$udp_pid" 2>/dev/null || kill -0 "$tcp_pid" 2>/dev/null; do
    now=$(date +%s)
    if [ "$now" -ge "$next_flap" ] && [ $(( now + flap_down )) -lt $(( t0 + dur )) ]; then
        kill "$(cat "$work/up1.pid")" 2>/dev/null || true
        wait "$(cat "$work/up1.pid")" 2>/dev/null || true
        sleep "$flap_down"
        "$upbin" "127.0.0.1:$p1" 2>>"$work/upstream.log" & echo $! > "$work/up1.pid"
        flaps=$(( flaps + 1 ))
        next_flap=$(( $(date +%s) + flap_every - flap_down ))
    fi
    read -r rss fds < <(sample)
    echo "$(( now - t0 )) $rss $fds" >> "$work/samples.txt"
    [ "$rss" -gt "$rss_max" ] && rss_max=$rss
    [ "$fds" -gt "$fds_max" ] && fds_max=$fds
    # "Warm" = after a quarter of the run: the cache has seen every name by then at the default rates.
    if [ -z "$rss_warm" ] && [ $(( now - t0 )) -ge $(( dur / 4 )) ]; then rss_warm=$rss; fi
    sleep 1
done
read -r rss1 fds1 < <(sample)
alive=yes; kill -0 "$c2pid" 2>/dev/null || alive=NO

kill -TERM "$c2pid"
wait "$c2pid" 2>/dev/null && exit_ok=yes || exit_ok=NO
totals=$(grep 'totals' "$work/c2sink.log" | tail -1)
field() { echo "$totals" | grep -o "$1=[0-9]*" | head -1 | cut -d= -f2; }
events=$(wc -l < "$work/events.jsonl")
# A line with "count":N stands for N blocked queries ([log] coalesce folds a client's repeats of one name).
in_log=$({ grep -o '"count":[0-9]*' "$work/events.jsonl" || true; } | awk -F: -v lines="$events" '{ s += $2 - 1 } END { print lines + s }')

perf() { grep -E "$2" "$1" | head -1 | sed 's/^ *//'; }
echo
echo "== c2sink soak: ${dur}s, ${qps} qps UDP + ${tcp_qps} qps TCP, upstream 1 down ${flap_down}s every ${flap_every}s ($flaps flaps)"
for m in udp tcp; do
    f="$work/dnsperf-$m.txt"
    echo "-- dnsperf $m"
    perf "$f" 'Queries sent'
    perf "$f" 'Queries completed'
    perf "$f" 'Queries lost'
    perf "$f" 'Response codes'
    perf "$f" 'Queries per second'
    perf "$f" 'Average Latency'
done
echo "-- c2sink"
echo "still running at end: $alive; clean exit on SIGTERM: $exit_ok"
echo "RSS KiB: start $rss0, warm ${rss_warm:-n/a}, end $rss1, max $rss_max" \
     "(growth warm->end: $(awk -v a="${rss_warm:-$rss0}" -v b="$rss1" 'BEGIN { printf "%.1f%%", (b - a) * 100 / a }'))"
echo "open fds: start $fds0, end $fds1, max $fds_max"
echo "queries $(field queries), blocked $(field blocked), forwarded $(field forwarded), cached $(field cached), failed(SERVFAIL) $(field failed), malformed $(field malformed)"
echo "upstream answers dropped as mismatched: $(field upstream_mismatched)"
echo "block events: lines written $(field events_written), dropped $(field events_dropped), folded into other lines $(field events_coalesced)"
echo "blocked queries in the event log: $in_log of $(field blocked) (lines in file: $events)"
echo "work files: $work (samples.txt has t rss_kb fds per second)"
