# syntax=docker/dockerfile:1
# c2sink image: one static binary on an empty base, running as a non-root user, with a health check that needs
# no shell or curl. About 8 MB.
#
# Build for the edge boxes people run (x86 servers, Raspberry Pi class arm64):
#   docker buildx build --platform linux/amd64,linux/arm64 -t c2sink:latest .
# Each platform's build stage runs on that platform (natively, or under QEMU via binfmt for the other one),
# so `uname -m` names the matching musl target.
#
# scripts/image-check.sh replays this file without Docker: it runs every RUN of the build stage and every
# COPY of the final stage, and refuses instructions it does not understand, so the two cannot drift apart.
# Keep to: build stage = FROM/WORKDIR/ENV/COPY . ./RUN; final stage = FROM scratch/COPY/USER/EXPOSE/
# STOPSIGNAL/HEALTHCHECK/ENTRYPOINT/CMD, exec-form JSON arrays on one line.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
ENV CARGO_TERM_COLOR=never
# Symbols are of no use in the image; stripping saves about a fifth of the size.
ENV CARGO_PROFILE_RELEASE_STRIP=symbols
# musl-gcc compiles ring's C and assembly (the TLS crypto for encrypted upstreams) for the musl target.
RUN apt-get update && apt-get install -y --no-install-recommends musl-tools && rm -rf /var/lib/apt/lists/*
RUN rustup target add "$(uname -m)-unknown-linux-musl"
COPY . .
# Static by default on musl (crt-static); the cache mounts only speed up rebuilds.
RUN --mount=type=cache,target=/usr/local/cargo/registry --mount=type=cache,target=/src/target \
    cargo build --release --locked --target "$(uname -m)-unknown-linux-musl" \
    && mkdir -p out/logs \
    && cp "target/$(uname -m)-unknown-linux-musl/release/c2sink" out/c2sink

FROM scratch
COPY --from=build /src/out/c2sink /c2sink
COPY config/container.toml /config/c2sink.toml
COPY blocklists/ /blocklists/
# An empty folder the user may write events to (mount a volume here to keep them).
COPY --from=build --chown=65532:65532 /src/out/logs /logs
# No /etc/passwd in scratch: a numeric user (65532, "nonroot" in distroless) needs none.
USER 65532:65532
EXPOSE 53/udp 53/tcp 9153/tcp
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 CMD ["/c2sink", "healthcheck", "--config", "/config/c2sink.toml", "--timeout", "3s"]
ENTRYPOINT ["/c2sink"]
CMD ["serve", "--config", "/config/c2sink.toml"]
