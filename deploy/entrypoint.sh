#!/usr/bin/env bash
# SHARK-PS container entrypoint (deploy/Dockerfile). One image, four roles:
#   entrypoint.sh head   [extra `ray start` args]   Ray head node (GCS on $RAY_PORT), in the foreground (--block)
#   entrypoint.sh worker [extra `ray start` args]   a Ray worker node joining $RAY_ADDRESS, in the foreground
#   entrypoint.sh job    [extra `shark train` args] wait for the head and $SHARK_MIN_NODES nodes, then
#                                                   `shark train --address $RAY_ADDRESS`, checkpoints and the JSON
#                                                   report under $SHARK_OUT (a volume every node mounts). A Ray
#                                                   driver must run on a Ray node: with SHARK_JOB_NODE=1 (compose)
#                                                   the job first joins the cluster as a node with 0 CPUs (nothing
#                                                   is placed on it) and leaves it when training ends; without it
#                                                   (KubeRay RayJob, `ray exec` on the head) it runs where it is.
#   entrypoint.sh health                            exit 0 when the cluster's GCS at $RAY_ADDRESS answers
#   entrypoint.sh <anything else>                   run it (e.g. `shark status --address ray-head:6379`)
#
# Environment (all optional except where noted):
#   RAY_ADDRESS             head GCS host:port (worker, job, health; default ray-head:6379)
#   RAY_AUTH_MODE           "token" (the default and the compose setting) or "disabled"
#   RAY_AUTH_TOKEN          the cluster's token; required when RAY_AUTH_MODE=token (never baked into the image)
#   RAY_PORT                head GCS port (default 6379)
#   RAY_NODE_IP             this node's IP for Ray (default: Ray picks the container's address)
#   RAY_NUM_CPUS            logical CPUs this node offers (default: Ray counts them)
#   RAY_OBJECT_STORE_BYTES  object store size (default 536870912; keep it below the container's shm_size)
#   RAY_RESOURCES           custom resources JSON of this node, e.g. {"ps": 4}
#   SHARK_OUT               output directory of the job (default /data)
#   SHARK_MIN_NODES         nodes the job waits for before it starts (default 1)
#   SHARK_WAIT_S            how long to wait for the head / the nodes (default 180)
#   SHARK_TRAIN_ARGS        extra `shark train` arguments of the job, e.g. "--shards 2 --workers 2"
#   SHARK_JOB_NODE          1: the job joins the cluster as a 0-CPU Ray node first (a container that is no node)
#   SHARK_JOB_NODE_ARGS     extra `ray start` arguments of that node (ports, --temp-dir)
set -euo pipefail

role="${1:-head}"
if [ $# -gt 0 ]; then shift; fi

: "${RAY_PORT:=6379}"
: "${RAY_OBJECT_STORE_BYTES:=536870912}"
: "${SHARK_OUT:=/data}"
: "${SHARK_MIN_NODES:=1}"
: "${SHARK_WAIT_S:=180}"
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-token}"
export RAY_USAGE_STATS_ENABLED="${RAY_USAGE_STATS_ENABLED:-0}"
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"

log() { echo "[entrypoint] $*" >&2; }

check_auth() {
  if [ "$RAY_AUTH_MODE" = "token" ] && [ -z "${RAY_AUTH_TOKEN:-}" ]; then
    log "RAY_AUTH_MODE=token needs RAY_AUTH_TOKEN (the same value on every node and the job);"
    log "generate one with: openssl rand -hex 32   (or set RAY_AUTH_MODE=disabled, loopback-only simulations)"
    exit 2
  fi
}

node_args() {
  args=(--object-store-memory="$RAY_OBJECT_STORE_BYTES" --disable-usage-stats --block)
  if [ -n "${RAY_NODE_IP:-}" ]; then args+=(--node-ip-address="$RAY_NODE_IP"); fi
  if [ -n "${RAY_NUM_CPUS:-}" ]; then args+=(--num-cpus="$RAY_NUM_CPUS"); fi
  if [ -n "${RAY_RESOURCES:-}" ]; then args+=(--resources="$RAY_RESOURCES"); fi
}

wait_for_head() {  # until something listens at $RAY_ADDRESS (host:port)
  local host="${RAY_ADDRESS%:*}" port="${RAY_ADDRESS##*:}" waited=0
  until python -c "import socket,sys; socket.create_connection(('$host', int('$port')), timeout=2).close()" \
      2>/dev/null; do
    if [ "$waited" -ge "$SHARK_WAIT_S" ]; then log "no Ray head at $RAY_ADDRESS after ${SHARK_WAIT_S}s"; exit 3; fi
    sleep 2
    waited=$((waited + 2))
  done
}

