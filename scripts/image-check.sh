#!/usr/bin/env bash
# Proves what the container image holds and that it runs, without Docker.
#
# It replays the Dockerfile itself: every RUN of the build stage runs here (in a copy of the build context,
# as WORKDIR), every COPY of the final stage fills an empty root folder, and USER, EXPOSE, STOPSIGNAL,
# HEALTHCHECK, ENTRYPOINT and CMD are read from it. An instruction it does not know fails the check, so the
# Dockerfile and this script cannot drift apart.
#
# Then it starts ENTRYPOINT+CMD in that root as the image's USER, with nothing else present (no libc, no /etc,
# no /proc, no /dev), in a fresh network namespace that has only loopback (as a container has its own
# network; nothing can leave it), with net.ipv4.ip_unprivileged_port_start=0 as Docker sets it, and checks:
# the binary is static, the shipped config passes `check`, dig gets the health answer and a sinkhole answer
# over UDP and TCP on port 53, the admin port answers, the HEALTHCHECK command exits 0, and STOPSIGNAL stops
# it cleanly. Prints the binary size.
#
# Needs: root (namespaces, chroot), dig (scripts/install-test-tools.sh), ip, readelf. Usage:
#   scripts/image-check.sh            # build dir kept in target/image-check (like Docker's cache mounts)
#   IMAGE_CHECK_FRESH=1 scripts/image-check.sh   # start from an empty build dir
set -euo pipefail
umask 022

repo=$(cd "$(dirname "$0")/.." && pwd)
dockerfile="$repo/Dockerfile"
work="$repo/target/image-check"
ctx="$work/src"      # the build stage's WORKDIR
root="$work/root"    # the final stage's filesystem

die() { echo "image-check: $*" >&2; exit 1; }
say() { echo "image-check: $*"; }

[ "$(id -u)" -eq 0 ] || die "needs root (unshare, chroot, uid change)"
for t in dig ip readelf unshare; do
    command -v "$t" >/dev/null || die "needs $t (scripts/install-test-tools.sh installs dig)"
done

# --- Read the Dockerfile: join continued lines, drop comments and blank lines. ---
instructions=()
cur=""
while IFS= read -r line || [ -n "$line" ]; do
    if [ -z "$cur" ]; then
        case "$line" in ''|'#'*) continue ;; esac
    fi
    if [[ "$line" =~ \\$ ]]; then
        cur+="${line%\\} "
    else
        cur+="$line"
        instructions+=("$cur")
        cur=""
    fi
done <"$dockerfile"
[ -z "$cur" ] || die "Dockerfile ends inside a continued line"

# Splits a one-line JSON array of plain strings into NUL-separated words.
json_words() {
    local s="$1"
    [[ "$s" =~ ^\[.*\]$ ]] || die "expected an exec-form JSON array, got: $s"
    [[ "$s" != *\\* ]] || die "escapes in JSON arrays are not supported: $s"
    s="${s#[}"; s="${s%]}"
    local rest="$s" word
    while [[ "$rest" =~ ^[[:space:]]*\"([^\"]*)\"[[:space:]]*(,(.*))?$ ]]; do
        word="${BASH_REMATCH[1]}"
        printf '%s\0' "$word"
        rest="${BASH_REMATCH[3]:-}"
        [ -n "${BASH_REMATCH[2]}" ] || { rest=""; break; }
    done
    [ -z "${rest//[[:space:]]/}" ] || die "cannot read JSON array: $1"
}

# --- Prepare the build dir: keep only target/ (Docker's cache mount), start the rest empty. ---
mkdir -p "$work"
if [ "${IMAGE_CHECK_FRESH:-0}" = 1 ]; then rm -rf "$ctx"; fi
mkdir -p "$ctx"
find "$ctx" -mindepth 1 -maxdepth 1 ! -name target -exec rm -rf {} +
rm -rf "$root"
mkdir -p "$root"

copy_context() {
    # The files Docker would send: tracked and new files, minus .dockerignore entries (plain names only).
    (cd "$repo" && git ls-files -z --cached --others --exclude-standard) |
        (cd "$repo" && tar --null -T - -cf -) | tar -xf - -C "$ctx"
    if [ -f "$repo/.dockerignore" ]; then
        while IFS= read -r pat; do
            case "$pat" in ''|'#'*) continue ;; target) continue ;; esac
            [[ "$pat" != *[*?!]* ]] || die ".dockerignore: only plain names are replayed, got $pat"
            rm -rf "${ctx:?}/$pat"
        done <"$repo/.dockerignore"
    fi
}

