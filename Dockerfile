# syntax=docker/dockerfile:1
#
# Release image of the gateway: the binary on debian:bookworm-slim, running as an unprivileged user.
#
#   docker build -t gateway .
#   docker run --rm --network host \
#     --security-opt seccomp=unconfined \
#     --ulimit memlock=-1:-1 --ulimit nofile=1048576:1048576 \
#     --stop-timeout 50 \
#     gateway [serve --config /etc/gateway/gateway.toml ...]
#
# Kubernetes manifests: deploy/k8s/; HAProxy and nginx in front of several nodes: deploy/; operations
# (timeouts, drain, failures, alerts): docs/OPERATIONS.md.
#
# What the runtime must allow (the gateway runs on glommio, i.e. io_uring):
#
# - io_uring syscalls. Docker's default seccomp profile blocks io_uring_setup, io_uring_enter and
#   io_uring_register since Docker 25 (moby/moby#46762, following containerd#9320); the gateway then fails
#   at start-up. Either run with `--security-opt seccomp=unconfined`, or with a custom profile: copy
#   Docker's default profile (moby: profiles/seccomp/default.json) and add those three names to the
#   allowed syscalls, then `--security-opt seccomp=/path/to/profile.json`. The RuntimeDefault profile of
#   containerd 2.x (Kubernetes) blocks them too. On kernels that have `kernel.io_uring_disabled`, it must
#   be 0 on the host.
# - Locked memory. glommio registers its io_memory buffer with the kernel, which charges it against
#   RLIMIT_MEMLOCK, and glommio refuses to start below 512 KiB. The gateway sizes io_memory to fit the
#   limit it finds (runtime.io_memory_bytes = 0); give it `--ulimit memlock=-1:-1` (unlimited), or at
#   least 8 MiB (`--ulimit memlock=8388608:8388608`). Without the flag a container gets what dockerd
#   inherited: often 8 MiB, 64 KiB on kernels before 5.16.
# - Open files. Every connection is a file descriptor and max_connections defaults to the soft
#   RLIMIT_NOFILE minus a reserve: `--ulimit nofile=1048576:1048576` for up to about a million
#   connections (it cannot exceed the host's fs.nr_open). The start-up line prints the values in force.
# - Network. `--network host` keeps NAT and conntrack off every connection; with `-p 8080:8080
#   -p 9090:9090` it works too, for smaller numbers. Host sysctls: tuning/TUNING.md.
# - Stop. STOPSIGNAL SIGTERM starts the paced drain: /readyz turns 503 at once (balancers take the node
#   out), the listeners stay open for shutdown.drain_delay_ms (5 s), then every client is closed with
#   1012 and a `{"reconnect_after_ms":N}` reason, in batches over shutdown.drain_window_ms (30 s); the
#   last close handshakes get shutdown.close_grace_ms (5 s); the node removes its entries from Redis and
#   exits 0. With the defaults that is 40 s plus a few seconds of clean-up bounds, so the stop timeout
#   must be at least delay + window + grace + margin: `--stop-timeout 50` (Docker's default, 10 s, would
#   SIGKILL the drain: the clients left get no close code and the node's presence stays in Redis until
#   its TTL). Change it together with the [shutdown] keys; Kubernetes: terminationGracePeriodSeconds in
#   deploy/k8s/deployment.yaml. A second SIGTERM (`docker kill -s TERM`) cuts the drain short (1001).
# - Health. The HEALTHCHECK below asks http://127.0.0.1:9090/healthz (liveness, which stays 200 during a
#   drain, so a draining container is never reported unhealthy and restarted; readiness, /readyz, is
#   for balancers) with bash's /dev/tcp, so it assumes the default admin port; change it together with
#   --admin. The image has no curl and the binary has no health subcommand.
# - Shell. The final image is debian:bookworm-slim plus the binary; its /bin/sh and date are used by
#   deploy/k8s/deployment.yaml to give each container start a unique node id.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# The cache mounts keep the crate registry and build artefacts between builds (BuildKit); the binary is
# copied out of the cached target directory in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p gateway \
    && install -m 0755 target/release/gateway /usr/local/bin/gateway

FROM debian:bookworm-slim
RUN groupadd --system --gid 10001 gateway \
    && useradd --system --uid 10001 --gid gateway --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin gateway
COPY --from=build /usr/local/bin/gateway /usr/local/bin/gateway
USER 10001:10001
EXPOSE 8080 9090
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9090 && printf 'GET /healthz HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\nConnection: close\\r\\n\\r\\n' >&3 && read -r -t 2 status <&3 && [[ $status == *' 200 '* ]] || exit 1"]
ENTRYPOINT ["gateway"]
CMD ["serve"]
