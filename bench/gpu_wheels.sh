#!/usr/bin/env bash
# Wheels of the packages sagedet's tests and benchmarks need that a lent GPU machine's image may lack
# (it has torch, torchvision, numpy, pillow, pytest and onnxruntime; not pycocotools, flask, gunicorn),
# for its Python (default 3.12), into .whl/ (ignored by git; the device tool carries it: carry [".whl"]).
#
#   bench/gpu_wheels.sh [PYTHON_VERSION]
set -euo pipefail
cd "$(dirname "$0")/.."
version=${1:-3.12}
rm -rf .whl  # wheels of an earlier run would sit beside newer ones, and pip refuses two versions of a package
python3 -m pip download --no-deps --only-binary=:all: --python-version "$version" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl pycocotools flask gunicorn itsdangerous blinker
ls -l .whl
