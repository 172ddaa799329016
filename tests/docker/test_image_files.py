"""The image build's files, without Docker (these run under plain `make test`): pins that agree,
torch's CUDA wheels found from its metadata, the ECR push's AWS CLI calls, and clear messages when a
tool is missing."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            found[re.sub(r"[-_.]+", "-", name).lower()] = version
    return found


def test_the_images_pin_what_constraints_txt_pins():
    images = pins(DOCKER / "requirements.txt")
    development = pins(REPO / "constraints.txt")
    development.pop("pytest")
    assert {name: images.get(name) for name in development} == development
    assert not [name for name in images if name.startswith(("nvidia-", "cuda-")) or name == "triton"]
    assert not set(images) & set(pins(DOCKER / "cuda-constraints.txt"))


@pytest.mark.parametrize("dockerfile", ["Dockerfile.cpu", "Dockerfile.gpu"])
def test_the_dockerfiles_keep_the_contract(dockerfile: str):
    text = (REPO / dockerfile).read_text()
    assert "LABEL com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true" in text
    assert not re.search(r"^ENTRYPOINT", text, re.M)
    assert "PYTHONUNBUFFERED=1" in text and "PATH=/opt/program:" in text
    assert "COPY container /opt/program" in text and "/opt/ml" not in text
    for argument in ("BASE_IMAGE", "PIP_INDEX_URL", "TORCH_INDEX_URL", "WHEELHOUSE", "FETCH_WEIGHTS"):
        assert re.search(rf"^ARG {argument}\b", text, re.M), argument


def fake_torch_wheel(path: Path, requires: list[str]) -> Path:
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr("torch-2.14.1.dist-info/METADATA",
                       "Metadata-Version: 2.1\nName: torch\nVersion: 2.14.1\n"
                       + "".join(f"Requires-Dist: {r}\n" for r in requires))
    return path


def torch_deps(wheel: Path) -> list[str]:
    result = subprocess.run([sys.executable, str(DOCKER / "torch_deps.py"), str(DOCKER / "requirements.txt"), str(wheel)],
                            capture_output=True, text=True, check=True)
    return result.stdout.split("\n")[:-1]


def test_torch_deps_lists_the_cuda_wheels_but_triton(tmp_path: Path):
    wheel = fake_torch_wheel(tmp_path / "torch-2.14.1-cp311-cp311-manylinux_2_28_x86_64.whl", [
        "filelock", "sympy>=1.13.3",
        'cuda-toolkit[cublas,cudart]==13.0.3; platform_system == "Linux"',
        'nvidia-cudnn-cu13==9.24.0.43; platform_system == "Linux"',
        'nvidia-nccl-cu13==2.30.7; platform_system == "Windows"',
        'triton~=3.8.0; platform_system == "Linux" and python_version < "3.15"',
        'optree>=0.13.0; extra == "optree"',
    ])
    assert torch_deps(wheel) == ["cuda-toolkit[cublas,cudart]==13.0.3", "nvidia-cudnn-cu13==9.24.0.43"]


def test_torch_deps_lists_nothing_for_a_cpu_build(tmp_path: Path):
    wheel = fake_torch_wheel(tmp_path / "torch-2.14.1+cpu-cp311-cp311-manylinux_2_28_x86_64.whl",
                             ["filelock", "typing-extensions>=4.10.0", "sympy>=1.13.3", "networkx>=2.5.1", "jinja2"])
    assert torch_deps(wheel) == []


STUB = """#!/bin/bash
echo "$(basename "$0") $*" >> "$CALLS"
case "$(basename "$0") $1 $2" in
  "aws configure get") echo eu-west-1 ;;
  "aws sts get-caller-identity") echo 123456789012 ;;
  "aws ecr describe-repositories") exit 254 ;;
  "aws ecr get-login-password") echo token ;;
  "docker login "*) cat > "$CALLS.password" ;;
