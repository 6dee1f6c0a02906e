#!/usr/bin/env bash
# bench/run.sh: c2sink, Unbound and dnsmasq side by side on loopback, same upstream, same load, one table.
#
# In each of ROUNDS rounds, for each server in turn (the order reversed every other round, so that a slow spell
# of the machine does not fall on one server only): start it fresh (pinned to SERVER_CPUS), warm its cache, then
# for each workload
#   fixed: dnsperf at a fixed offered load (-Q): server CPU-us per query, p50/p99 latency, lost queries;
#   sat:   dnsperf as fast as the server answers (-q 100): saturation QPS;
# then stop it. The table shows each cell's median over the rounds (lost queries: the sum). nsd (authoritative
# for bench.test.) is the upstream of all of them.
# Everything is on 127.0.0.0/8; only processes this script started are stopped, by PID.
#
# Env (defaults):
#   QUICK=0           1: one short round, 2 side-by-side runs and 2 pairs in turns (about 2 minutes built)
#   ROUNDS=3          rounds (QUICK: 1)
#   FIXED_SECS=2 SAT_SECS=1    seconds per fixed-rate / saturation run (QUICK: the same); the noise between runs
#                     is the machine's drift over minutes, which longer runs do not narrow: more rounds do
#   FILL=100000       after the misses of round 1, each server measured on misses (not the floor, dnsmasq or
#                     unbound-log) is sent this many names no run asked before, as fast as it answers, so that its
#                     100k-entry cache is full when its memory (RSS) is read; 0 = off (RSS after the misses)
#   FIXED_QPS=30000   offered load of fixed-rate runs; MISS_QPS=10000 for the cache-miss workload
#   SERVERS="c2sink c2sink-1m unbound unbound-log dnsmasq floor"   c2sink-1m = c2sink with a 1,000,000-domain list;
#                     unbound-log = Unbound that also logs each blocked query (log-local-actions), as c2sink
#                     does: measured on blocked names only, the like-for-like yardstick for c2sink's event log;
#                     floor = the do-nothing UDP responder of issue 7 (examples/floor.rs: one recv_from and one
#                     send_to per query, a canned A record), measured at the fixed load only (not misses)
#   ONCE="dnsmasq unbound-log"   servers measured in the first round only (references, not goals)
#   WORKLOADS="blocked cached mixed variety miss"   MODES="fixed sat"
#   SERVER_CPUS=1 DNSPERF_CPUS=0 UPSTREAM_CPUS=0   taskset CPU lists ("" = not pinned)
#   NICE=             e.g. -20: run servers, nsd and dnsperf at this nice level, so that other work on a shared
#                     machine takes little CPU from them (it still pollutes caches: note other_cpu)
#   RT_PRIO=          e.g. 10: the same with SCHED_FIFO (chrt -f); the kernel still leaves 5 % to others
#   OTHER_MAX=25      runs where other processes used more CPU (% of one core) are marked '*' and left out of
#                     the median when the same cell has quieter runs
#   C2SINK_BIN=       use this binary instead of `cargo build --release`
#   C2SINK_BASE_BIN=  a second c2sink binary, run as server "c2sink-base" (before/after comparisons)
#   server "c2sink-hickory": c2sink's pipeline served by hickory-server (examples/hickory_frontend.rs), the
#                     yardstick for owning the socket loops; built here when asked for (C2SINK_HICKORY_BIN=)
#   PROTO=udp         tcp: dnsperf -m tcp (each of its clients keeps one connection, -q queries pipelined on it)
#   C2_UDP_SOCKETS=0  c2sink [server] udp_sockets (0 = one per CPU it may run on)
#   PAIRED="c2sink-1m unbound"   after the rounds, each of these servers and c2sink run side by side: both pinned to
#                     SERVER_CPUS at once, each sent PAIRED_QPS by its own dnsperf in the same seconds, so that
#                     the machine's swings (±15 % from one run to the next here) fall on both alike; their CPU
#                     per query is compared run by run. "" = off
#   PAIRED_RUNS=6 PAIRED_SECS=1 PAIRED_QPS=15000   runs per workload, seconds a run, offered load per server
#   PAIRED_WORKLOADS="blocked cached mixed"   the goals' CPU workloads (not misses: repeated runs would find
#                     them cached)
#   PAIRED_SLICE_US=100   the scheduler slice given to a partner that is not c2sink (bench/slice.py): the one
#                     c2sink's query threads ask for (src/sched.rs), so that on the shared core neither server
#                     preempts the other more readily; 0 = leave the partner as it runs alone
#   TURNS="unbound"   after that, each of these servers and c2sink in turns: both pinned to SERVER_CPUS, but only one
#                     sent load at a time, FIXED_QPS for TURNS_SECS (the goals' own set-up: each server alone on
#                     its core), which one first alternating; TURNS_RUNS pairs per workload of PAIRED_WORKLOADS.
#                     Each pair compares CPU per query and p99 (p50 for information) of two runs a second apart:
#                     more pairs, closer in time, than the rounds give, for the p99 that three rounds cannot
#                     settle. "" = off
#   TURNS_RUNS=8 TURNS_SECS=1
#   CLIENTS=1         dnsperf -c (client sockets, each with its own source port) in the fixed-rate, side-by-side
#                     and in-turns runs: many clients, as on a LAN, instead of one socket (saturation: -c 1)
#   SKIP_INSTALL=0    1: do not check/install packages
#   OUT=bench/out     generated configs, query files, logs and results
set -euo pipefail
BENCH="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$BENCH")"
export OUT="${OUT:-$BENCH/out}"
die() { echo "run.sh: ERROR: $*" >&2; exit 2; }
log() { echo "run.sh: [$(date +%H:%M:%S) +${SECONDS}s] $*" >&2; }

