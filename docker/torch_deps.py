"""Print the requirements torch declares for Linux that docker/requirements.txt does not list, but
triton: for PyPI's torch, the CUDA wheels without which ``import torch`` fails even on a CPU.
triton (~0.9 GB) is left out because only torch.compile's GPU code generation imports it.
Nothing is printed for a CPU build of torch, which declares none.

    python docker/torch_deps.py REQUIREMENTS [TORCH_WHEEL]

Reads the installed torch's metadata, or TORCH_WHEEL's. Used by Dockerfile.cpu and wheelhouse.sh.
"""

import re
import sys
import zipfile

try:
    from packaging.requirements import Requirement
except ImportError:  # the host's bare Python: pip's own copy
    from pip._vendor.packaging.requirements import Requirement

LEFT_OUT = {"triton"}
TARGET = {"platform_system": "Linux", "sys_platform": "linux", "python_version": "3.11",
          "python_full_version": "3.11.2", "platform_machine": "x86_64", "os_name": "posix",
          "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def torch_requirements(wheel: str | None) -> list[str]:
    if wheel is None:
        from importlib.metadata import requires

        return requires("torch") or []
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        text = archive.read(metadata).decode()
    return [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Requires-Dist:")]


def main(argv: list[str]) -> int:
    listed = set()
    with open(argv[1]) as file:
        for line in file:
            line = line.split("#", 1)[0].strip()
            if line:
                listed.add(canonical(Requirement(line).name))
    for raw in torch_requirements(argv[2] if len(argv) > 2 else None):
        requirement = Requirement(raw)
        if requirement.marker is not None and not requirement.marker.evaluate(TARGET):
            continue
        if canonical(requirement.name) in listed | LEFT_OUT:
            continue
        requirement.marker = None
        print(requirement)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
