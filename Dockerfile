# syntax=docker/dockerfile:1
# WA Sentinel's container images: one multi-stage file, one target per program.
#
#   docker build --target session-service -t wasentinel/session-service .
#   docker build --target health-monitor  -t wasentinel/health-monitor .
#   docker build --target alert-service   -t wasentinel/alert-service .
#   docker build --target console         -t wasentinel/console .
#   docker build --target wa-sim          -t wasentinel/wa-sim .   # the stand-in WhatsApp
#
# The build stage compiles with the same CMake preset as scripts/build ("release") from Debian
# 12 packages; the runtime images are debian:12-slim with only the shared libraries the programs
# link, running as the unprivileged user 10001, with a HEALTHCHECK on grpc.health.v1 through
# was-health-probe. Configuration is by WAS_ environment variables (README, "Configuration").

ARG DEBIAN_IMAGE=debian:12
ARG DEBIAN_SLIM_IMAGE=debian:12-slim

# nodejs and npm build the console's web app (from console/web/package-lock.json); configuring
# the tree also registers the Node-based tests (none run here).
FROM ${DEBIAN_IMAGE} AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential cmake ninja-build pkg-config ca-certificates \
      libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler \
      libabsl-dev libpqxx-dev libsodium-dev libsignal-protocol-c-dev libspdlog-dev libfmt-dev prometheus-cpp-dev \
      libboost-dev libboost-system-dev libcurl4-openssl-dev libqrencode-dev libpng-dev \
      libssl-dev zlib1g-dev nlohmann-json3-dev libgtest-dev libgmock-dev libkainjow-mustache-dev \
      nodejs npm \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN (cd console/web && npm ci --ignore-scripts --no-audit --no-fund) \
 && cmake --preset release \
 && cmake --build build/release -j"$(nproc)" --target \
      session-service wactl health-monitor alert-service console was-health-probe wa-sim \
 && cmake --install build/release --prefix /opt/wasentinel --strip

FROM ${DEBIAN_SLIM_IMAGE} AS runtime
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates libabsl20220623 libcurl4 libfmt9 libgrpc++1.51 libgrpc29 libpng16-16 \
      libpqxx-6.4 libprometheus-cpp-core1.0 libprometheus-cpp-pull1.0 libprotobuf32 \
      libqrencode4 libsignal-protocol-c2.3.2 libsodium23 libspdlog1.10 libssl3 zlib1g \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin wasentinel
COPY --from=build /opt/wasentinel/bin/was-health-probe /usr/local/bin/
USER 10001:10001

FROM runtime AS session-service
COPY --from=build /opt/wasentinel/bin/session-service /opt/wasentinel/bin/wactl /usr/local/bin/
EXPOSE 7001 9101
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["was-health-probe", "--addr=127.0.0.1:7001"]
# SIGTERM drains: sessions are handed back (leases released) within --shutdown_timeout (10 s).
STOPSIGNAL SIGTERM
ENTRYPOINT ["session-service"]

FROM runtime AS health-monitor
COPY --from=build /opt/wasentinel/bin/health-monitor /usr/local/bin/
EXPOSE 7002 9102
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["was-health-probe", "--addr=127.0.0.1:7002"]
ENTRYPOINT ["health-monitor"]

FROM runtime AS alert-service
COPY --from=build /opt/wasentinel/bin/alert-service /usr/local/bin/
EXPOSE 7003 9103
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["was-health-probe", "--addr=127.0.0.1:7003"]
ENTRYPOINT ["alert-service"]

# The status console: the web app and its gRPC-Web bridge to the three services (README
# "Console"). Probes are HTTP: GET /healthz (liveness) and /readyz.
FROM runtime AS console
# The web app goes where the binary looks by default (share/wa-sentinel/console of its prefix),
# so WAS_WEB_ROOT still overrides it (a flag in ENTRYPOINT would win over the variable).
COPY --from=build /opt/wasentinel/bin/console /usr/local/bin/
COPY --from=build /opt/wasentinel/share/wa-sentinel/console /usr/local/share/wa-sentinel/console
EXPOSE 8080 9104
ENTRYPOINT ["console"]

# The stand-in WhatsApp server of the tests and the demo. Never deploy it next to real users:
# it accepts any device it is told about and pairs any QR code its control API is given.
FROM runtime AS wa-sim
COPY --from=build /opt/wasentinel/bin/wa-sim /usr/local/bin/
EXPOSE 7080 7081
ENTRYPOINT ["wa-sim", "--host=0.0.0.0"]