QUICK=${QUICK:-0}
if [[ "$QUICK" == 1 ]]; then FIXED_SECS=${FIXED_SECS:-2} SAT_SECS=${SAT_SECS:-1} ROUNDS=${ROUNDS:-1} PAIRED_RUNS=${PAIRED_RUNS:-2} TURNS_RUNS=${TURNS_RUNS:-2}
else FIXED_SECS=${FIXED_SECS:-2} SAT_SECS=${SAT_SECS:-1} ROUNDS=${ROUNDS:-3}; fi
export FILL=${FILL:-100000}
FIXED_QPS=${FIXED_QPS:-30000} MISS_QPS=${MISS_QPS:-10000}
SERVERS=${SERVERS:-"c2sink c2sink-1m unbound unbound-log dnsmasq floor"}
WORKLOADS=${WORKLOADS:-"blocked cached mixed variety miss"}
MODES=${MODES:-"fixed sat"}
SERVER_CPUS=${SERVER_CPUS-1} DNSPERF_CPUS=${DNSPERF_CPUS-0} UPSTREAM_CPUS=${UPSTREAM_CPUS-0}
OTHER_MAX=${OTHER_MAX:-25} ONCE=${ONCE-dnsmasq unbound-log}
PAIRED=${PAIRED-c2sink-1m unbound} PAIRED_RUNS=${PAIRED_RUNS:-6} PAIRED_SECS=${PAIRED_SECS:-1} PAIRED_QPS=${PAIRED_QPS:-15000}
PAIRED_WORKLOADS=${PAIRED_WORKLOADS:-"blocked cached mixed"}
PAIRED_SLICE_US=${PAIRED_SLICE_US-100}
TURNS=${TURNS-unbound} TURNS_RUNS=${TURNS_RUNS:-8} TURNS_SECS=${TURNS_SECS:-1}
[[ "$PAIRED_SLICE_US" =~ ^[0-9]+$ ]] || die "PAIRED_SLICE_US must be a number of microseconds, not '$PAIRED_SLICE_US'"
export UP_IP=${UP_IP:-127.0.0.2} UP_PORT=${UP_PORT:-5300} UB_IP=${UB_IP:-127.0.0.3} UB_PORT=${UB_PORT:-5301}
export UBL_PORT=${UBL_PORT:-5308} DM_IP=${DM_IP:-127.0.0.4} DM_PORT=${DM_PORT:-5302} C2_IP=${C2_IP:-127.0.0.5} C2_PORT=${C2_PORT:-5303}
export C2M_PORT=${C2M_PORT:-5304} C2B_PORT=${C2B_PORT:-5305} C2H_PORT=${C2H_PORT:-5306}
export FL_IP=${FL_IP:-127.0.0.6} FL_PORT=${FL_PORT:-5307}
export PROTO=${PROTO:-udp}
[[ "$PROTO" == udp || "$PROTO" == tcp ]] || die "PROTO must be udp or tcp"
if [[ "$PROTO" == tcp && " $SERVERS " == *" floor "* ]]; then
  log "PROTO=tcp: leaving out the floor (it answers UDP only)"
  SERVERS=$(tr ' ' '\n' <<< "$SERVERS" | grep -vx floor | tr '\n' ' ')
