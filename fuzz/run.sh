#!/usr/bin/env bash
# Runs every c2sink fuzz target for SECONDS each (default 60) on the nightly toolchain.
#   fuzz/run.sh 60            # all targets
#   fuzz/run.sh 300 wire      # one target
# New inputs found go to fuzz/work/<target> (not committed); the checked-in seeds in fuzz/corpus/<target> are
# read only. A crash leaves its input in fuzz/artifacts/<target>/ and makes this script exit non-zero:
# reproduce with  cargo +nightly fuzz run <target> fuzz/artifacts/<target>/<file>
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(query_path wire list_parser config)
fi

if ! rustup toolchain list | grep -q '^nightly'; then
    echo "fuzz/run.sh: the nightly toolchain is needed (rustup toolchain install nightly)" >&2
    exit 2
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz/run.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

status=0
for t in "${targets[@]}"; do
    mkdir -p "work/$t" "artifacts/$t"
    echo "== $t for ${secs}s"
    # -rss_limit_mb keeps a leak from taking the machine; -max_len covers a full TCP DNS message.
    if ! cargo +nightly fuzz run "$t" "work/$t" "corpus/$t" -- \
        -max_total_time="$secs" -rss_limit_mb=1024 -max_len=65537 -print_final_stats=1 2>"work/$t.log"; then
        echo "!! $t failed; see fuzz/work/$t.log and fuzz/artifacts/$t/" >&2
        tail -40 "work/$t.log" >&2
        status=1
    fi
    grep -E 'stat::number_of_executed_units|stat::peak_rss_mb|cov:' "work/$t.log" | tail -3 || true
done
exit $status
