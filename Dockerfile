# point-engine: build with cargo, run on a small Debian image as a user without privileges.
#
#   docker build -t point-engine .
#   point-engine keys create --name DP01-tills --scope store --append clients.toml
#   docker run -d --name point-engine -p 8080:8080 \
#     -v "$PWD/clients.toml:/etc/point-engine/clients.toml:ro" \
#     -v point-engine-data:/var/lib/point-engine point-engine
#
# The settings are deploy/point-engine.toml; environment variables override them (e.g.
# -e DATABASE_URL=postgres://…, -e POINT_ENGINE_POINT_COST=0.005). Rules: mount a folder over
# /etc/point-engine/rules (it is read for changes every second). `.ci/dockerfile` runs these
# steps in CI's shell (there is no Docker engine there) and checks the result serves.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin point-engine

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/point-engine --create-home point-engine
COPY --from=build /src/target/release/point-engine /usr/local/bin/point-engine
COPY rules/ /etc/point-engine/rules/
COPY deploy/point-engine.toml /etc/point-engine/point-engine.toml
ENV POINT_ENGINE_CONFIG=/etc/point-engine/point-engine.toml
USER point-engine
WORKDIR /var/lib/point-engine
VOLUME /var/lib/point-engine
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 CMD ["point-engine", "probe", "--url", "http://127.0.0.1:8080/ready"]
STOPSIGNAL SIGTERM
CMD ["point-engine", "serve"]