# Maps a path in the build stage to this machine.
build_path() {
    local p="$1"
    case "$p" in
        "$workdir"/*) echo "$ctx/${p#"$workdir"/}" ;;
        "$workdir") echo "$ctx" ;;
        *) die "build stage path outside WORKDIR $workdir: $p" ;;
    esac
}

# COPY into the final root, with Docker's rules for files and folders.
copy_into_root() {
    local src="$1" dst="$2" chown="$3"
    local target="$root$dst"
    if [ -d "$src" ]; then
        mkdir -p "$target"
        cp -R "$src/." "$target/"
    elif [ -f "$src" ]; then
        if [[ "$dst" == */ ]]; then
            mkdir -p "$target"
            target="$target$(basename "$src")"
        else
            mkdir -p "$(dirname "$target")"
        fi
        cp "$src" "$target"
    else
        die "COPY source missing: $src"
    fi
    [ -z "$chown" ] || chown -R "$chown" "$target"
}

stage=""
workdir="/"
user="0:0"
stopsignal="SIGTERM"
expose=()
healthcheck=()
entrypoint=()
cmd=()
for ins in "${instructions[@]}"; do
    kw="${ins%% *}"
    args="${ins#* }"
    case "$kw" in
        FROM)
            case "$args" in
                *" AS build"|*" as build") stage=build; say "build stage (as $args)" ;;
                scratch) [ "$stage" = build ] || die "final stage before build stage"; stage=final ;;
                *) die "unexpected FROM $args" ;;
            esac
            ;;
        *)
            case "$stage:$kw" in
                build:WORKDIR) workdir="$args" ;;
                build:ENV)
                    [[ "$args" =~ ^[A-Za-z_][A-Za-z0-9_]*=[^[:space:]]*$ ]] || die "ENV form not replayed: $args"
                    export "${args?}"
                    ;;
                build:COPY)
                    [ "$args" = ". ." ] || die "build stage COPY other than '. .': $args"
                    copy_context
                    ;;
                build:RUN)
                    run="$args"
                    while [[ "$run" =~ ^--mount=[^[:space:]]+[[:space:]]+(.*)$ ]]; do run="${BASH_REMATCH[1]}"; done
                    say "RUN $run"
                    (cd "$ctx" && sh -ec "$run") || die "build step failed: $run"
                    ;;
                final:COPY)
                    from="" chown=""
                    read -r -a words <<<"$args"
                    while [[ "${words[0]}" == --* ]]; do
                        case "${words[0]}" in
                            --from=build) from=build ;;
                            --chown=*) chown="${words[0]#--chown=}" ;;
                            *) die "COPY flag not replayed: ${words[0]}" ;;
                        esac
                        words=("${words[@]:1}")
                    done
                    [ "${#words[@]}" -eq 2 ] || die "COPY needs exactly one source and one destination: $args"
                    if [ "$from" = build ]; then src=$(build_path "${words[0]}"); else src="$repo/${words[0]%/}"; fi
                    copy_into_root "$src" "${words[1]}" "$chown"
                    ;;
                final:LABEL) ;; # metadata only
                final:USER) user="$args" ;;
                final:EXPOSE) read -r -a expose <<<"$args" ;;
                final:STOPSIGNAL) stopsignal="$args" ;;
                final:HEALTHCHECK)
                    [[ "$args" == *" CMD "* ]] || die "HEALTHCHECK without exec-form CMD: $args"
                    readarray -d '' healthcheck < <(json_words "${args#* CMD }")
                    ;;
                final:ENTRYPOINT) readarray -d '' entrypoint < <(json_words "$args") ;;
                final:CMD) readarray -d '' cmd < <(json_words "$args") ;;
                *) die "instruction not replayed in stage '$stage': $ins" ;;
            esac
            ;;
    esac
