#!/usr/bin/env bash
# bench/profile.sh TOOL WORKLOAD: where c2sink's time goes on one workload (loopback only).
#
#   perf      samples the server (user + kernel, cpu-clock) during a fixed-rate dnsperf run; prints the hottest
#             symbols and the user/kernel split. Hardware counters are not needed.
#   threads   per-thread CPU (utime/stime clock ticks from /proc/PID/task/*/stat) and context switches per query
#             during a fixed-rate dnsperf run: how much of the cost is the query thread and how much the event
#             writer. TARGET=unbound measures Unbound the same way.
#   syscalls  counts the server's system calls per query, by name (perf stat on the syscalls:sys_enter_*
#             tracepoints), during a fixed-rate dnsperf run: how many calls a query costs, and which.
#   callgrind runs c2sink under valgrind --tool=callgrind, zeroes the counters after warm-up, sends exactly
#             N queries, and prints instructions per query (user space only) with the top functions.
# WORKLOAD: blocked | cached | mixed | variety | miss. TARGET=unbound: Unbound instead (perf, threads, callgrind).
# Env: SECS=5 QPS=30000 PERF_CALLGRAPH=1 (perf -g: kernel call chains; user ones need frame pointers)
#      N=20000 CG_QPS= (unset: saturated) CG_OUTSTANDING=20 (callgrind)  C2SINK_BIN= (default target/release/c2sink, built if absent)
#      CONFIG=small|1m|hickory (hickory: c2sink's pipeline on hickory-server, examples/hickory_frontend.rs)  TARGET=c2sink|unbound  SERVER_CPUS=1 DNSPERF_CPUS=0 UPSTREAM_CPUS=0  OUT=bench/out  TOP=25
# Output files: $OUT/profile/<tool>-<workload>.*
set -euo pipefail
BENCH="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$BENCH")"
export OUT="${OUT:-$BENCH/out}"
source "$BENCH/lib.sh"
[[ $# -eq 2 ]] || die "usage: $0 perf|threads|syscalls|callgrind blocked|cached|mixed|variety|miss"
TOOL=$1 WL=$2
SECS=${SECS:-5} QPS=${QPS:-30000} N=${N:-20000} CONFIG=${CONFIG:-small} TOP=${TOP:-25}
SERVER_CPUS=${SERVER_CPUS-1} DNSPERF_CPUS=${DNSPERF_CPUS-0} UPSTREAM_CPUS=${UPSTREAM_CPUS-0}
export UP_IP=${UP_IP:-127.0.0.2} UP_PORT=${UP_PORT:-5300} C2_IP=${C2_IP:-127.0.0.5} C2_PORT=${C2_PORT:-5303}
export UB_IP=${UB_IP:-127.0.0.3} UB_PORT=${UB_PORT:-5301}
# each generated c2sink config listens on its own port (gen-data.sh)
case "$CONFIG" in 1m) C2_PORT=${C2M_PORT:-5304} ;; base) C2_PORT=${C2B_PORT:-5305} ;; hickory) C2_PORT=${C2H_PORT:-5306} ;; esac
for ip in "$UP_IP" "$C2_IP" "$UB_IP"; do  # literal 127/8 addresses only (a host name would be looked up)
  [[ "$ip" =~ ^127(\.[0-9]{1,3}){3}$ ]] || die "loopback addresses only: '$ip'"
done
# TARGET=unbound profiles Unbound the same way (callgrind and threads), for a like-for-like comparison
TARGET=${TARGET:-c2sink}
[[ "$TARGET" == unbound ]] && C2_IP=$UB_IP C2_PORT=$UB_PORT
export PATH="$PATH:/usr/sbin:/sbin"
if [[ "$CONFIG" == hickory ]]; then  # c2sink's pipeline on hickory-server (examples/hickory_frontend.rs)
  C2SINK_BIN=${C2SINK_BIN:-$ROOT/target/release/examples/hickory_frontend}
  [[ -x "$C2SINK_BIN" ]] || (cd "$ROOT" && cargo build --release --quiet --example hickory_frontend)
else
  C2SINK_BIN=${C2SINK_BIN:-$ROOT/target/release/c2sink}
  [[ -x "$C2SINK_BIN" ]] || (cd "$ROOT" && cargo build --release --quiet)
fi
[[ -x "$C2SINK_BIN" ]] || die "no binary at $C2SINK_BIN"
case "$WL" in blocked|cached|mixed|variety) QF="$OUT/queries/$WL.txt" ;; miss) QF="$OUT/queries/miss-sat-1.txt" ;;
  *) die "unknown workload $WL" ;; esac
