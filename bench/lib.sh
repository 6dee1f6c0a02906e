# bench/lib.sh: starting and stopping the bench's servers. Sourced by run.sh and profile.sh.
# Every process is recorded as "name pid exe" in $PIDS when started and is stopped by that PID only
# (plus its descendants running the same executable, e.g. nsd's workers), never by name.
die() { echo "${0##*/}: ERROR: $*" >&2; exit 2; }
log() { echo "${0##*/}: [$(date +%H:%M:%S) +${SECONDS}s] $*" >&2; }
exe_of() { basename "$(readlink "/proc/$1/exe" 2>/dev/null)" 2>/dev/null; }
descendants() { local c; for c in $(cat /proc/"$1"/task/*/children 2>/dev/null); do echo "$c"; descendants "$c"; done; }
tree_of() { # pid exe: the pid and its descendants running the same executable (nsd forks workers)
  local t="$1" d; for d in $(descendants "$1"); do [[ "$(exe_of "$d")" == "$2" ]] && t="$t $d"; done; echo "$t"; }
runtime_ns() { # pids... -> nanoseconds on a CPU, summed over the processes' threads (the kernel's sum_exec_runtime,
  # which utime+stime are cut from: the same total, without the clock tick's 10 ms steps, which are 1-3 % of a 2 s run)
  local t=0 p f a; for p in $*; do for f in /proc/"$p"/task/*/schedstat; do
    { read -r a _ < "$f"; } 2>/dev/null && t=$((t + a)); done; done; echo "$t"; }
pin_prefix() { # cpus: sets PIN to the command prefix that runs a process on those CPUs ("" = any) at NICE or
  # RT_PRIO when set; every prefix execs, so the PID of "${PIN[@]}" cmd & is the command's own
  PIN=(); [[ -n "${1:-}" ]] && PIN=(taskset -c "$1")
  [[ -n "${RT_PRIO:-}" ]] && PIN=(chrt -f "$RT_PRIO" "${PIN[@]}")
  [[ -n "${NICE:-}" ]] && PIN=(nice -n "$NICE" "${PIN[@]}")
  return 0; }
alive() { local s; s=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null) && [[ "${s%% *}" != Z ]]; }

stop() { # name: stops the process this script started under that name (and its same-exe children)
  local name=$1 pid exe tree p i left
  pid=$(awk -v n="$name" '$1==n {print $2}' "$PIDS" | tail -n1)
  [[ -n "$pid" ]] || return 0
  exe=$(awk -v n="$name" '$1==n {print $3}' "$PIDS" | tail -n1)
  if alive "$pid" && [[ "$(exe_of "$pid")" == "$exe" ]]; then
    tree=$(tree_of "$pid" "$exe")
    kill -TERM $tree 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
      left=""; for p in $tree; do alive "$p" && [[ "$(exe_of "$p")" == "$exe" ]] && left="$left $p"; done
      [[ -z "$left" ]] && break; sleep 0.1
    done
    [[ -n "$left" ]] && { log "$name:$left ignored TERM for 5 s; KILL"; kill -KILL $left 2>/dev/null || true; }
    wait "$pid" 2>/dev/null || true
  elif alive "$pid"; then
    # not the executable recorded: not waited for, which would block until it ends on its own
    log "$name: pid $pid runs $(exe_of "$pid"), not $exe; left alone"
  else
    wait "$pid" 2>/dev/null || true
  fi
  awk -v n="$name" '$1!=n' "$PIDS" > "$PIDS.tmp" && mv "$PIDS.tmp" "$PIDS"
}
stop_all() { local n; for n in $(awk '{print $1}' "$PIDS" 2>/dev/null | tac); do stop "$n"; done; }

