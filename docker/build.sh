#!/usr/bin/env bash
# Build Dockerfile.cpu or Dockerfile.gpu.
#
#   docker/build.sh cpu|gpu TAG [docker build options...]
#
# By default a plain `docker build` from the repository (base image and packages from their
# registries; BASE_IMAGE, PIP_INDEX_URL, TORCH_INDEX_URL and FETCH_WEIGHTS pass through when set).
# AIRGAP=1 builds with no registry and no package index, as `make docker-test` does: the base image
# from Debian's packages (docker/base-image.sh), the wheels downloaded by the host's pip
# (docker/wheelhouse.sh) into a staged build context, `--network none`, and FETCH_WEIGHTS=0 unless
# set. Caches live in docker/.cache/ (git-ignored); a fresh machine fills them.
set -euo pipefail

variant="${1:?usage: docker/build.sh cpu|gpu TAG [docker build options...]}"
tag="${2:?usage: docker/build.sh cpu|gpu TAG [docker build options...]}"
shift 2
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
cache="${SAGEDET_DOCKER_CACHE:-$here/.cache}"
dockerfile="Dockerfile.$variant"

log() { echo "docker/build.sh: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ -f "$repo/$dockerfile" ] || die "no $dockerfile (variant cpu or gpu)"
command -v docker >/dev/null 2>&1 || die "no docker command: run docker/engine.sh (make docker-engine)"
docker info >/dev/null 2>&1 || die "the Docker engine does not answer: run docker/engine.sh (make docker-engine)"

args=()
for name in BASE_IMAGE PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_TRUSTED_HOST TORCH_INDEX_URL FETCH_WEIGHTS; do
    if [ -n "${!name:-}" ]; then args+=(--build-arg "$name=${!name}"); fi
done

free_gb() { df -Pk "$1" 2>/dev/null | awk 'NR == 2 { printf "%d", $4 / 1048576 }'; }
same_fs() { [ "$(stat -c %d "$1" 2>/dev/null)" = "$(stat -c %d "$2" 2>/dev/null)" ]; }

# Free disk, checked before anything is downloaded: an air-gapped CPU build from empty caches took
# 18.6 GB at its peak (docs/benchmarks.md, "Images": 2.7 GB of wheels, then the context sent to the
# engine, the wheels' layer, the installed packages, the image), and a full disk fails deep inside pip
# or the engine. The GPU build keeps more of CUDA's libraries, so the CPU's figures are a floor there.
# SAGEDET_SKIP_DISK_CHECK=1 skips the check.
check_disk() {
    [ "${SAGEDET_SKIP_DISK_CHECK:-0}" != 1 ] || return 0
    local wheels_gb=3 engine_gb=16 root have need
    [ -n "$(ls "$cache/wheels-$variant" 2>/dev/null | head -n 1)" ] && wheels_gb=0
    mkdir -p "$cache"
    root="$(docker info --format '{{.DockerRootDir}}' 2>/dev/null || true)"
    if [ -z "$root" ] || [ ! -d "$root" ]; then
        engine_gb=0  # a remote engine: its disk is not ours to see
    elif ! same_fs "$cache" "$root"; then
        have="$(free_gb "$root")"
        [ "${have:-0}" -ge "$engine_gb" ] || die "the Docker engine's data root $root has ${have:-0} GB free; the build needs about $engine_gb GB there (the build's stages and the image). Free some (docker image prune; docker system df shows what is held), or set SAGEDET_SKIP_DISK_CHECK=1"
        engine_gb=0  # checked on its own; the cache's file system needs only the wheels
    fi
    need=$((wheels_gb + engine_gb))
    have="$(free_gb "$cache")"
    [ "${have:-0}" -ge "$need" ] || die "$cache's file system has ${have:-0} GB free; this build needs about $need GB (the wheels: $wheels_gb GB; the Docker engine's stages and image: $engine_gb GB). Free some (docker image prune; docker system df shows what the engine holds), or set SAGEDET_SKIP_DISK_CHECK=1"
}

if [ "${AIRGAP:-0}" = 1 ]; then
    # The gpu wheelhouse holds PyPI's CUDA 13 torch and the CUDA wheels pinned for it, and Dockerfile.gpu
    # ignores TORCH_INDEX_URL beside wheels: another CUDA needs a build that reaches an index.
    [ "$variant" = cpu ] || [ -z "${TORCH_INDEX_URL:-}" ] || die "TORCH_INDEX_URL=$TORCH_INDEX_URL with AIRGAP=1: the air-gapped GPU image takes PyPI's torch, built for CUDA 13; for another CUDA build without AIRGAP=1 (make build-gpu TORCH_INDEX_URL=...)"
    check_disk
    base="${BASE_IMAGE:-sagedet-base:bookworm}"
    [ -n "${BASE_IMAGE:-}" ] || "$here/base-image.sh" "$base"
    "$here/wheelhouse.sh" "$variant" "$cache/wheels-$variant"
    # The staged context: what the Dockerfile copies, and the wheels as hard links (no copying).
    context="$cache/context-$variant"
    rm -rf "$context"
    mkdir -p "$context/docker"
    cp -a "$repo/$dockerfile" "$repo/pyproject.toml" "$repo/container" "$repo/src" "$context/"
    cp -a "$here/requirements.txt" "$here/cuda-constraints.txt" "$here/torch_deps.py" "$here/slim_cuda.py" "$here/no-wheelhouse" "$context/docker/"
    cp -al "$cache/wheels-$variant" "$context/wheels" 2>/dev/null || cp -a "$cache/wheels-$variant" "$context/wheels"
    find "$context" \( -name __pycache__ -o -name '*.egg-info' -o -name '*.pyc' \) -prune -exec rm -rf {} +
    args+=(--network none --build-arg "BASE_IMAGE=$base" --build-arg WHEELHOUSE=wheels)
    [ -n "${FETCH_WEIGHTS:-}" ] || args+=(--build-arg FETCH_WEIGHTS=0)
else
    context="$repo"
fi

log "docker build -f $dockerfile -t $tag ${args[*]} $* $context"
start=$(date +%s)
# The legacy builder works with every engine (BuildKit needs the buildx plugin with newer clients).
DOCKER_BUILDKIT="${DOCKER_BUILDKIT:-0}" docker build -f "$context/$dockerfile" -t "$tag" "${args[@]}" "$@" "$context"
log "built $tag in $(( $(date +%s) - start )) s: $(docker image inspect --format '{{.Size}}' "$tag" | awk '{printf "%.2f GB", $1/1e9}')"
# PRUNE_STAGES=1: remove the build's untagged stage images (label org.sagedet.stage, about 6.5 GB for
# the CPU image), which are the cache of the next build. make docker-test does, to leave the disk for
# the tests; make build-cpu keeps them.
if [ "${PRUNE_STAGES:-0}" = 1 ]; then
    log "removing the untagged stage images: $(docker image prune --force --filter label=org.sagedet.stage | tail -n 1)"
fi
