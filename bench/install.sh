#!/usr/bin/env bash
# Installs the bench's tools from Debian's packages when any is missing (needs root or sudo).
# dnsperf, unbound, dnsmasq, nsd, dig (bind9-dnsutils), python3, taskset (util-linux), ss (iproute2),
# /usr/bin/time (time). The packaged unbound/dnsmasq/nsd services are not used; the bench starts its own
# instances on 127.0.0.2-5 with its own configs.
set -euo pipefail
declare -A PKG=([dnsperf]=dnsperf [unbound]=unbound [dnsmasq]=dnsmasq [nsd]=nsd [dig]=bind9-dnsutils
                [python3]=python3 [taskset]=util-linux [ss]=iproute2 [/usr/bin/time]=time)
missing=()
for bin in "${!PKG[@]}"; do
  command -v "$bin" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "$bin" >/dev/null 2>&1 || missing+=("${PKG[$bin]}")
done
if [[ ${#missing[@]} -eq 0 ]]; then echo "install: all tools present"; exit 0; fi
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
echo "install: installing ${missing[*]}"
SUDO=(); [[ $(id -u) -eq 0 ]] || SUDO=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