port_in_use() { ss -Hlnu "sport = :$2" 2>/dev/null | grep -qE "($1|\*|0\.0\.0\.0):$2\b"; }
wait_dns() { # name pid ip port
  local i tries=$(( ${START_WAIT:-20} * 5 ))
  for ((i = 0; i < tries; i++)); do
    alive "$2" || { tail -n 20 "$OUT/run/$1.out" >&2 || true; die "$1 (pid $2) exited during startup"; }
    dig +tries=1 +time=1 -p "$4" "@$3" h00000.bench.test A 2>/dev/null | grep -q 'status: NOERROR' && return 0
    sleep 0.2
  done
  die "$1 (pid $2) did not answer on $3:$4 within ${START_WAIT:-20} s (START_WAIT= to wait longer)"
}
start() { # name ip port cpus cmd...: starts a server, records "name pid exe", waits until it answers
  # (EXPECT_EXE= names the executable the process ends up running when cmd execs another, e.g. valgrind)
  local name=$1 ip=$2 port=$3 cpus=$4 exe; shift 4
  exe=${EXPECT_EXE:-$(basename "$1")}
  port_in_use "$ip" "$port" && die "$ip:$port is already in use: $(ss -Hlnup "sport = :$port")"
  pin_prefix "$cpus"
  "${PIN[@]}" "$@" </dev/null >"$OUT/run/$name.out" 2>&1 &
  local pid=$!
  echo "$name $pid $exe" >> "$PIDS"
  wait_dns "$name" "$pid" "$ip" "$port"
  # taskset execs the server, so $pid is the server itself
  # on a mismatch end the process here, which was started a moment ago and has just answered, while it is still
  # alive (stop leaves alone a PID that runs another executable, and waiting for it would never end)
  [[ "$(exe_of "$pid")" == "$exe" ]] || { local got; got=$(exe_of "$pid")
    alive "$pid" && { kill -KILL "$pid" 2>/dev/null || true; }
    wait "$pid" 2>/dev/null || true; die "$name: pid $pid runs ${got:-nothing}, expected $exe"; }
  log "$name pid $pid answering on $ip:$port${cpus:+ (CPU $cpus)}"
}
latency_quantiles() { # file q...: those quantiles (0.5, 0.99, ...) of the latencies in a dnsperf -v output, in
  # seconds, on one line ("NA" each when it holds none); nearest rank
  local f=$1; shift
  awk '$1==">" {print $NF}' "$f" | sort -g | awk -v qs="$*" '{a[NR] = $1} END{
    n = split(qs, q, " ")
    for (k = 1; k <= n; k++) {
      i = int(NR * q[k] + 0.999999); if (i < 1) i = 1
      printf "%s%s", (NR ? a[i] : "NA"), (k < n ? " " : "\n")
    }}'
}
pid_of() { awk -v n="$1" '$1==n {print $2}' "$PIDS" | tail -n1; }
nsd_conf() { # ip port zonesdir rundir zone...: an nsd.conf on stdout serving each zone from <zone>zone in zonesdir,
  # one server process, no rate limiting (it would make a forwarder's retries part of what is measured)
  local ip=$1 port=$2 dir=$3 run=$4 z; shift 4
  cat <<NSD
server:
    ip-address: ${ip}@${port}
    port: ${port}
    do-ip6: no
    server-count: 1
    username: ""
    chroot: ""
    zonesdir: "${dir}"
    database: ""
    zonelistfile: "${run}/nsd-zone.list"
    xfrdfile: "${run}/nsd-xfrd.state"
    xfrdir: "${run}"
    pidfile: "${run}/nsd.pid"
    logfile: "${run}/nsd.log"
    verbosity: 0
    hide-version: yes
    rrl-ratelimit: 0
    rrl-whitelist-ratelimit: 0
remote-control:
    control-enable: no
NSD
  for z in "$@"; do printf 'zone:\n    name: "%s"\n    zonefile: "%szone"\n' "$z" "$z"; done
}
unbound_conf() { # ip port up_ip up_port rundir threads blocked_domains_file [server line...]: an unbound.conf on
  # stdout that forwards everything to up_ip@up_port and answers each listed domain 0.0.0.0 / :: (always_null)
  local ip=$1 port=$2 up_ip=$3 up_port=$4 run=$5 threads=$6 list=$7 line d; shift 7
  cat <<UB
server:
    interface: ${ip}@${port}
    port: ${port}
    do-ip6: no
    access-control: 127.0.0.0/8 allow
    outgoing-interface: ${ip}
    do-not-query-localhost: no
    num-threads: ${threads}
    username: ""
    chroot: ""
    directory: "${run}"
    pidfile: "${run}/unbound.pid"
    logfile: "${run}/unbound.log"
    use-syslog: no
    verbosity: 0
    module-config: "iterator"
UB
  for line in "$@"; do echo "    $line"; done
  while read -r d; do echo "    local-zone: \"${d}.\" always_null"; done < "$list"
  cat <<UB
remote-control:
    control-enable: no
forward-zone:
    name: "."
    forward-addr: ${up_ip}@${up_port}
UB
}