fi
export C2_UDP_SOCKETS=${C2_UDP_SOCKETS:-0}
for ip in "$UP_IP" "$UB_IP" "$DM_IP" "$C2_IP" "$FL_IP"; do
  # a literal address only: a host name such as 127.example.net would be looked up and could leave the machine
  [[ "$ip" =~ ^127(\.[0-9]{1,3}){3}$ ]] || die "address $ip is not on 127.0.0.0/8; this bench only runs on loopback"
done
if [[ "$(nproc)" -lt 2 && -n "$SERVER_CPUS$DNSPERF_CPUS" ]]; then
  log "only one CPU: not pinning"; SERVER_CPUS="" DNSPERF_CPUS="" UPSTREAM_CPUS=""
fi

# ---- tools, binary, data ------------------------------------------------------------------------
export PATH="$PATH:/usr/sbin:/sbin"
export MISS_TRIES=1
export MISS_FIXED=$(( MISS_QPS * (FIXED_SECS + 1) * 11 / 10 )) MISS_SAT=$(( 100000 * (SAT_SECS + 1) ))
# The packages and the data are made while cargo builds: on a clean clone the release build is most of the
# wait, and its last minutes (fat LTO) keep only one core busy.
mkdir -p "$OUT"
log "installing what is missing and generating configs and query files in $OUT (log: $OUT/prepare.log), meanwhile:"
( { [[ "${SKIP_INSTALL:-0}" == 1 ]] || "$BENCH/install.sh"; } && "$BENCH/gen-data.sh" ) > "$OUT/prepare.log" 2>&1 &
PREPARE=$!
if [[ -z "${C2SINK_BIN:-}" ]]; then
  log "cargo build --release"
  (cd "$ROOT" && cargo build --release --quiet) || { wait "$PREPARE" || true; die "cargo build --release failed"; }
  C2SINK_BIN="$ROOT/target/release/c2sink"
fi
wait "$PREPARE" || { tail -n 30 "$OUT/prepare.log" >&2; die "installing the tools or generating the data failed"; }
cat "$OUT/prepare.log" >&2
[[ -x "$C2SINK_BIN" ]] || die "no c2sink binary at $C2SINK_BIN"
if [[ " $SERVERS " == *" c2sink-hickory "* && -z "${C2SINK_HICKORY_BIN:-}" ]]; then
  log "cargo build --release --example hickory_frontend"
  (cd "$ROOT" && cargo build --release --quiet --example hickory_frontend) || die "building hickory_frontend failed"
  C2SINK_HICKORY_BIN="$ROOT/target/release/examples/hickory_frontend"
fi
if [[ " $SERVERS " == *" floor "* && -z "${FLOOR_BIN:-}" ]]; then
  # rustc, not cargo: the floor needs only std, and `cargo build --example` would first compile every
  # dev-dependency (70 s on a clean clone here, against under a second)
  log "rustc -C opt-level=3 examples/floor.rs"
  mkdir -p "$OUT/bin"
  "${RUSTC:-rustc}" --edition 2024 -C opt-level=3 -C codegen-units=1 -o "$OUT/bin/floor" "$ROOT/examples/floor.rs" \
    || die "building the floor responder failed"
  FLOOR_BIN="$OUT/bin/floor"
