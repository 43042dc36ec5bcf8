# kofu's container image: a release build in a full Rust image, then only the binary in
# a minimal Debian runtime, running as an unprivileged user.
#   docker build -t kofu:latest .
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
# The commit for kofu_build_info (the build context may hold no .git):
#   docker build --build-arg KOFU_GIT_COMMIT=$(git rev-parse HEAD) .
ARG KOFU_GIT_COMMIT=""
ENV KOFU_GIT_COMMIT=${KOFU_GIT_COMMIT}
RUN cargo build --release --locked -p kofu-node --bin kofu \
 && strip target/release/kofu

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin kofu
COPY --from=build /src/target/release/kofu /usr/local/bin/kofu
USER 10001:10001
ENV KOFU_LISTEN=0.0.0.0:8080 \
    KOFU_ADMIN_LISTEN=0.0.0.0:9090 \
    KOFU_INTERNAL_LISTEN=0.0.0.0:7070 \
    KOFU_LOG_FORMAT=json
EXPOSE 8080 9090 7070
# Liveness on loopback only: plain HTTP, or HTTPS when the admin listener has TLS.
HEALTHCHECK --interval=10s --timeout=2s --start-period=20s --retries=3 \
  CMD curl -fsS http://127.0.0.1:9090/healthz || curl -fsSk https://127.0.0.1:9090/healthz || exit 1
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/kofu"]
CMD ["serve"]