[[ -s "$QF" && -s "$OUT/conf/c2sink-$CONFIG.toml" ]] || MISS_TRIES=1 "$BENCH/gen-data.sh" >&2
mkdir -p "$OUT/profile" "$OUT/run"
PIDS="$OUT/run/profile.pids"; : > "$PIDS"
trap 'rc=$?; stop_all; exit $rc' EXIT
trap 'exit 130' INT TERM
PROF="$OUT/profile/$TOOL-$WL"; [[ "$TARGET" == unbound ]] && PROF="$OUT/profile/$TOOL-$WL-unbound"
DP=(dnsperf -s "$C2_IP" -p "$C2_PORT" -q 100 -t 5)
# dnsperf runs as in measure.sh: on DNSPERF_CPUS, at NICE / RT_PRIO when set (start sets PIN too, so ask each time).
dp() { pin_prefix "$DNSPERF_CPUS"; "${PIN[@]}" "${DP[@]}" "$@"; }

# Starts the server profiled (TARGET) on SERVER_CPUS and sets `pid` (perf and threads; callgrind runs it
# under valgrind itself).
start_target() {
  if [[ "$TARGET" == unbound ]]; then
    start unbound "$UB_IP" "$UB_PORT" "$SERVER_CPUS" "$(command -v unbound)" -d -c "$OUT/conf/unbound.conf"
    pid=$(pid_of unbound)
  else
    start c2sink "$C2_IP" "$C2_PORT" "$SERVER_CPUS" "$C2SINK_BIN" serve --config "$OUT/conf/c2sink-$CONFIG.toml"
    pid=$(pid_of c2sink)
  fi
}

# Fills the target's cache as the bench's warm-up does: the cached names, and the variety workload's own.
warm_target() {
  dp -d "$OUT/queries/cached.txt" -n 3 >/dev/null 2>&1
  [[ "$WL" != variety ]] || dp -d "$QF" -n 2 >/dev/null 2>&1
}

start nsd "$UP_IP" "$UP_PORT" "$UPSTREAM_CPUS" "$(command -v nsd)" -d -c "$OUT/conf/nsd.conf"
case "$TOOL" in
perf)
  command -v perf >/dev/null || die "perf is not installed"
  start_target
  warm_target
  perf record -F 4999 -e cpu-clock ${PERF_CALLGRAPH:+-g} -p "$pid" -o "$PROF.data" -- sleep "$SECS" 2>"$PROF.record.log" &
  rec=$!
  dp -d "$QF" -Q "$QPS" -l "$SECS" > "$PROF.dnsperf.txt" 2>&1
  wait "$rec" || true
  completed=$(awk '/Queries completed:/{print $3}' "$PROF.dnsperf.txt")
  {
    echo "# perf cpu-clock profile of $TARGET, workload $WL at $QPS qps for ${SECS}s ($completed queries)"
    perf report -i "$PROF.data" --stdio --no-children --sort dso 2>/dev/null | grep -v '^#' | grep -v '^$' | head -12
    echo
    perf report -i "$PROF.data" --stdio --no-children --sort sym 2>/dev/null | grep -v '^#' | grep -v '^$' | head -"$TOP"
  } | tee "$PROF.txt"
  ;;
syscalls)
  command -v perf >/dev/null || die "perf is not installed"
  start_target
  warm_target
  perf stat -x, -e 'syscalls:sys_enter_*' -p "$pid" -o "$PROF.stat" -- sleep "$SECS" 2>/dev/null &
  rec=$!
  dp -d "$QF" -Q "$QPS" -l "$SECS" > "$PROF.dnsperf.txt" 2>&1
  wait "$rec" || true
  completed=$(awk '/Queries completed:/{print $3}' "$PROF.dnsperf.txt")
  {
    echo "# system calls of $TARGET per query, workload $WL at $QPS qps for ${SECS}s ($completed queries)"
    awk -F, -v n="$completed" '$1 ~ /^[0-9]+$/ && $1 > 0 { sub(/^syscalls:sys_enter_/, "", $3)
        printf "%-22s %10d %8.3f\n", $3, $1, $1 / n; t += $1 }
      END { printf "%-22s %10d %8.3f\n", "total", t, t / n }' "$PROF.stat" | sort -k2 -nr
  } | tee "$PROF.txt"
  ;;