esac
exit 0
"""


def stubbed_path(tmp_path: Path, *tools: str) -> str:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in tools:
        (bin_dir / tool).write_text(STUB)
        (bin_dir / tool).chmod(0o755)
    for tool in ("basename", "cat", "dirname"):
        if not (bin_dir / tool).exists():
            (bin_dir / tool).symlink_to(shutil.which(tool))
    return str(bin_dir)


def push(tmp_path: Path, path: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    base = {"PATH": path, "CALLS": str(tmp_path / "calls"), "HOME": str(tmp_path)}
    return subprocess.run(["/bin/bash", str(DOCKER / "push.sh"), *args], capture_output=True, text=True,
                          env=dict(base, **env), timeout=30)


def test_push_creates_the_repository_logs_in_tags_and_pushes(tmp_path: Path):
    result = push(tmp_path, stubbed_path(tmp_path, "aws", "docker"), "sagedet:cpu", "my-detector")
    assert result.returncode == 0, result.stderr
    uri = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/my-detector:cpu"
    assert result.stdout.strip() == uri
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls[:5] == [
        "docker image inspect sagedet:cpu",
        "aws configure get region",
        "aws sts get-caller-identity --query Account --output text",
        "aws ecr describe-repositories --region eu-west-1 --repository-names my-detector",
        "aws ecr create-repository --region eu-west-1 --repository-name my-detector",
    ]
    assert set(calls[5:7]) == {  # one pipeline: either may log first
        "aws ecr get-login-password --region eu-west-1",
        "docker login --username AWS --password-stdin 123456789012.dkr.ecr.eu-west-1.amazonaws.com",
    }
    assert calls[7:] == [f"docker tag sagedet:cpu {uri}", f"docker push {uri}"]
    assert (tmp_path / "calls.password").read_text().strip() == "token"


def test_push_takes_account_and_region_from_the_environment(tmp_path: Path):
    result = push(tmp_path, stubbed_path(tmp_path, "aws", "docker"), "sagedet:gpu",
                  AWS_ACCOUNT_ID="210987654321", AWS_REGION="us-east-2")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "210987654321.dkr.ecr.us-east-2.amazonaws.com/sagedet:gpu"
    calls = (tmp_path / "calls").read_text()
    assert "sts" not in calls and "configure" not in calls


def test_push_without_the_aws_cli_says_so(tmp_path: Path):
    result = push(tmp_path, stubbed_path(tmp_path, "docker"), "sagedet:cpu")
    assert result.returncode == 1
    assert "no aws command: install the AWS CLI" in result.stderr


@pytest.mark.parametrize("script", ["base-image.sh", "build.sh"])
def test_scripts_without_docker_say_so(tmp_path: Path, script: str):
    result = subprocess.run(["/bin/bash", str(DOCKER / script), "cpu", "x:y"], capture_output=True, text=True,
                            env={"PATH": stubbed_path(tmp_path), "HOME": str(tmp_path)}, timeout=30)
    assert result.returncode == 1
    assert "no docker command" in result.stderr and "Traceback" not in result.stderr


def short_of_disk(tmp_path: Path, root: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    """docker/build.sh AIRGAP=1 with an engine that answers (a stub naming ``root`` as its data root, by
    default a folder under tmp_path) and a df reporting 2 GB free (the real disk cannot be filled in a test)."""
    if root is None:
        root = tmp_path / "engine-root"
        root.mkdir()
    path = stubbed_path(tmp_path)
    bin_dir = Path(path)
    (bin_dir / "docker").write_text(f'#!/bin/bash\n[ "$*" = "info --format {{{{.DockerRootDir}}}}" ] && echo {root}\n'
                                    "exit 0\n")
    (bin_dir / "df").write_text('#!/bin/bash\necho "Filesystem 1024-blocks Used Available Capacity Mounted on"\n'
                                'echo "/dev/x 100000000 97900000 2097152 98% /"\n')
    for tool in ("docker", "df"):
        (bin_dir / tool).chmod(0o755)
    for tool in ("bash", "awk", "head", "ls", "mkdir", "stat", "rm", "cp", "find", "date", "seq", "grep", "sed",
                 "mktemp"):
        if not (bin_dir / tool).exists():
            (bin_dir / tool).symlink_to(shutil.which(tool))
    base = {"PATH": path, "HOME": str(tmp_path), "AIRGAP": "1", "SAGEDET_DOCKER_CACHE": str(tmp_path / "cache"),
            "BASE_IMAGE": "base:x", "PYTHON": str(tmp_path / "no-python")}
    return subprocess.run(["/bin/bash", str(DOCKER / "build.sh"), "cpu", "x:y"], capture_output=True, text=True,
                          env=dict(base, **env), timeout=30)


def test_build_without_enough_disk_says_so_before_downloading(tmp_path: Path):
    result = short_of_disk(tmp_path)
    assert result.returncode == 1
    assert f"{tmp_path / 'cache'}'s file system has 2 GB free; this build needs about 19 GB" in result.stderr
    assert "the wheels: 3 GB; the Docker engine's stages and image: 16 GB" in result.stderr
    assert "SAGEDET_SKIP_DISK_CHECK=1" in result.stderr
    assert "downloading" not in result.stderr and "Traceback" not in result.stderr


def test_build_counts_no_wheels_when_they_are_cached(tmp_path: Path):
    wheels = tmp_path / "cache" / "wheels-cpu"
    wheels.mkdir(parents=True)
    (wheels / "torch-2.14.1-cp311-cp311-manylinux_2_28_x86_64.whl").write_bytes(b"")
    result = short_of_disk(tmp_path)
    assert result.returncode == 1
    assert "has 2 GB free; this build needs about 16 GB (the wheels: 0 GB" in result.stderr


def test_the_disk_check_can_be_skipped(tmp_path: Path):
    result = short_of_disk(tmp_path, SAGEDET_SKIP_DISK_CHECK="1")
    assert result.returncode == 1  # it goes on, to the wheelhouse, whose PYTHON does not exist
    assert "GB free" not in result.stderr
    assert "has no pip: install python3-pip, or set PYTHON" in result.stderr


def test_an_engine_on_another_file_system_is_checked_on_its_own(tmp_path: Path):
    other = Path("/dev/shm")
    if not other.is_dir() or other.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("no folder on another file system than the temporary one")
    result = short_of_disk(tmp_path, root=other)
    assert result.returncode == 1
    assert "the Docker engine's data root /dev/shm has 2 GB free; the build needs about 16 GB there" in result.stderr


def test_a_remote_engine_counts_only_the_wheels(tmp_path: Path):
    # The engine names a data root that is not on this machine: its disk is not ours to check.
    result = short_of_disk(tmp_path, root=tmp_path / "on-another-machine")
    assert result.returncode == 1
    assert "has 2 GB free; this build needs about 3 GB (the wheels: 3 GB; the Docker engine's stages and image: 0 GB)" \
        in result.stderr


def test_an_air_gapped_gpu_build_refuses_another_cuda_before_it_starts(tmp_path: Path):
    """Its wheelhouse is PyPI's CUDA 13 torch whatever TORCH_INDEX_URL says: said before the disk check,
    the base image and the downloads, not found out on a GPU host."""
    path = stubbed_path(tmp_path)
    (Path(path) / "docker").write_text("#!/bin/bash\nexit 0\n")
    (Path(path) / "docker").chmod(0o755)
    env = {"PATH": path, "HOME": str(tmp_path), "AIRGAP": "1", "TORCH_INDEX_URL": "https://download.pytorch.org/whl/cu126"}
    result = subprocess.run(["/bin/bash", str(DOCKER / "build.sh"), "gpu", "x:y"], capture_output=True, text=True,
                            env=env, timeout=30)
    assert result.returncode == 1
    assert ("TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126 with AIRGAP=1: the air-gapped GPU image takes "
            "PyPI's torch, built for CUDA 13") in result.stderr
    assert "free" not in result.stderr and "downloading" not in result.stderr
