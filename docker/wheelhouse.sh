#!/usr/bin/env bash
# Download the wheels an image needs into a local folder with the host's pip, for a build that
# reaches no package index (--network none): the air-gapped path.
#
#   docker/wheelhouse.sh cpu|gpu [DIR]      (default docker/.cache/wheels-<variant>)
#
# gpu: docker/requirements.txt with dependencies (torch's CUDA wheels, at docker/cuda-constraints.txt).
# cpu: docker/requirements.txt alone; torch and torchvision from TORCH_INDEX_URL when set (CPU
# builds), else PyPI's torch and the CUDA wheels it cannot be imported without (docker/torch_deps.py).
# Wheels only, for CPython 3.11 on x86_64 Linux with glibc <= 2.36 (Debian bookworm), whatever the
# host's own Python is. Idempotent: pip skips files already there. PYTHON (default python3) runs
# pip; pip's own configuration (PIP_INDEX_URL, PIP_CERT, ...) applies.
set -euo pipefail

variant="${1:?usage: docker/wheelhouse.sh cpu|gpu [DIR]}"
here="$(cd "$(dirname "$0")" && pwd)"
dir="${2:-${SAGEDET_DOCKER_CACHE:-$here/.cache}/wheels-$variant}"
python="${PYTHON:-python3}"

log() { echo "docker/wheelhouse.sh: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ "$variant" = cpu ] || [ "$variant" = gpu ] || die "unknown variant '$variant' (cpu or gpu)"
"$python" -m pip --version >/dev/null 2>&1 || die "$python has no pip: install python3-pip, or set PYTHON"

target=(--only-binary=:all: --python-version 3.11 --implementation cp)
for minor in $(seq 36 -1 5); do target+=(--platform "manylinux_2_${minor}_x86_64"); done
target+=(--platform manylinux2014_x86_64 --platform manylinux2010_x86_64 --platform manylinux1_x86_64)

download() {
    # PIP_FIND_LINKS cleared: a host's own folder of wheels must not stand in for the pinned ones.
    PIP_FIND_LINKS= "$python" -m pip download --quiet --disable-pip-version-check --dest "$dir" "${target[@]}" "$@" \
        2> >(grep -v "is ignored: it is neither a file nor a directory" >&2) \
        || die "pip download $* failed (see above): is the package index reachable?"
}

mkdir -p "$dir"
log "downloading the $variant image's wheels into $dir"
if [ "$variant" = gpu ]; then
    download -r "$here/requirements.txt" -c "$here/cuda-constraints.txt"
else
    requirements="$here/requirements.txt"
    if [ -n "${TORCH_INDEX_URL:-}" ]; then
        download --no-deps --index-url "$TORCH_INDEX_URL" $(grep -E '^torch(vision)?==' "$requirements")
        requirements="$(mktemp)"
        grep -v -E '^torch(vision)?==' "$here/requirements.txt" >"$requirements"
    fi
    download --no-deps -r "$requirements"
    torch_wheel="$(ls -t "$dir"/torch-"$(sed -n 's/^torch==//p' "$here/requirements.txt")"*.whl | head -n 1)"
    mapfile -t cuda < <("$python" "$here/torch_deps.py" "$here/requirements.txt" "$torch_wheel")
    if [ ${#cuda[@]} -gt 0 ]; then
        log "$(basename "$torch_wheel") needs CUDA wheels to import: adding ${cuda[*]}"
        download -c "$here/cuda-constraints.txt" "${cuda[@]}"
    fi
fi
log "$(ls "$dir" | grep -c '\.whl$') wheels, $(du -sh "$dir" | cut -f1) in $dir"
