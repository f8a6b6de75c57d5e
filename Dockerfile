# bandsync-server container image.
#
#   docker build -t bandsync-server .
#   docker run --rm -p 3001:3001 bandsync-server
#
# Settings come from the environment (see README.md and .env.example); a .env file mounted at
# /app/.env is read too. Stop with SIGTERM: the server disconnects its clients and exits within 5 s.

# ---- builder ---------------------------------------------------------------------------------
FROM rust:1.95-slim-bookworm AS builder
WORKDIR /build

# Dependencies first, against a dummy crate: this layer is rebuilt only when Cargo.toml or
# Cargo.lock change, not on every source edit.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src

# The real sources. The binary also embeds the demo page from examples/web (include_bytes!).
COPY src ./src
COPY examples/web ./examples/web
# COPY keeps the files' own modification times, which may be older than the dummy build: touch
# the crate roots so cargo rebuilds the crate instead of keeping the dummy.
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked \
    && cp target/release/bandsync-server /usr/local/bin/bandsync-server

# ---- runtime ---------------------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime

# curl only for the health check below.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*

# A fixed uid/gid, so volume permissions and security policies can name it.
RUN groupadd --system --gid 10001 bandsync \
    && useradd --system --uid 10001 --gid bandsync --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin bandsync

COPY --from=builder /usr/local/bin/bandsync-server /usr/local/bin/bandsync-server

# The working directory is where an optional .env is looked for.
WORKDIR /app

ENV HOST=0.0.0.0 PORT=3001
EXPOSE 3001

USER bandsync:bandsync

# Liveness only: /readyz also fails during a Redis outage, when the instance still serves its
# sessions from its cache and must not be restarted. The check calls loopback, so HOST must be
# 0.0.0.0 (the default), :: or 127.0.0.1.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD curl -fsS "http://127.0.0.1:${PORT}/livez" > /dev/null || exit 1

# The server drains on SIGTERM (and SIGINT) in at most 5 s, inside Docker's default 10 s grace.
STOPSIGNAL SIGTERM

ENTRYPOINT ["/usr/local/bin/bandsync-server"]