fi
[[ " $SERVERS " != *" c2sink-hickory "* || -x "${C2SINK_HICKORY_BIN:-}" ]] || die "no hickory_frontend binary at ${C2SINK_HICKORY_BIN:-}"
[[ " $SERVERS " != *" floor "* || -x "${FLOOR_BIN:-}" ]] || die "no floor binary at ${FLOOR_BIN:-}"
mkdir -p "$OUT/results" "$OUT/run"
STAMP=$(date +%Y%m%d-%H%M%S)
CSV="$OUT/results/run-$STAMP.csv" PCSV="$OUT/results/paired-$STAMP.csv"
PIDS="$OUT/run/bench.pids"
: > "$PIDS"

# ---- processes: started here, stopped here, by PID ---------------------------------------------
source "$BENCH/lib.sh"
trap 'rc=$?; stop_all; exit $rc' EXIT
trap 'exit 130' INT TERM

addr_of() { case "$1" in
  c2sink) echo "$C2_IP $C2_PORT" ;; c2sink-1m) echo "$C2_IP $C2M_PORT" ;; c2sink-base) echo "$C2_IP $C2B_PORT" ;; c2sink-hickory) echo "$C2_IP $C2H_PORT" ;; floor) echo "$FL_IP $FL_PORT" ;; unbound) echo "$UB_IP $UB_PORT" ;; unbound-log) echo "$UB_IP $UBL_PORT" ;; dnsmasq) echo "$DM_IP $DM_PORT" ;;
  *) die "unknown server '$1' (c2sink, c2sink-1m, c2sink-base, c2sink-hickory, unbound, unbound-log, dnsmasq, floor)" ;; esac; }
start_server() { local ip port; read -r ip port < <(addr_of "$1")
  case "$1" in
    c2sink)    start "$1" "$ip" "$port" "$SERVER_CPUS" "$C2SINK_BIN" serve --config "$OUT/conf/c2sink-small.toml" ;;
    c2sink-1m) start "$1" "$ip" "$port" "$SERVER_CPUS" "$C2SINK_BIN" serve --config "$OUT/conf/c2sink-1m.toml" ;;
    c2sink-base) [[ -x "${C2SINK_BASE_BIN:-}" ]] || die "c2sink-base needs C2SINK_BASE_BIN (a binary to compare with)"
               start "$1" "$ip" "$port" "$SERVER_CPUS" "$C2SINK_BASE_BIN" serve --config "$OUT/conf/c2sink-base.toml" ;;
    c2sink-hickory) start "$1" "$ip" "$port" "$SERVER_CPUS" "$C2SINK_HICKORY_BIN" "$OUT/conf/c2sink-hickory.toml" ;;
    floor)     start "$1" "$ip" "$port" "$SERVER_CPUS" "$FLOOR_BIN" "$ip:$port" ;;
    unbound)   start "$1" "$ip" "$port" "$SERVER_CPUS" "$(command -v unbound)" -d -c "$OUT/conf/unbound.conf" ;;
    unbound-log) start "$1" "$ip" "$port" "$SERVER_CPUS" "$(command -v unbound)" -d -c "$OUT/conf/unbound-log.conf" ;;
    dnsmasq)   start "$1" "$ip" "$port" "$SERVER_CPUS" "$(command -v dnsmasq)" -C "$OUT/conf/dnsmasq.conf" ;;
  esac; }

# ---- the runs -----------------------------------------------------------------------------------
for s in $SERVERS $PAIRED $TURNS; do addr_of "$s" >/dev/null; done
[[ " $PAIRED $TURNS " != *" c2sink "* ]] || die "PAIRED and TURNS list the servers compared with c2sink, not c2sink itself"
log "starting nsd (upstream) on $UP_IP:$UP_PORT"
start nsd "$UP_IP" "$UP_PORT" "$UPSTREAM_CPUS" "$(command -v nsd)" -d -c "$OUT/conf/nsd.conf"
NSD_PIDS=$(tree_of "$(pid_of nsd)" nsd)

