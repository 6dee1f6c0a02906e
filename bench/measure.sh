#!/usr/bin/env bash
# measure.sh IP PORT QUERYFILE SECONDS: one bounded dnsperf run against a loopback server; prints ONE line
# of key=value pairs (and appends a CSV row when CSV is set).
#
# Env:
#   SERVER_PIDS   pids whose CPU is the server's (required; run.sh passes the pids it started)
#   UPSTREAM_PIDS pids of the upstream (their CPU is reported apart, not as "other")
#   QPS=          dnsperf -Q (fixed offered load); unset = as fast as the server answers (saturation)
#   LATENCY=1     dnsperf -v and p50/p99 from per-query latencies (costs dnsperf CPU: off for saturation)
#   CLIENTS=1 OUTSTANDING=100 TIMEOUT=2   dnsperf -c, -q, -t
#   PASSES=       dnsperf -n: stop after this many passes through the file (or SECONDS, whichever comes first)
#   PROTO=udp     or tcp (dnsperf -m tcp)
#   DNSPERF_FLAGS= -e (EDNS on every query) or -D (EDNS with the DO bit); unset: no EDNS
#   DNSPERF_CPUS= taskset CPU list for dnsperf;  RT_PRIO= / NICE= run dnsperf under chrt -f / nice -n
#   CSV= file to append to; LABEL= free text (server,workload,mode) put first in the CSV row
# Columns: cpu_us_per_q = server CPU time (utime+stime, read in ns from /proc/PID/task/*/schedstat) / queries
#   completed (user_us_per_q: utime from /proc/PID/stat, in clock ticks);
#   other_cpu = busy CPU of the whole machine minus dnsperf, server and upstream, in % of one core.
set -euo pipefail
die() { echo "measure: ERROR: $*" >&2; exit 2; }
[[ $# -eq 4 ]] || die "usage: $0 IP PORT QUERYFILE SECONDS"
IP=$1 PORT=$2 QF=$3 SECS=$4
# a literal address only: a host name such as 127.example.net would be looked up and could leave the machine
[[ "$IP" =~ ^127(\.[0-9]{1,3}){3}$ || "$IP" == "::1" ]] || die "target $IP is not a loopback address (127.0.0.0/8 or ::1); refusing"
[[ "$PORT" =~ ^[0-9]+$ && "$PORT" -ge 1 && "$PORT" -le 65535 ]] || die "bad port '$PORT'"
[[ "$SECS" =~ ^[0-9]+$ && "$SECS" -ge 1 && "$SECS" -le 600 ]] || die "SECONDS must be 1..600"
[[ -s "$QF" ]] || die "query file '$QF' not found or empty"
[[ -n "${SERVER_PIDS:-}" ]] || die "SERVER_PIDS is not set"
CLIENTS=${CLIENTS:-1} OUTSTANDING=${OUTSTANDING:-100} TIMEOUT=${TIMEOUT:-2} LATENCY=${LATENCY:-1}
FAM=inet; [[ "$IP" == "::1" ]] && FAM=inet6
HZ=$(getconf CLK_TCK) NCPU=$(nproc)

ticks() { # pids... -> "user system" clock ticks summed over the processes (all their threads)
  local u=0 k=0 p s; for p in $*; do
    # strip "pid (comm) " first (comm may hold spaces); then utime is field 12, stime 13
    s=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null) || continue
    read -r a b < <(awk '{print $12, $13}' <<< "$s"); u=$((u + a)); k=$((k + b)); done; echo "$u $k"; }
source "$(dirname "$0")/lib.sh"  # runtime_ns, pin_prefix, latency_quantiles
machine() { awk '/^cpu /{print $2+$3+$4+$5+$6+$7+$8+$9, $5+$6}' /proc/stat; }  # total, idle+iowait
rss_kb() { local t=0 p; for p in $*; do t=$(( t + $(awk '/^VmRSS:/{print $2}' "/proc/$p/status" 2>/dev/null || echo 0) )); done; echo "$t"; }

ARGS=(-f "$FAM" -s "$IP" -p "$PORT" -d "$QF" -c "$CLIENTS" -q "$OUTSTANDING" -t "$TIMEOUT" -l "$SECS")
[[ -n "${QPS:-}" ]] && ARGS+=(-Q "$QPS")
[[ -n "${PASSES:-}" ]] && ARGS+=(-n "$PASSES")
case "${DNSPERF_FLAGS:-}" in "") ;; -e|-D) ARGS+=("$DNSPERF_FLAGS") ;; *) die "DNSPERF_FLAGS must be -e or -D" ;; esac
case "${PROTO:-udp}" in udp) ;; tcp) ARGS+=(-m tcp) ;; *) die "PROTO must be udp or tcp" ;; esac
[[ "$LATENCY" == 1 ]] && ARGS+=(-v)
pin_prefix "${DNSPERF_CPUS:-}"
RAW=$(mktemp "${TMPDIR:-/tmp}/c2bench-dnsperf.XXXXXX")
trap 'rm -f "$RAW" "$RAW.err"' EXIT