done
[ "$stage" = final ] || die "no final stage"
[ "${#entrypoint[@]}" -gt 0 ] || die "no ENTRYPOINT"
[ "${#healthcheck[@]}" -gt 0 ] || die "no HEALTHCHECK"
[[ "$user" =~ ^[1-9][0-9]*:[1-9][0-9]*$ ]] || die "USER must be a numeric non-root uid:gid, got $user"

# --- What the image holds. ---
say "final image files:"
(cd "$root" && find . -mindepth 1 -printf '  %M %U:%G %10s %p\n' | sort -k5)
bin="$root${entrypoint[0]}"
[ -x "$bin" ] || die "ENTRYPOINT ${entrypoint[0]} is not an executable in the image"
if readelf -l "$bin" | grep -q 'Requesting program interpreter'; then
    die "${entrypoint[0]} is dynamically linked; the scratch image has no loader"
fi
if readelf -d "$bin" 2>/dev/null | grep -q NEEDED; then
    die "${entrypoint[0]} needs shared libraries"
fi
size=$(stat -c %s "$bin")
total=$(du -sb "$root" | cut -f1)
say "binary: static, $size bytes ($((size / 1024)) KiB); image contents: $total bytes"
[ "$total" -lt $((15 * 1024 * 1024)) ] || die "image contents over 15 MB"

# --- Run it as the image would. ---
uid="${user%%:*}"
gid="${user##*:}"
log="$work/run.log"
export root uid gid log stopsignal
export IMAGE_ENTRYPOINT="${entrypoint[*]}" IMAGE_CMD="${cmd[*]}" IMAGE_HEALTHCHECK="${healthcheck[*]}"
export IMAGE_EXPOSE="${expose[*]}"
first_list=$(grep -m1 -vE '^\s*(#|$)' "$root/blocklists/"*.txt | tr -d '[:space:]')
export first_list
# The ConfigMap's c2sink.toml from deploy/kubernetes.yaml (the indented block under "c2sink.toml: |").
kube_config="$work/kubernetes.toml"
awk '/^  c2sink.toml: \|$/ {on=1; next} on && /^    / {print substr($0, 5); next} on && /^$/ {print; next} on {exit}' \
    "$repo/deploy/kubernetes.yaml" >"$kube_config" 2>/dev/null || : >"$kube_config"
export kube_config
say "starting ${entrypoint[*]} ${cmd[*]} as $uid:$gid in an empty root, in a loopback-only network namespace"