qfile() { # workload mode: every server starts with an empty cache, so each round can replay the same misses
  case "$1" in blocked|cached|mixed|variety) echo "$OUT/queries/$1.txt" ;; miss) echo "$OUT/queries/miss-$2-1.txt" ;; # $2: fixed, sat, fill
  *) die "unknown workload '$1' (blocked, cached, mixed, variety, miss)" ;; esac; }

warm_server() { # server: fills its cache with what the fixed runs will ask
  local ip port dp
  read -r ip port < <(addr_of "$1")
  dp=(taskset -c "${DNSPERF_CPUS:-0-$(($(nproc) - 1))}" dnsperf -s "$ip" -p "$port" -q 50 -t 2)
  if [[ "$1" == unbound-log ]]; then # measured on blocked names only: nothing to cache
    "${dp[@]}" -d "$OUT/queries/blocked.txt" -n 1 >/dev/null 2>&1 || die "warm-up of $1 failed"
    return 0
  fi
  "${dp[@]}" -d "$OUT/queries/cached.txt" -n 3 >/dev/null 2>&1 || die "warm-up of $1 failed"
  "${dp[@]}" -d "$OUT/queries/blocked.txt" -n 1 >/dev/null 2>&1 || true
  [[ " $WORKLOADS " == *" variety "* ]] && { "${dp[@]}" -d "$OUT/queries/variety.txt" -n 2 >/dev/null 2>&1 || die "warm-up of $1 failed"; }
  return 0
}

declare -A ASKED=()  # server -> cache-miss names it was sent in round 1
measure() { # server round workload mode [query file]
  local server=$1 round=$2 wl=$3 mode=$4 qf=${5:-} ip port qps secs=$SAT_SECS lat=0 passes="" line clients=1
  [[ -n "$qf" ]] || qf=$(qfile "$wl" "$mode")
  read -r ip port < <(addr_of "$server")
  qps=""
  if [[ "$mode" == fixed ]]; then
    secs=$FIXED_SECS; lat=1; qps=$FIXED_QPS; clients=${CLIENTS:-1}; [[ "$wl" == miss ]] && qps=$MISS_QPS
  fi
  # the fill: the whole file once, as fast as the server answers (the time is only a bound)
  [[ "$mode" == fill ]] && { secs=120; passes=1; }
  line=$(SERVER_PIDS="$(pid_of "$server")" UPSTREAM_PIDS="$NSD_PIDS" QPS="$qps" CLIENTS="$clients" PASSES="$passes" LATENCY=$lat PROTO="$PROTO" DNSPERF_CPUS="$DNSPERF_CPUS" RT_PRIO="${RT_PRIO:-}" NICE="${NICE:-}" \
    CSV="$CSV" LABEL="$server,$wl,$mode" "$BENCH/measure.sh" "$ip" "$port" "$qf" "$secs") \
    || die "measurement $server/$wl/$mode failed"
  log "round $round: $server $wl $mode: $line"
  [[ "$wl" == miss && $round == 1 ]] && ASKED[$server]=$(( ${ASKED[$server]:-0} + $(sed -E 's/.*completed=([0-9]+).*/\1/' <<< "$line") ))
  # the logs grow by about 250 bytes a blocked query: emptied between runs (both are opened for appending)
  [[ -f "$OUT/run/c2sink-events.jsonl" ]] && : > "$OUT/run/c2sink-events.jsonl"
  [[ -f "$OUT/run/unbound-log.log" ]] && : > "$OUT/run/unbound-log.log"
  return 0
}

