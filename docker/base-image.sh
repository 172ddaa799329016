#!/usr/bin/env bash
# Make a Debian bookworm base image (Python 3.11 with venv, CA certificates) without any image
# registry: debootstrap from Debian's packages, then `docker import`. For air-gapped builds and for
# machines that cannot pull python:3.11-slim-bookworm; pass it as --build-arg BASE_IMAGE=<tag>.
#
#   docker/base-image.sh [TAG]        (default sagedet-base:bookworm)
#
# Idempotent and cached: nothing happens when the engine already has TAG; otherwise the root file
# system tarball under docker/.cache/ is imported when present, else debootstrap makes it (about
# 1-2 minutes). Variables: DEBIAN_MIRROR (default: debootstrap's own), SAGEDET_DOCKER_CACHE, and
# CA_BUNDLE: a PEM file to install as the image's CA bundle, for hosts whose HTTPS goes through an
# intercepting proxy (e.g. CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt, the host's own): then pip
# inside a build reaches the package index (Debian's pip reads that bundle).
set -euo pipefail

tag="${1:-sagedet-base:bookworm}"
here="$(cd "$(dirname "$0")" && pwd)"
cache="${SAGEDET_DOCKER_CACHE:-$here/.cache}"
mirror="${DEBIAN_MIRROR:-}"  # empty: debootstrap's default mirror
suite=bookworm
packages=python3,python3-venv,ca-certificates
tarball="$cache/base-$suite.tar"

log() { echo "docker/base-image.sh: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

command -v docker >/dev/null 2>&1 || die "no docker command: run docker/engine.sh (or make docker-engine) first"
if docker image inspect "$tag" >/dev/null 2>&1; then
    log "$tag exists"
    exit 0
fi

if [ ! -s "$tarball" ]; then
    command -v debootstrap >/dev/null 2>&1 || {
        [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
            || die "debootstrap is missing: install it (apt-get install debootstrap), or pass another BASE_IMAGE"
        log "installing debootstrap from Debian's packages"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null \
            || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null; } \
            || die "apt-get install debootstrap failed"
    }
    [ "$(id -u)" = 0 ] || die "debootstrap needs root"
    mkdir -p "$cache"
    root="$(mktemp -d "$cache/rootfs.XXXXXX")"
    trap 'rm -rf "$root"' EXIT
    log "debootstrap $suite (minbase + $packages)${mirror:+ from $mirror}"
    debootstrap --variant=minbase --include="$packages" "$suite" "$root" ${mirror:+"$mirror"} >"$cache/debootstrap.log" 2>&1 \
        || { tail -n 30 "$cache/debootstrap.log" >&2; die "debootstrap failed (log: $cache/debootstrap.log)"; }
    # Small: no package caches or lists, no documentation, no locales but C.
    chroot "$root" apt-get clean
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/log/* \
        "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/*
    find "$root" -name __pycache__ -prune -exec rm -rf {} +
    tar --numeric-owner -C "$root" -cf "$tarball.part" .
    mv "$tarball.part" "$tarball"
    rm -rf "$root"
    trap - EXIT
fi

log "docker import $tarball as $tag"
docker import --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' \
    --message "debootstrap $suite minbase + $packages" "$tarball" "$tag" >/dev/null
if [ -n "${CA_BUNDLE:-}" ]; then
    [ -s "$CA_BUNDLE" ] || die "CA_BUNDLE=$CA_BUNDLE is not a file"
    log "installing $CA_BUNDLE as the CA bundle of $tag"
    container="$(docker create "$tag")"
    docker cp "$CA_BUNDLE" "$container:/etc/ssl/certs/ca-certificates.crt"
    docker commit --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' "$container" "$tag" >/dev/null
    docker rm "$container" >/dev/null
fi
docker run --rm "$tag" python3 -c 'import sys, venv, ssl; print("base image python", sys.version.split()[0])' >&2 \
    || die "$tag does not run python3"