threads)
  start_target
  warm_target
  # "tid name voluntary involuntary utime stime" for every thread (the name may not hold spaces: ours do not)
  snap() { local t; for t in /proc/"$pid"/task/*; do
    printf '%s %s %s %s\n' "${t##*/}" "$(cat "$t/comm")" \
      "$(awk '/^voluntary_ctxt/{v=$2} /^nonvoluntary_ctxt/{n=$2} END{print v, n}' "$t/status")" \
      "$(sed 's/^.*) //' "$t/stat" | awk '{print $12, $13}')"; done; }
  snap > "$PROF.before"
  dp -d "$QF" -Q "$QPS" -l "$SECS" > "$PROF.dnsperf.txt" 2>&1
  snap > "$PROF.after"
  completed=$(awk '/Queries completed:/{print $3}' "$PROF.dnsperf.txt")
  hz=$(getconf CLK_TCK)
  {
    echo "# per-thread CPU of $TARGET, workload $WL at $QPS qps for ${SECS}s ($completed queries; clock tick = $((1000000 / hz)) µs)"
    printf '%-18s %10s %10s %12s %14s %14s\n' thread user_ticks sys_ticks "µs/query" voluntary/q involuntary/q
    join <(sort "$PROF.before") <(sort "$PROF.after") | awk -v n="$completed" -v hz="$hz" '
      { u = $10 - $5; k = $11 - $6; if (u + k == 0 && $8 == $3 && $9 == $4) next
        printf "%-18s %10d %10d %12.2f %14.3f %14.3f\n", $2, u, k, (u + k) * 1e6 / hz / n, ($8 - $3) / n, ($9 - $4) / n
        tu += u; tk += k }
      END { printf "%-18s %10d %10d %12.2f\n", "total", tu, tk, (tu + tk) * 1e6 / hz / n }'
    grep -E "Queries lost|Average Latency" "$PROF.dnsperf.txt"
  } | tee "$PROF.txt"
  ;;
callgrind)
  command -v valgrind >/dev/null || die "valgrind is not installed"
  if [[ "$TARGET" == unbound ]]; then
    EXPECT_EXE=callgrind-amd64-linux start c2sink-vg "$UB_IP" "$UB_PORT" "$SERVER_CPUS" "$(command -v valgrind)" --tool=callgrind \
      --callgrind-out-file="$PROF.out" ${CG_ARGS:-} "$(command -v unbound)" -d -c "$OUT/conf/unbound.conf"
  else
    EXPECT_EXE=callgrind-amd64-linux start c2sink-vg "$C2_IP" "$C2_PORT" "$SERVER_CPUS" "$(command -v valgrind)" --tool=callgrind \
      --callgrind-out-file="$PROF.out" ${CG_ARGS:-} "$C2SINK_BIN" serve --config "$OUT/conf/c2sink-$CONFIG.toml"
  fi
  pid=$(pid_of c2sink-vg)
  "${DP[@]}" -d "$OUT/queries/cached.txt" -n 2 -Q 2000 >/dev/null 2>&1
  "${DP[@]}" -d "$OUT/queries/blocked.txt" -n 1 -Q 2000 >/dev/null 2>&1
  callgrind_control -z "$pid" >/dev/null
  # exactly N queries: the file repeated as needed, then cut
  awk -v n="$N" 'NR <= n {a[NR] = $0} END {for (i = 0; i < n; i++) print a[i % (NR < n ? NR : n) + 1]}' "$QF" > "$PROF.queries"
  # saturated by default (the server never idles: per-query work without wake-up costs); CG_QPS=n paces it
  "${DP[@]}" -d "$PROF.queries" -n 1 -q "${CG_OUTSTANDING:-20}" ${CG_QPS:+-Q "$CG_QPS"} > "$PROF.dnsperf.txt" 2>&1
  callgrind_control -d "$pid" >/dev/null
  sleep 1
  dump=$(ls -t "$PROF".out.* 2>/dev/null | head -n1)
  [[ -n "$dump" ]] || die "no callgrind dump found"
  completed=$(awk '/Queries completed:/{print $3}' "$PROF.dnsperf.txt")
  total=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/{gsub(",","",$1); print $1; exit}')
  {
    echo "# callgrind, workload $WL: $completed queries, $total instructions (user space), $(( total / completed )) per query"
    callgrind_annotate --threshold=100 --auto=no --inclusive=no "$dump" 2>/dev/null | sed -n '/file:function/,$p' | head -"$TOP"
    echo
    echo "## inclusive"
    callgrind_annotate --threshold=100 --auto=no --inclusive=yes "$dump" 2>/dev/null | sed -n '/file:function/,$p' | head -"$TOP"
  } | tee "$PROF.txt"
  ;;
*) die "unknown tool $TOOL (perf, threads, syscalls, callgrind)" ;;
esac