# In each round every server is started fresh (empty cache, so each round can replay the same misses) and
# warmed; then each workload and mode is measured on every server in turn, so that the runs a ratio compares
# lie seconds apart, not minutes (this VM's speed drifts). The idle servers wait on their own addresses.
for ((round = 1; round <= ROUNDS; round++)); do
  order=$SERVERS
  (( round % 2 == 0 )) && order=$(tr ' ' '\n' <<< "$SERVERS" | tac | tr '\n' ' ')
  active=""
  for server in $order; do
    [[ $round -gt 1 && " $ONCE " == *" $server "* ]] && continue
    start_server "$server"
    [[ "$server" == floor ]] || warm_server "$server"
    active="$active $server"
  done
  sleep 0.5
  for wl in $WORKLOADS; do
    for mode in $MODES; do
      for server in $active; do
        # the floor answers every name alike: only its CPU at the fixed load is a reference
        [[ "$server" == floor && ( "$mode" != fixed || "$wl" == miss ) ]] && continue
        # logging differs only where names are blocked
        [[ "$server" == unbound-log && "$wl" != blocked ]] && continue
        measure "$server" "$round" "$wl" "$mode"
      done
    done
  done
  if (( round == 1 && FILL > 0 )) && [[ " $WORKLOADS " == *" miss "* ]]; then
    for server in $active; do
      case "$server" in floor|dnsmasq|unbound-log) continue ;; esac
      # as many new names as make FILL with the misses it already answered: Unbound's cache (sized in MB)
      # would hold any number, c2sink's holds its 100k-entry [cache] size, so both hold about as many
      n=$(( FILL - ${ASKED[$server]:-0} ))
      (( n > 0 )) || continue
      head -n "$n" "$(qfile miss fill)" > "$OUT/queries/fill-$server.txt"
      measure "$server" "$round" miss fill "$OUT/queries/fill-$server.txt"
    done
  fi
  for server in $active; do stop "$server"; done
done

p50_p99_us() { # dnsperf -v output file: the median and 99th percentile of its queries' latencies, in µs
  latency_quantiles "$1" 0.50 0.99 | awk '$1 == "NA" {print "NA NA"; next} {printf "%.0f %.0f\n", $1 * 1e6, $2 * 1e6}'
}
paired_run() { # mode partner workload run: c2sink and partner, one dnsperf each; mode "side": at PAIRED_QPS in
  # the same seconds; "turns": one after the other at FIXED_QPS, each alone on the core
  local mode=$1 partner=$2 wl=$3 run=$4 server ip port q secs=$PAIRED_SECS qps=$PAIRED_QPS dps=()
  local -A pid=() t0=() ns=() p50=() p99=()
  [[ "$mode" == turns ]] && secs=$TURNS_SECS qps=$FIXED_QPS
  # -v: each query's latency, for p50 and p99 (side by side from the same seconds: a VM stall lands on both)
  local dp_args=(-c "${CLIENTS:-1}" -q 100 -t 5 -Q "$qps" -l "$secs" -v -d "$(qfile "$wl" fixed)")
  local order=(c2sink "$partner")
  # which one goes first alternates, so that neither server always gets the head start
  (( run % 2 == 0 )) && order=("$partner" c2sink)
  pin_prefix "$DNSPERF_CPUS"
  for server in "${order[@]}"; do pid[$server]=$(pid_of "$server"); t0[$server]=$(runtime_ns "${pid[$server]}"); done
  for server in "${order[@]}"; do
    read -r ip port < <(addr_of "$server")
    [[ "$mode" == turns ]] && t0[$server]=$(runtime_ns "${pid[$server]}")
    "${PIN[@]}" dnsperf -s "$ip" -p "$port" "${dp_args[@]}" > "$OUT/run/paired-$server.txt" 2>&1 & dps+=($!)
    if [[ "$mode" == turns ]]; then
      wait $! || die "$mode dnsperf against $server failed"
      ns[$server]=$(runtime_ns "${pid[$server]}")
    fi
  done
  if [[ "$mode" == side ]]; then
    wait "${dps[0]}" && wait "${dps[1]}" || die "paired dnsperf failed"
    for server in "${order[@]}"; do ns[$server]=$(runtime_ns "${pid[$server]}"); done
  fi
  for server in "${order[@]}"; do
    q=$(awk '/Queries completed/{print $3}' "$OUT/run/paired-$server.txt")
    (( ${q:-0} > 0 )) || die "$mode run $partner/$wl/$run: $server answered nothing"
    ns[$server]=$(( (ns[$server] - t0[$server]) / q ))
    read -r "p50[$server]" "p99[$server]" < <(p50_p99_us "$OUT/run/paired-$server.txt")
  done
  echo "$partner,$wl,$run,${ns[c2sink]},${ns[$partner]},${p99[c2sink]},${p99[$partner]},$mode,${p50[c2sink]},${p50[$partner]}" >> "$PCSV"
  log "$mode $run: $wl c2sink ${ns[c2sink]} ns/query, $partner ${ns[$partner]} ns/query; p99 ${p99[c2sink]} / ${p99[$partner]} µs"
  [[ -f "$OUT/run/c2sink-events.jsonl" ]] && : > "$OUT/run/c2sink-events.jsonl"
  return 0
}
pair_phase() { # mode runs partners...: c2sink and each partner started together, warmed, compared run by run
  local mode=$1 runs=$2 partner server wl run; shift 2
  for partner in "$@"; do
    for server in c2sink "$partner"; do start_server "$server"; [[ "$server" == floor ]] || warm_server "$server"; done
    # c2sink's query threads ask for a short slice: beside a partner without one, each of c2sink's wake-ups
    # would preempt it and c2sink would batch less than it does alone (docs/performance.md). In turns each
    # runs alone, where the slice changes nothing measurable.
    if [[ "$mode" == side && "$PAIRED_SLICE_US" != 0 && "$partner" != c2sink* ]]; then
      python3 "$BENCH/slice.py" "$(pid_of "$partner")" "$PAIRED_SLICE_US" || die "cannot set $partner's slice"
      log "PAIRED: $partner runs with a ${PAIRED_SLICE_US} µs scheduler slice, as c2sink's query threads"
    fi
    sleep 0.5
    for wl in $PAIRED_WORKLOADS; do
      [[ "$wl" == miss ]] && { log "$mode: misses left out (repeated runs would find them cached)"; continue; }
      for ((run = 1; run <= runs; run++)); do paired_run "$mode" "$partner" "$wl" "$run"; done
    done
    stop "$partner"; stop c2sink
  done
}
[[ -n "$PAIRED$TURNS" ]] && echo "partner,workload,run,c2sink_ns_per_q,partner_ns_per_q,c2sink_p99_us,partner_p99_us,mode,c2sink_p50_us,partner_p50_us" > "$PCSV"
[[ -n "$PAIRED" ]] && pair_phase side "$PAIRED_RUNS" $PAIRED
[[ -n "$TURNS" ]] && pair_phase turns "$TURNS_RUNS" $TURNS
stop nsd
trap - EXIT

