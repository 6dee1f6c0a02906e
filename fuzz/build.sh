#!/usr/bin/env bash
# Builds the fuzz targets without running them (for CI): with cargo-fuzz on nightly when available (the real
# instrumented build), else a plain `cargo check` of the fuzz crate on the default toolchain, which still
# proves every target compiles against the current c2sink API.
set -euo pipefail
cd "$(dirname "$0")"
if rustup toolchain list 2>/dev/null | grep -q '^nightly' && cargo +nightly fuzz --version >/dev/null 2>&1; then
    cargo +nightly fuzz build --dev
else
    echo "fuzz/build.sh: cargo-fuzz or nightly missing; checking the fuzz crate on the default toolchain" >&2
    cargo check --bins --locked 2>/dev/null || cargo check --bins
fi
