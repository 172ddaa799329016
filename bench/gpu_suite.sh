#!/usr/bin/env bash
# The GPU half of the speed work, in parts that each fit one call of the device tool (10 minutes):
#
#   bench/gpu_suite.sh PART [OUTDIR]      PART: tests | train-300 | train-512 | infer | all
#
#   tests      the CUDA tests (a training job on the GPU, each inference path under autocast against
#              fp32, a batching predictor on the GPU, pinned batches), skipped where there is no GPU
#   train-300  bench/train_throughput.py --device cuda, batch 64, image_shape 300, all base networks,
#   train-512  ... at 512: images/s of ours and of torchvision's SSD, data loading in and out
#   infer      bench/inference_throughput.py --device cuda, batch 64: images/s of each inference path
#
# NETWORKS (e.g. NETWORKS=resnet-50) limits the benchmarks to those base networks (default: all three).
# Output (markdown and logs) goes to OUTDIR, default $OUT (the device tool's folder) or bench-results/.
# Runs with the interpreter in $PYTHON (default python3) and the repository's src/ on PYTHONPATH;
# wheels in .whl/ (bench/gpu_wheels.sh: packages a GPU image may lack, such as pycocotools, flask,
# gunicorn) are installed into /tmp/site first. See bench/README.md.
set -euo pipefail
part=${1:?"usage: bench/gpu_suite.sh tests|train-300|train-512|infer|all [OUTDIR]"}
out=${2:-${OUT:-bench-results}}
cd "$(dirname "$0")/.."
mkdir -p "$out"
python=${PYTHON:-python3}
if ls .whl/*.whl >/dev/null 2>&1; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
read -r -a networks <<< "${NETWORKS:-vgg-16 resnet-50 mobilenet-v3}"
{ nvidia-smi || echo "nvidia-smi: not available"; df -h /dev/shm || true; "$python" -c "import torch, torchvision; print('torch', torch.__version__, \
'torchvision', torchvision.__version__, 'CUDA', torch.cuda.is_available() and torch.cuda.get_device_name(0))"; } \
    > "$out/machine.txt" 2>&1

run_part() {
    case "$1" in
        tests)
            "$python" -m pytest -q -p no:cacheprovider tests/job/test_train_cuda.py tests/serve/test_serve_cuda.py \
                "tests/data/test_dataset.py::test_batch_pin_memory" 2>&1 | tee "$out/tests.log" ;;
        train-300|train-512)
            { "$python" bench/train_throughput.py --device cuda --batch-size 64 --image-shapes "${1#train-}" \
                --networks "${networks[@]}" \
                > "$out/$1.md"; } 2>&1 | tee "$out/$1.log" ;;
        infer)
            { "$python" bench/inference_throughput.py --device cuda --batch-size 64 --networks "${networks[@]}" \
                > "$out/infer.md"; } 2>&1 \
                | tee "$out/infer.log" ;;
        *)
            echo "unknown part '$1': expected tests, train-300, train-512, infer or all" >&2; return 2 ;;
    esac
}

if [ "$part" = all ]; then
    status=0  # a failing part does not keep the others from running; the exit status says one failed
    for p in tests train-300 train-512 infer; do run_part "$p" || status=$?; done
    exit "$status"
else
    run_part "$part"
fi
