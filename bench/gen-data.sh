#!/usr/bin/env bash
# Writes the bench's zone, server configs, block lists and query files into $OUT (default bench/out).
# Deterministic: the same inputs give identical files. Every address is on 127.0.0.0/8.
#
# Env (set by run.sh; defaults shown):
#   OUT=bench/out  UP_IP=127.0.0.2 UP_PORT=5300 (nsd)  UB_IP=127.0.0.3 UB_PORT=5301 (unbound; UBL_PORT=5308
#   for unbound-log)   DM_IP=127.0.0.4 DM_PORT=5302 (dnsmasq)  C2_IP=127.0.0.5 C2_PORT=5303 (c2sink; C2M_PORT=5304 with the
#   1M list, C2B_PORT=5305 for c2sink-base, C2H_PORT=5306 for c2sink-hickory)
#   BIG_LIST=1000000 (entries in the large c2sink list)
#   MISS_FIXED=150000 MISS_SAT=600000 MISS_TRIES=2 (cache-miss names per run, files per mode)
#   FILL=100000 (names of the file that fills each cache before its memory is read)
set -euo pipefail
BENCH="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$BENCH")"
OUT="${OUT:-$BENCH/out}"
mkdir -p "$OUT/conf" "$OUT/queries" "$OUT/run"
OUT="$(cd "$OUT" && pwd)"
UP_IP=${UP_IP:-127.0.0.2} UP_PORT=${UP_PORT:-5300}
UB_IP=${UB_IP:-127.0.0.3} UB_PORT=${UB_PORT:-5301} UBL_PORT=${UBL_PORT:-5308}
DM_IP=${DM_IP:-127.0.0.4} DM_PORT=${DM_PORT:-5302}
C2_IP=${C2_IP:-127.0.0.5} C2_PORT=${C2_PORT:-5303} C2M_PORT=${C2M_PORT:-5304} C2B_PORT=${C2B_PORT:-5305}
C2H_PORT=${C2H_PORT:-5306}
BIG_LIST=${BIG_LIST:-1000000} MISS_FIXED=${MISS_FIXED:-150000} MISS_SAT=${MISS_SAT:-600000} MISS_TRIES=${MISS_TRIES:-2} FILL=${FILL:-100000}
UB_THREADS=${UB_THREADS:-1}
C2_UDP_SOCKETS=${C2_UDP_SOCKETS:-0}

for ip in "$UP_IP" "$UB_IP" "$DM_IP" "$C2_IP"; do
  # a literal address only: a host name such as 127.example.net would be looked up and could leave the machine
  [[ "$ip" =~ ^127(\.[0-9]{1,3}){3}$ ]] || { echo "gen-data: $ip is not an address on 127.0.0.0/8; refusing" >&2; exit 2; }
done

# ---- block list: the 26 3CX domains + 20 generated C2-like names -------------------------------
CONF="$OUT/conf"
grep -v '^[[:space:]]*#' "$ROOT/blocklists/3cx.txt" | tr -d '\r' | awk 'NF {print tolower($1)}' > "$CONF/blocked-domains.txt"
printf '%s\n' akamaicontainer.com msstorage-sync.com adtelemetry-cdn.com pixeltrack-edge.net \
  beacon-metrics.org clickstream-hub.net popunder-network.com ad-serve-static.com tracker-sync.io \
  analytics-collect.biz msftstorage-sync.com cdn-adnetwork.net telemetry-gateway.org \
  fingerprint-js-cdn.com affiliate-redirect.net crypto-miner-pool.com malvertising-host.net \
  phish-login-portal.com spyware-update.org tracking-pixel.info >> "$CONF/blocked-domains.txt"

# ---- everything else is generated in one python pass --------------------------------------------
export CONF QDIR="$OUT/queries" BIG_LIST MISS_FIXED MISS_SAT MISS_TRIES FILL UP_IP
python3 - <<'PY'
import os, random
conf, qdir = os.environ["CONF"], os.environ["QDIR"]
big, miss_fixed, miss_sat = (int(os.environ[k]) for k in ("BIG_LIST", "MISS_FIXED", "MISS_SAT"))
up_ip = os.environ["UP_IP"]
tries = int(os.environ["MISS_TRIES"])

def write(path, lines):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, path)

blocked = [l.strip() for l in open(f"{conf}/blocked-domains.txt") if l.strip()]

# zone bench.test.: 10,000 A, 1,000 CNAME -> A, a wildcard for cache-miss names
z = ["$ORIGIN bench.test.", "$TTL 86400",
     "@ IN SOA ns.bench.test. hostmaster.bench.test. 1 3600 900 604800 86400",
     "@ IN NS ns.bench.test.", f"ns IN A {up_ip}", "@ IN A 127.10.255.254",
     "*.wild IN A 127.10.255.1"]