# unshare: own network (loopback only), own PID space (everything dies with it), own mounts.
unshare --net --pid --mount --mount-proc --fork --kill-child bash -euo pipefail -c '
    fail() { echo "image-check: FAIL: $*" >&2; cat "$log" >&2 || true; exit 1; }
    ip link set lo up
    # What Docker sets in every container network namespace: any user may bind low ports.
    echo 0 >/proc/sys/net/ipv4/ip_unprivileged_port_start
    # In the image root, as the image user, with no supplementary groups and (being non-root) no capabilities.
    in_image=(unshare --root="$root" --wd=/ --setgid "$gid" --setuid "$uid")

    "${in_image[@]}" $IMAGE_ENTRYPOINT check >"$log" 2>&1 || fail "shipped config does not pass check"
    echo "image-check: $(head -1 "$log")"
    # The config the Kubernetes manifest mounts must be valid in this image too.
    if [ -s "$kube_config" ]; then
        cp "$kube_config" "$root/kubernetes.toml"
        "${in_image[@]}" $IMAGE_ENTRYPOINT check --config /kubernetes.toml >"$log" 2>&1 ||
            fail "deploy/kubernetes.yaml ConfigMap config does not pass check"
        rm -f "$root/kubernetes.toml"
        echo "image-check: deploy/kubernetes.yaml config: $(head -1 "$log")"
    fi

    "${in_image[@]}" $IMAGE_ENTRYPOINT $IMAGE_CMD >"$log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do grep -q "c2sink ready" "$log" && break; sleep 0.1; done
    grep -q "c2sink ready" "$log" || fail "server did not become ready"
    read -r _ uids _ < <(grep ^Uid: /proc/$pid/status)
    caps=$(awk "/^CapEff:/ {print \$2}" /proc/$pid/status)
    [ "$uids" = "$uid" ] || fail "server runs as uid $uids, not $uid"
    [ "$caps" = 0000000000000000 ] || fail "server has capabilities $caps"
    echo "image-check: server pid $pid runs as uid $uids with no capabilities"

    for p in $IMAGE_EXPOSE; do
        case "$p" in
            */udp) ss -Hlun "sport = :${p%/udp}" | grep -q . || fail "nothing listens on EXPOSEd $p" ;;
            */tcp) ss -Hltn "sport = :${p%/tcp}" | grep -q . || fail "nothing listens on EXPOSEd $p" ;;
        esac
    done
    echo "image-check: listening on every EXPOSEd port: $IMAGE_EXPOSE"

    a=$(dig @127.0.0.1 -p 53 +short +time=2 +tries=2 healthcheck.c2sink.invalid TXT)
    [ "$a" = "\"c2sink ok\"" ] || fail "health name over UDP: $a"
    a=$(dig @127.0.0.1 -p 53 +short +time=2 +tries=2 "$first_list" A)
    [ "$a" = 0.0.0.0 ] || fail "sinkhole answer over UDP for $first_list: $a"
    a=$(dig @127.0.0.1 -p 53 +tcp +short +time=2 +tries=1 "sub.$first_list" AAAA)
    [ "$a" = "::" ] || fail "sinkhole answer over TCP for sub.$first_list: $a"
    echo "image-check: dig: health TXT ok; $first_list A -> 0.0.0.0 (udp); sub.$first_list AAAA -> :: (tcp)"
    # Not listed: goes to the upstream, which this namespace cannot reach (no route): SERVFAIL, at once.
    a=$(dig @127.0.0.1 -p 53 +time=5 +tries=1 example.com A | grep -o "status: [A-Z]*")
    [ "$a" = "status: SERVFAIL" ] || fail "unlisted name: $a"
    echo "image-check: unlisted name -> SERVFAIL (the namespace has no route out, as intended)"

    exec 3<>/dev/tcp/127.0.0.1/9153
    printf "GET /healthz HTTP/1.0\r\n\r\n" >&3
    h=$(cat <&3); exec 3<&-
    [[ "$h" == "HTTP/1.1 200 OK"* ]] || fail "admin /healthz: $h"
    exec 3<>/dev/tcp/127.0.0.1/9153
    printf "GET /metrics HTTP/1.0\r\n\r\n" >&3
    m=$(cat <&3); exec 3<&-
    grep -q "c2sink_queries_total{protocol=\"udp\",outcome=\"blocked\"} 1" <<<"$m" || fail "metrics: $m"
    echo "image-check: admin /healthz 200, /metrics counts the blocked query"

    "${in_image[@]}" $IMAGE_HEALTHCHECK || fail "HEALTHCHECK command failed"
    echo "image-check: HEALTHCHECK command exits 0"

    kill -s "${stopsignal#SIG}" "$pid"
    rc=0; wait "$pid" || rc=$?
    [ "$rc" = 0 ] || fail "exit code $rc after $stopsignal"
    grep -q stopped "$log" || fail "no clean stop after $stopsignal"
    echo "image-check: $stopsignal -> clean stop, exit 0"
    ! "${in_image[@]}" $IMAGE_HEALTHCHECK 2>/dev/null || fail "HEALTHCHECK passes with the server stopped"
    echo "image-check: HEALTHCHECK fails once stopped"
'
say "PASS (binary $size bytes)"