PAIRED_ARGS=()
[[ -n "$PAIRED$TURNS" ]] && PAIRED_ARGS=(--paired "$PCSV" --paired-qps "$PAIRED_QPS" --paired-slice-us "$PAIRED_SLICE_US"
                                        --turns-qps "$FIXED_QPS" --turns-secs "$TURNS_SECS")

# ---- the table ----------------------------------------------------------------------------------
{
  echo "c2sink bench $STAMP on $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), kernel $(uname -r)"
  echo "server on CPU ${SERVER_CPUS:-any}, dnsperf on CPU ${DNSPERF_CPUS:-any}, nsd on CPU ${UPSTREAM_CPUS:-any};" \
       "${RT_PRIO:+real-time priority $RT_PRIO (chrt -f) for servers and dnsperf, }${NICE:+nice $NICE for servers and dnsperf, }fixed runs ${FIXED_SECS}s at ${FIXED_QPS} qps (miss: ${MISS_QPS} qps) from ${CLIENTS:-1} client socket(s), saturation runs ${SAT_SECS}s with -c 1 -q 100; over ${PROTO^^};" \
       "median of $ROUNDS round(s)${ONCE:+ ($ONCE: first round only)}"
  python3 "$BENCH/report.py" "$CSV" --other-max "$OTHER_MAX" --fixed-qps "$FIXED_QPS" --miss-qps "$MISS_QPS" \
    "${PAIRED_ARGS[@]}"
} | tee "$OUT/results/run-$STAMP.md"
log "done in ${SECONDS}s; raw rows: $CSV"