z += [f"h{i:05d} IN A 127.10.{i // 256}.{i % 256}" for i in range(10000)]
z += [f"c{i:04d} IN CNAME h{(i * 7) % 10000:05d}" for i in range(1000)]
# for the variety workload: names with AAAA (every other one), MX, a long TXT, and two-step CNAME chains
for i in range(2000):
    z.append(f"v{i:04d} IN A 127.11.{i // 256}.{i % 256}")
    if i % 2 == 0:
        z.append(f"v{i:04d} IN AAAA fd00::{i:x}")
    if i % 5 == 0:
        z += [f"v{i:04d} IN MX 10 v{(i + 1) % 2000:04d}.bench.test.", f"v{i:04d} IN MX 20 v{(i + 2) % 2000:04d}.bench.test."]
    if i % 10 == 0:
        z.append(f'v{i:04d} IN TXT "v=spf1 ' + " ".join(f"ip4:127.{j}.0.0/16" for j in range(12)) + ' -all" "' + "k" * 150 + '"')
z += [f"a{i:03d} IN CNAME b{i:03d}" for i in range(500)] + [f"b{i:03d} IN CNAME v{(i * 3) % 2000:04d}" for i in range(500)]
write(f"{conf}/bench.test.zone", z)

# c2sink lists: the small one (3CX + generated) and a large one (the same + synthetic names)
write(f"{conf}/blocklist-small.txt", ["# bench: 3CX + 20 generated"] + blocked)
if not (os.path.exists(f"{conf}/blocklist-1m.txt") and
        sum(1 for _ in open(f"{conf}/blocklist-1m.txt")) == big + 1):
    rnd = random.Random(1)
    tlds = ["com", "net", "org", "info", "io", "biz", "xyz", "top", "ru", "cn"]
    words = ["cdn", "update", "cloud", "sync", "api", "track", "stat", "mail", "login", "secure",
             "data", "static", "img", "ads", "metric", "push", "node", "edge", "relay", "host"]
    out = ["# bench: 1M synthetic"] + blocked
    seen = set(blocked)
    while len(out) - 1 < big:
        i = len(out)
        n = f"{rnd.choice(words)}{rnd.choice(words)}-{i:x}{rnd.randrange(1000)}.{rnd.choice(tlds)}"
        if rnd.random() < 0.3:
            n = f"{rnd.choice(words)}{rnd.randrange(100)}.{n}"
        if n not in seen:
            seen.add(n); out.append(n)
    write(f"{conf}/blocklist-1m.txt", out)

# blocked: every blocked domain, apex + 21 subdomains, shuffled (1,012 names)
b = [f"{d} A" if j == 0 else f"s{j:02d}.{d} A" for j in range(22) for d in blocked]
random.Random(3).shuffle(b)
write(f"{qdir}/blocked.txt", b)
# cached: 1,000 forwarded names (800 A, 100 via CNAME, 100 wildcard), answered from cache after warm-up
f = [f"h{i:05d}.bench.test A" for i in range(800)]
f += [f"c{i:04d}.bench.test A" for i in range(100)]
f += [f"w{i:03d}.wild.bench.test A" for i in range(100)]
random.Random(42).shuffle(f)
write(f"{qdir}/cached.txt", f)
# mixed: 10,000 lines, 99 % cached-forwarded, 1 % blocked
m = [f[i % len(f)] for i in range(9900)] + [b[(i * 13) % len(b)] for i in range(100)]
random.Random(7).shuffle(m)
write(f"{qdir}/mixed.txt", m)
# variety: 10,000 lines of other kinds: A/AAAA (half of them NODATA)/MX/TXT, NXDOMAIN, two-step CNAME chains,
# mixed-case names, and 5 % blocked names of several types (apex and subdomains); answered from cache after warm-up
rv = random.Random(11)
def mixcase(n):
    return "".join(c.upper() if rv.random() < 0.5 else c for c in n)
v = [f"v{rv.randrange(2000):04d}.bench.test A" for _ in range(3000)]
v += [f"v{rv.randrange(2000):04d}.bench.test AAAA" for _ in range(1500)]
v += [f"v{rv.randrange(0, 2000, 5):04d}.bench.test MX" for _ in range(1000)]
v += [f"v{rv.randrange(0, 2000, 10):04d}.bench.test TXT" for _ in range(500)]
v += [f"nx{rv.randrange(1000):04d}.bench.test A" for _ in range(1000)]
v += [f"a{rv.randrange(500):03d}.bench.test A" for _ in range(1000)]
v += [mixcase(f"v{rv.randrange(2000):04d}.bench.test") + " A" for _ in range(1500)]
v += [("" if rv.random() < 0.5 else f"x{rv.randrange(50)}.") + rv.choice(blocked) + " "
      + rv.choice(["A", "AAAA", "HTTPS", "TXT", "MX"]) for _ in range(500)]
