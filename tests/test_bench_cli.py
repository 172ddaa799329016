"""The benchmark scripts refuse a CUDA device on a machine without one, saying what to use instead."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("script", ["train_throughput.py", "inference_throughput.py"])
def test_device_cuda_without_cuda_is_refused_with_the_alternative(script: str):
    result = subprocess.run([sys.executable, str(BENCH / script), "--device", "cuda"], cwd=BENCH,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "--device cuda: CUDA is not available on this machine; use --device cpu" in result.stderr


def test_the_gpu_suite_runs_every_part_logs_each_and_says_when_one_failed(tmp_path: Path):
    """bench/gpu_suite.sh all, with a stand-in interpreter ($PYTHON) whose pytest fails and whose benchmark
    scripts write a table to stdout and progress to stderr: the parts after the failed one still run, each
    table and log lands in its file, and the exit status is the failure's."""
    interpreter = tmp_path / "python"
    interpreter.write_text("#!/bin/sh\n"
                           "case \"$*\" in\n"
                           "  *pytest*) echo 'tests: 1 failed'; exit 3 ;;\n"
                           "  *.py*) echo \"| table of $1 |\"; echo \"progress of $1\" >&2 ;;\n"
                           "  *) echo 'torch (stand-in)' ;;\n"
                           "esac\n")
    interpreter.chmod(0o755)
    out = tmp_path / "out"
    result = subprocess.run(["bash", str(BENCH / "gpu_suite.sh"), "all", str(out)], capture_output=True, text=True,
                            timeout=60, env={"PATH": "/usr/bin:/bin", "PYTHON": str(interpreter)})
    assert result.returncode == 3, result.stdout + result.stderr
    assert "1 failed" in (out / "tests.log").read_text()
    for part, script in [("train-300", "train_throughput.py"), ("train-512", "train_throughput.py"),
                         ("infer", "inference_throughput.py")]:
        assert (out / f"{part}.md").read_text() == f"| table of bench/{script} |\n"
        assert (out / f"{part}.log").read_text() == f"progress of bench/{script}\n"


@pytest.mark.parametrize("networks, expected", [(None, "--networks vgg-16 resnet-50 mobilenet-v3"),
                                                ("resnet-50", "--networks resnet-50")])
def test_the_gpu_suite_passes_networks_to_both_benchmarks(tmp_path: Path, networks: str | None, expected: str):
    """NETWORKS limits train-300 and infer to the base networks named (15 minutes of device time do not
    fit every network); without it both run all three."""
    interpreter = tmp_path / "python"
    interpreter.write_text("#!/bin/sh\necho \"$*\"\n")
    interpreter.chmod(0o755)
    env = {"PATH": "/usr/bin:/bin", "PYTHON": str(interpreter), **({"NETWORKS": networks} if networks else {})}
    for part in ("train-300", "infer"):
        result = subprocess.run(["bash", str(BENCH / "gpu_suite.sh"), part, str(tmp_path)], capture_output=True,
                                text=True, timeout=60, env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        assert (tmp_path / f"{part}.md").read_text().rstrip().endswith(expected)
