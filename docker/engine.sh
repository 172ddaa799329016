#!/usr/bin/env bash
# Make sure a Docker engine answers `docker info`: install Debian's docker.io (and docker-compose,
# for the SageMaker SDK's local mode, unless `docker compose` works) when missing, and start dockerd in the background when it is
# not running. Idempotent; needs root on Debian (apt-get). Used by the Makefile's docker targets.
set -euo pipefail

log() { echo "docker/engine.sh: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

need_packages=()
command -v dockerd >/dev/null 2>&1 || need_packages+=(docker.io)
command -v docker >/dev/null 2>&1 || need_packages+=(docker.io)
# Compose, for the SageMaker SDK's local mode: `docker compose` (v2) or Debian's docker-compose.
if ! command -v docker-compose >/dev/null 2>&1 && ! docker compose version 2>/dev/null | grep -q v2; then
    need_packages+=(docker-compose)
fi
if [ ${#need_packages[@]} -gt 0 ]; then
    command -v apt-get >/dev/null 2>&1 \
        || die "missing ${need_packages[*]} and no apt-get to install them: install Docker Engine yourself"
    [ "$(id -u)" = 0 ] || die "missing ${need_packages[*]}: run as root, or install them: apt-get install ${need_packages[*]}"
    log "installing ${need_packages[*]} from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q "${need_packages[@]}" >/dev/null \
        || die "apt-get install ${need_packages[*]} failed"
fi

if docker info >/dev/null 2>&1; then
    exit 0
fi

[ "$(id -u)" = 0 ] || die "the Docker engine does not answer (docker info) and only root can start dockerd here"
command -v dockerd >/dev/null 2>&1 || die "no dockerd on PATH: install Docker Engine (apt-get install docker.io)"
log_file="${DOCKERD_LOG:-/var/log/sagedet-dockerd.log}"
log "the Docker engine does not answer: starting dockerd in the background (log: $log_file)"
# setsid: dockerd outlives this script and make (it is the machine's engine from now on).
setsid dockerd >"$log_file" 2>&1 </dev/null &
for _ in $(seq 1 60); do
    if docker info >/dev/null 2>&1; then
        log "dockerd is up ($(docker version --format '{{.Server.Version}}' 2>/dev/null))"
        exit 0
    fi
    sleep 1
done
tail -n 20 "$log_file" >&2 || true
die "dockerd did not answer within 60 s (log above: $log_file)"