rv.shuffle(v)
write(f"{qdir}/variety.txt", v)
# cache misses: unique names under the wildcard, a fresh file for every run (mode x try) of one server
for t in range(1, tries + 1):
    write(f"{qdir}/miss-fixed-{t}.txt", [f"f{t}-{i:07d}.wild.bench.test A" for i in range(miss_fixed)])
    write(f"{qdir}/miss-sat-{t}.txt", [f"s{t}-{i:07d}.wild.bench.test A" for i in range(miss_sat)])
# names no other run asks: sent once after the misses, so that every cache holds its 100k entries when RSS is read
write(f"{qdir}/miss-fill-1.txt", [f"m-{i:07d}.wild.bench.test A" for i in range(int(os.environ["FILL"]))])
PY

# ---- nsd: the authoritative upstream -----------------------------------------------------------
source "$BENCH/lib.sh"  # nsd_conf, unbound_conf
nsd_conf "$UP_IP" "$UP_PORT" "$CONF" "$OUT/run" bench.test. > "$CONF/nsd.conf"

# ---- unbound: forwarder, blocked names answered 0.0.0.0 / :: (always_null) ----------------------
unbound_conf "$UB_IP" "$UB_PORT" "$UP_IP" "$UP_PORT" "$OUT/run" "$UB_THREADS" "$CONF/blocked-domains.txt" \
  "so-reuseport: yes" "msg-cache-size: 64m" "rrset-cache-size: 128m" "cache-min-ttl: 0" "prefetch: no" \
  "minimal-responses: yes" 'local-zone: "test." nodefault' > "$CONF/unbound.conf"

# ---- unbound-log: the same Unbound, also logging every blocked query (like for like with c2sink's events) --
# log-local-actions writes one line per local-zone answer (zone, action, client, name, type) to its logfile.
sed -e "s/^    interface: .*/    interface: ${UB_IP}@${UBL_PORT}/" -e "s/^    port: .*/    port: ${UBL_PORT}/" \
    -e "s#/run/unbound\.#/run/unbound-log.#" -e "s/^    verbosity: 0$/    verbosity: 0\n    log-local-actions: yes/" \
    "$CONF/unbound.conf" > "$CONF/unbound-log.conf"

# ---- dnsmasq: forwarder, blocked names answered 0.0.0.0 / :: (address=/d/#) ---------------------
{
cat <<DM
keep-in-foreground
listen-address=${DM_IP}
port=${DM_PORT}
bind-interfaces
no-resolv
no-hosts
no-poll
server=${UP_IP}#${UP_PORT}
cache-size=10000
dns-forward-max=1000
pid-file=${OUT}/run/dnsmasq.pid
log-facility=${OUT}/run/dnsmasq.log
DM
while read -r d; do echo "address=/${d}/#"; done < "$CONF/blocked-domains.txt"
} > "$CONF/dnsmasq.conf"

# ---- c2sink: the same blocking (sinkhole mode null), events to a file ----------------------------
# (each its own port, so that the servers of a round can all be up and be measured in turn per workload)
for variant in small:small:$C2_PORT 1m:1m:$C2M_PORT base:small:$C2B_PORT hickory:small:$C2H_PORT; do
IFS=: read -r variant list port <<< "$variant"
cat > "$CONF/c2sink-${variant}.toml" <<C2
# c2sink bench config (${list} list); generated by bench/gen-data.sh
[server]
listen = ["${C2_IP}:${port}"]
# 0 = one UDP socket per CPU the process may run on (1 when pinned with taskset)
udp_sockets = ${C2_UDP_SOCKETS}

[upstream]
servers = ["${UP_IP}:${UP_PORT}"]
timeout_ms = 2000

[cache]
size = 100000

[[blocklists]]
name = "bench"
path = "blocklist-${list}.txt"

[sinkhole]
mode = "null"
ttl = 60

[log]
events = "${OUT}/run/c2sink-events.jsonl"
level = "warn"
C2
done
echo "gen-data: wrote $CONF and $OUT/queries ($(wc -l < "$CONF/blocked-domains.txt") blocked domains, ${BIG_LIST}-entry big list)"
