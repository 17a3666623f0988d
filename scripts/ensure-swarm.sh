#!/usr/bin/env bash
# Makes sure this machine's Docker engine answers and is a single-node Swarm manager (runs
# `docker swarm init --advertise-addr 127.0.0.1` when it is in no swarm). Shared by
# scripts/test.sh and scripts/bench.sh: both create Swarm services. Idempotent; on failure it
# prints why on stderr and exits 1.
set -euo pipefail

fail() {
    echo "ensure-swarm: $*" >&2
    exit 1
}

command -v docker >/dev/null || fail "the docker CLI is not installed"
docker_info_err="$(docker info --format '{{.ServerVersion}}' 2>&1 >/dev/null)" ||
    fail "docker info failed: the Docker engine must be running and reachable:
$docker_info_err"
echo "docker engine $(docker info --format '{{.ServerVersion}}')"
swarm_state="$(docker info --format '{{.Swarm.LocalNodeState}}')"
if [ "$swarm_state" != "active" ]; then
    echo "swarm state '$swarm_state': docker swarm init --advertise-addr 127.0.0.1"
    if ! init_out="$(docker swarm init --advertise-addr 127.0.0.1 2>&1)"; then
        printf '%s\n' "$init_out" >&2
        fail "docker swarm init failed (output above)"
    fi
    swarm_state="$(docker info --format '{{.Swarm.LocalNodeState}}')"
    [ "$swarm_state" = "active" ] || fail "swarm state is '$swarm_state' after docker swarm init"
fi
[ "$(docker info --format '{{.Swarm.ControlAvailable}}')" = "true" ] ||
    fail "this node is in a swarm but is not a manager: tests and benchmarks create services"
echo "swarm: active manager"
