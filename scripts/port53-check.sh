#!/usr/bin/env bash
# Shows, on this machine, each documented way of serving port 53 without running as root, and checks each
# with dig: (1) CAP_NET_BIND_SERVICE as an ambient capability (what the systemd unit does), (2) the
# net.ipv4.ip_unprivileged_port_start sysctl (what Docker and Kubernetes' sysctl do), (3) start as root and
# drop to [server] user after binding. Each runs in its own loopback-only network namespace, so port 53 is
# free and nothing leaves the machine.
#
# Needs root, dig, setpriv, unshare. Usage: scripts/port53-check.sh [path/to/c2sink] (default: builds debug)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
bin="${1:-}"
if [ -z "$bin" ]; then
    (cd "$repo" && cargo build -q)
    bin="$repo/target/debug/c2sink"
fi
[ "$(id -u)" -eq 0 ] || { echo "port53-check: needs root" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chmod 0755 "$work"
printf 'evil.example\n' >"$work/c2.txt"
chmod 0644 "$work/c2.txt"
write_config() { # $1 = extra [server] line
    cat >"$work/c2sink.toml" <<TOML
[server]
listen = ["127.0.0.1:53"]
udp_sockets = 1
$1
[upstream]
servers = ["127.0.0.1:9"]
timeout_ms = 200
[[blocklists]]
name = "c2"
path = "c2.txt"
TOML
    chmod 0644 "$work/c2sink.toml"
}
export bin work

run_case() { # $1 = name, $2 = how to start (shell snippet using $bin and $work), $3 = expected uid
    local name="$1" start="$2" want_uid="$3"
    unshare --net --pid --mount --mount-proc --fork --kill-child bash -euo pipefail -c '
        ip link set lo up
        '"$start"' serve --config "$work/c2sink.toml" >"$work/log" 2>&1 &
        pid=$!
        for _ in $(seq 50); do grep -q "c2sink ready" "$work/log" && break; sleep 0.1; done
        grep -q "c2sink ready" "$work/log" || { cat "$work/log" >&2; exit 1; }
        uid=$(awk "/^Uid:/ {print \$2}" /proc/$pid/status)
        a=$(dig @127.0.0.1 -p 53 +short +time=2 +tries=1 evil.example A)
        [ "$a" = 0.0.0.0 ] || { echo "answer: $a" >&2; exit 1; }
        [ "$uid" = "'"$want_uid"'" ] || { echo "uid $uid" >&2; exit 1; }
        kill -TERM $pid; wait $pid
        echo "port53-check: '"$name"': bound 127.0.0.1:53, serving as uid $uid, dig ok"
    '
}

write_config ""
run_case "ambient CAP_NET_BIND_SERVICE (systemd AmbientCapabilities)" \
    'setpriv --reuid 65534 --regid 65534 --clear-groups --inh-caps +net_bind_service --ambient-caps +net_bind_service "$bin"' 65534
run_case "ip_unprivileged_port_start=0 (Docker default, Kubernetes sysctl)" \
    'echo 0 >/proc/sys/net/ipv4/ip_unprivileged_port_start; setpriv --reuid 65534 --regid 65534 --clear-groups "$bin"' 65534
write_config 'user = "65534:65534"'
run_case "started as root, [server] user drops after binding" '"$bin"' 65534
# And the negative: no capability, default sysctl -> refused, with the key named.
write_config ""
if unshare --net bash -c 'ip link set lo up; setpriv --reuid 65534 --regid 65534 --clear-groups "$bin" serve --config "$work/c2sink.toml"' >"$work/log" 2>&1; then
    echo "port53-check: FAIL: an unprivileged process bound port 53 with no capability" >&2
    exit 1
fi
grep -q "server.listen: cannot bind 127.0.0.1:53" "$work/log" || { cat "$work/log" >&2; exit 1; }
echo "port53-check: without any of them: refused ($(grep -o 'cannot bind.*' "$work/log" | head -1))"
echo "port53-check: PASS"
