"""Dockerfile.cpu, with PyPI's torch: delete the CUDA libraries that only a GPU would ever load.

PyPI's torch links its CUDA libraries (cuBLAS, cuDNN's front library, NCCL, ...), so they must be
present for ``import torch`` even on a CPU. Others are opened lazily, on first use of CUDA: cuDNN's
engine libraries (``libcudnn.so.9`` opens them), cuSOLVER (through ``libtorch_cuda_linalg.so``, itself
opened on the first CUDA linear-algebra call), NVRTC's alternative build, the profiler's host
libraries, static archives and headers. On a CPU none of those is ever opened, so they go (about
1.3 GB). The Dockerfile's smoke test imports torch and torchvision and runs a detector afterwards:
a future torch that links one of these fails the build there, not at run time.

    python docker/slim_cuda.py SITE_PACKAGES
"""

import sys
from pathlib import Path

LAZY = [
    "nvidia/*/include",
    "nvidia/cudnn/lib/libcudnn_*.so*",
    "nvidia/*/lib/libcusolver*.so*",
    "nvidia/*/lib/libnvrtc*.alt.so*",
    "nvidia/*/lib/libnvperf_*.so",
    "nvidia/*/lib/libpcsamplingutil.so",
    "nvidia/*/lib/libcheckpoint.so",
    "nvidia/*/lib/libnvblas.so*",
    "nvidia/*/lib/libcufftw.so*",
    "nvidia/*/lib/*.a",
    "torch/lib/libtorch_cuda_linalg.so",
]


def size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def remove(path: Path) -> None:
    if path.is_dir():
        for child in sorted(path.rglob("*"), reverse=True):
            child.rmdir() if child.is_dir() else child.unlink()
        path.rmdir()
    else:
        path.unlink()


def main(site_packages: str) -> int:
    root = Path(site_packages)
    freed = 0
    for pattern in LAZY:
        for path in sorted(root.glob(pattern)):
            freed += size(path)
            remove(path)
    print(f"slim_cuda: deleted {freed / 2**20:.0f} MiB of CUDA libraries that only a GPU would load")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