read -r m0 i0 < <(machine); read -r su0 sk0 < <(ticks $SERVER_PIDS); sn0=$(runtime_ns $SERVER_PIDS); read -r uu0 uk0 < <(ticks ${UPSTREAM_PIDS:-}); t0=$(date +%s.%N)
set +e
timeout -k 5 $((SECS + TIMEOUT + 15)) "${PIN[@]}" /usr/bin/time -f 'DNSPERF_RUSAGE %U %S %e' \
  dnsperf "${ARGS[@]}" > "$RAW" 2> "$RAW.err"
rc=$?
set -e
t1=$(date +%s.%N); sn1=$(runtime_ns $SERVER_PIDS); read -r su1 sk1 < <(ticks $SERVER_PIDS); read -r uu1 uk1 < <(ticks ${UPSTREAM_PIDS:-}); read -r m1 i1 < <(machine)
cat "$RAW.err" >> "$RAW"
[[ $rc -eq 0 ]] || { tail -n 20 "$RAW" >&2; die "dnsperf exited with rc=$rc"; }

get() { grep -m1 "$1" "$RAW" | sed -E "s/.*$1[^0-9]*//" | awk '{print $1}'; }
comp=$(get 'Queries completed:'); lost=$(get 'Queries lost:'); qps=$(get 'Queries per second:')
avg=$(grep -m1 'Average Latency' "$RAW" | awk '{print $4}')
rcodes=$(grep -m1 'Response codes:' "$RAW" | sed -E 's/.*Response codes: *//; s/ ([0-9]+) \(([0-9.]+%)\)/=\1/g; s/, /;/g')
read -r du ds de < <(grep DNSPERF_RUSAGE "$RAW" | awk '{print $2, $3, $4}')
p50=NA p99=NA
if [[ "$LATENCY" == 1 ]]; then
  read -r s50 s99 < <(latency_quantiles "$RAW" 0.50 0.99)
  if [[ "$s50" != NA ]]; then
    p50=$(awk -v x="$s50" 'BEGIN{printf "%.3f", x*1000}'); p99=$(awk -v x="$s99" 'BEGIN{printf "%.3f", x*1000}')
  fi
fi
u0=$((uu0 + uk0)) u1=$((uu1 + uk1))
# a kernel without /proc/PID/schedstat (no CONFIG_SCHED_INFO): utime+stime in clock ticks
(( sn1 > sn0 )) || sn0=0 sn1=$(( (su1 + sk1 - su0 - sk0) * 1000000000 / HZ ))
user_us=$(awk -v a="$su0" -v b="$su1" -v hz="$HZ" -v c="$comp" 'BEGIN{printf "%.2f", (c>0)?1e6*(b-a)/hz/c:0}')
read -r cpu_us srv_pct up_pct dn_pct mach_pct other_pct < <(awk -v sn="$((sn1 - sn0))" -v u0="$u0" -v u1="$u1" \
  -v hz="$HZ" -v t0="$t0" -v t1="$t1" -v c="$comp" -v du="$du" -v ds="$ds" -v m0="$m0" -v m1="$m1" -v i0="$i0" -v i1="$i1" -v n="$NCPU" 'BEGIN{
  el=t1-t0; s=sn/1e9; u=(u1-u0)/hz; d=du+ds; dm=m1-m0;
  mach=(dm>0)?n*el*(dm-(i1-i0))/dm:0;            # busy CPU-seconds of the machine during the run
  o=mach-s-u-d; if(o<0)o=0;
  printf "%.2f %.0f %.0f %.0f %.0f %.0f\n", (c>0)?1e6*s/c:0, 100*s/el, 100*u/el, 100*d/el, 100*mach/el, 100*o/el}')
rss=$(rss_kb $SERVER_PIDS)
line="qps=$(printf %.0f "$qps") completed=$comp lost=$lost cpu_us_per_q=$cpu_us user_us_per_q=$user_us p50_ms=$p50 p99_ms=$p99 avg_ms=$(awk -v a="$avg" 'BEGIN{printf "%.3f", a*1000}') rss_kb=$rss server_cpu=${srv_pct}% upstream_cpu=${up_pct}% dnsperf_cpu=${dn_pct}% machine_cpu=${mach_pct}%/$((NCPU * 100))% other_cpu=${other_pct}% rcodes=$rcodes"
echo "$line"
if [[ -n "${CSV:-}" ]]; then
  [[ -s "$CSV" ]] || echo "server,workload,mode,offered_qps,secs,qps,completed,lost,cpu_us_per_q,user_us_per_q,p50_ms,p99_ms,avg_ms,rss_kb,server_cpu_pct,upstream_cpu_pct,dnsperf_cpu_pct,machine_cpu_pct,other_cpu_pct" > "$CSV"
  echo "${LABEL:-,,},${QPS:-max},$SECS,$(printf %.0f "$qps"),$comp,$lost,$cpu_us,$user_us,$p50,$p99,$(awk -v a="$avg" 'BEGIN{printf "%.3f", a*1000}'),$rss,$srv_pct,$up_pct,$dn_pct,$mach_pct,$other_pct" >> "$CSV"
fi