count_nodes() {  # alive nodes, from the GCS (`ray status` needs no driver)
  ray status --address "$RAY_ADDRESS" 2>/dev/null | sed -n '/^Active:/,/^Pending:/p' | grep -c ' node_' || true
}

job_node_pid=""
start_job_node() {  # join as a 0-CPU node in the background (its `ray start --block` stops the node on SIGTERM)
  local before waited=0
  before="$(count_nodes)"
  args=(--num-cpus=0 --object-store-memory="$RAY_OBJECT_STORE_BYTES" --disable-usage-stats --block)
  if [ -n "${RAY_NODE_IP:-}" ]; then args+=(--node-ip-address="$RAY_NODE_IP"); fi
  # SHARK_JOB_NODE_ARGS is split into words on purpose (a list of options).
  # shellcheck disable=SC2086
  ray start --address="$RAY_ADDRESS" "${args[@]}" ${SHARK_JOB_NODE_ARGS:-} >&2 &
  job_node_pid=$!
  trap stop_job_node EXIT
  until [ "$(count_nodes)" -gt "$before" ]; do
    if ! kill -0 "$job_node_pid" 2>/dev/null; then log "the job's Ray node failed to start"; exit 3; fi
    if [ "$waited" -ge "$SHARK_WAIT_S" ]; then log "the job's Ray node did not join in ${SHARK_WAIT_S}s"; exit 3; fi
    sleep 1
    waited=$((waited + 1))
  done
  log "joined $RAY_ADDRESS as a 0-CPU node for the driver"
}

stop_job_node() {
  if [ -n "$job_node_pid" ] && kill -0 "$job_node_pid" 2>/dev/null; then
    kill -TERM "$job_node_pid" 2>/dev/null || true
    wait "$job_node_pid" 2>/dev/null || true
  fi
  job_node_pid=""
}

wait_for_nodes() {  # until the cluster has $SHARK_MIN_NODES alive nodes that offer CPUs
  python - "$SHARK_MIN_NODES" "$SHARK_WAIT_S" <<'PY'
import os, sys, time
import ray
from shark.cluster.ray_runtime import start_ray  # joins like `shark train --address` does (auth, loopback)
want, wait_s = int(sys.argv[1]), float(sys.argv[2])
handle = start_ray(os.environ["RAY_ADDRESS"])
deadline = time.monotonic() + wait_s
while (alive := sum(n["Alive"] and n["Resources"].get("CPU", 0) > 0 for n in ray.nodes())) < want:
    if time.monotonic() > deadline:
        sys.exit(f"[entrypoint] only {alive} of {want} Ray nodes after {wait_s:.0f}s")
    time.sleep(2)
print(f"[entrypoint] {alive} Ray node(s) with CPUs up", file=sys.stderr)
handle.shutdown()
PY
}

case "$role" in
  head)
    check_auth
    node_args
    log "Ray head on port $RAY_PORT (auth: $RAY_AUTH_MODE)"
    exec ray start --head --port="$RAY_PORT" --ray-client-server-port="${RAY_CLIENT_PORT:-10001}" \
      --dashboard-host=0.0.0.0 --dashboard-port="${RAY_DASHBOARD_PORT:-8265}" "${args[@]}" "$@"
    ;;
  worker)
    check_auth
    export RAY_ADDRESS="${RAY_ADDRESS:-ray-head:6379}"
    node_args
    wait_for_head
    log "Ray worker node joining $RAY_ADDRESS (auth: $RAY_AUTH_MODE)"
    exec ray start --address="$RAY_ADDRESS" "${args[@]}" "$@"
    ;;
  job)
    check_auth
    export RAY_ADDRESS="${RAY_ADDRESS:-ray-head:6379}"
    wait_for_head
    if [ "${SHARK_JOB_NODE:-0}" = "1" ]; then start_job_node; fi
    wait_for_nodes
    mkdir -p "$SHARK_OUT"
    log "shark train --address $RAY_ADDRESS ${SHARK_TRAIN_ARGS:-} $* -> $SHARK_OUT"
    rc=0
    # SHARK_TRAIN_ARGS is split into words on purpose (a list of options).
    # shellcheck disable=SC2086
    shark train --address "$RAY_ADDRESS" --checkpoint-dir "$SHARK_OUT/checkpoints" \
      --json-out "$SHARK_OUT/report.json" --no-progress ${SHARK_TRAIN_ARGS:-} "$@" || rc=$?
    stop_job_node
    exit "$rc"
    ;;
  health)
    export RAY_ADDRESS="${RAY_ADDRESS:-127.0.0.1:$RAY_PORT}"
    exec ray health-check --address "$RAY_ADDRESS"
    ;;
  *)
    exec "$role" "$@"
    ;;
esac
