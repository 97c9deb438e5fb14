# syntax=docker/dockerfile:1
# The `greenlight` binary in a minimal non-root image:
#   docker build -t greenlight:0.1.0 .
#   docker run --rm -p 8080:8080 -e GREENLIGHT_CLIENT_SECRET=whsec_... greenlight:0.1.0
# Kubernetes probes /healthz and /readyz (manifests/), so the image has no HEALTHCHECK.

FROM rust:1-bookworm AS build
# pg_query builds PostgreSQL's parser (C) and generates its bindings with bindgen.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libclang-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Only what the build reads; the caches keep the registry and the dependencies' builds
# between builds of the same machine.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY crates ./crates
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin greenlight \
    && cp target/release/greenlight /greenlight

# glibc and libgcc, CA certificates, no shell, uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /greenlight /usr/local/bin/greenlight
# Numeric, so that Kubernetes can check `runAsNonRoot` against the image.
USER 65532:65532
ENV GREENLIGHT_LISTEN=0.0.0.0:8080 \
    GREENLIGHT_LOG_FORMAT=json
EXPOSE 8080
# SIGTERM drains and exits 0 within GREENLIGHT_SHUTDOWN_TIMEOUT (default 25 s): give
# `docker stop` more than that (`docker stop -t 30`).
STOPSIGNAL SIGTERM
ENTRYPOINT ["greenlight"]
CMD ["serve"]
