"""The model folder (weights + metadata), atomic file writes and safe handling of model archives.

A model folder holds ``model.safetensors`` (the state dict; safetensors cannot carry code) and
``model.json`` (the metadata the caller chose, plus ``"format_version": 1``). SageMaker tars
``/opt/ml/model`` into model.tar.gz; an incremental-training ``model`` channel brings such a folder
back, extracted or as the archive.
"""

from __future__ import annotations

import json
import os
import posixpath
import secrets
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import safetensors
import safetensors.torch
from torch import Tensor

from sagedet.errors import ModelError

MODEL_WEIGHTS = "model.safetensors"
MODEL_METADATA = "model.json"
FORMAT_VERSION = 1
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
_EXPECTED_FOLDER = f"a sagedet model folder holds {MODEL_WEIGHTS} and {MODEL_METADATA}"
_EXPECTED_CHANNEL = (
    f"expected a folder holding {MODEL_METADATA} and {MODEL_WEIGHTS}, or one model.tar.gz of a "
    "previous sagedet training job"
)


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write`` on a new temporary file beside ``path``, fsync it, rename it over ``path``.

    Readers see the old file or the complete new one, never a partial one; on failure the
    temporary file is removed. The file is created with the process umask, like ``open``.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_model(model_dir: Path, state_dict: dict[str, Tensor], metadata: dict) -> None:
    """Write the model folder: weights (copied to contiguous CPU tensors) first, metadata last."""
    model_dir.mkdir(parents=True, exist_ok=True)
    tensors = {name: t.detach().to("cpu", copy=True).contiguous() for name, t in state_dict.items()}
    weights = safetensors.torch.save(tensors)
    atomic_write(model_dir / MODEL_WEIGHTS, lambda f: f.write(weights))
    text = json.dumps({**metadata, "format_version": FORMAT_VERSION}, indent=2, sort_keys=True)
    atomic_write(model_dir / MODEL_METADATA, lambda f: f.write(text.encode() + b"\n"))


def load_model(model_dir: Path) -> tuple[dict[str, Tensor], dict]:
    """Read a folder written by :func:`save_model`; nothing in it is executed."""
    weights_file, metadata_file = model_dir / MODEL_WEIGHTS, model_dir / MODEL_METADATA
    for file in (weights_file, metadata_file):
        if not file.is_file():
            raise ModelError(f"{file} is missing: {_EXPECTED_FOLDER}")
    try:
        metadata = json.loads(metadata_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelError(f"{metadata_file} is not UTF-8 JSON ({e}): {_EXPECTED_FOLDER}") from e
    version = metadata.get("format_version") if isinstance(metadata, dict) else metadata
    if version != FORMAT_VERSION:
        raise ModelError(
            f"{metadata_file} has format_version {version!r}: this sagedet reads sagedet model "
            f"metadata, a JSON object with format_version {FORMAT_VERSION}"
        )
    try:
        state_dict = safetensors.torch.load_file(weights_file, device="cpu")
    except (safetensors.SafetensorError, OSError) as e:
        raise ModelError(f"{weights_file} is not a readable safetensors file ({e})") from e
    return state_dict, metadata


def safe_extract_tar(archive: Path, dest: Path) -> None:
    """Extract a (possibly compressed) tar archive into ``dest``, refusing what could escape it.

    Refused, naming the member: absolute names, names leading out of ``dest`` through ``..``,
    symbolic or hard links whose target lies outside ``dest``, paths or link targets that pass
    through a symbolic link in the archive, and anything but regular files, folders and links
    (devices, FIFOs). Where Python has tarfile's ``data`` filter it is applied as well.
    """
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            symlinks = {posixpath.normpath(m.name) for m in members if m.issym()}
            for member in members:
                problem = _member_problem(member, symlinks)
                if problem:
                    raise ModelError(
                        f"{archive}: refusing to extract member {member.name!r}: {problem}"
                    )
            dest.mkdir(parents=True, exist_ok=True)
            if hasattr(tarfile, "data_filter"):
                tar.extractall(dest, members=members, filter="data")
            else:  # pragma: no cover - Python without PEP 706
                tar.extractall(dest, members=members)
    except (tarfile.TarError, EOFError, OSError) as e:  # a FilterError names its member itself
        raise ModelError(f"cannot extract {archive} as a tar archive: {e}") from e


def _member_problem(member: tarfile.TarInfo, symlinks: set[str]) -> str | None:
    if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        return "device file, FIFO or other special file (only files, folders and links are allowed)"
    problem = _path_problem(member.name, symlinks)
    if problem:
        return problem
    if member.issym():
        target = posixpath.join(posixpath.dirname(member.name), member.linkname)
        return _path_problem(target, symlinks, f"symbolic link to {member.linkname!r}: ")
    if member.islnk():
        return _path_problem(member.linkname, symlinks, f"hard link to {member.linkname!r}: ")
    return None


def _path_problem(name: str, symlinks: set[str], context: str = "") -> str | None:
    """Why ``name`` (relative to the extraction folder) is unsafe, or None.

    The path is walked component by component, so that ``sub/link/..`` is seen passing through
    ``sub/link`` even though it normalizes to ``sub``.
    """
    if name.startswith("/") or os.path.isabs(name):
        return f"{context}absolute path"
    parts = [part for part in name.split("/") if part not in ("", ".")]
    walked: list[str] = []
    for i, part in enumerate(parts):
        if part == "..":
            if not walked:
                return f"{context}path leads outside the extraction folder through '..'"
            walked.pop()
            continue
        walked.append(part)
        if i < len(parts) - 1 and "/".join(walked) in symlinks:
            return f"{context}path passes through the symbolic link {'/'.join(walked)!r}"
    return None


def find_model_dir(channel_dir: Path, work_dir: Path) -> Path:
    """The model folder a ``model`` channel brings, extracting an archive if that is all it holds.

    A folder under ``channel_dir`` holding both files is used where it is; otherwise exactly one
    ``*.tar.gz``, ``*.tgz`` or ``*.tar`` under it is extracted safely into ``work_dir``, which must
    then hold exactly one model folder.
    """
    if not channel_dir.is_dir():
        raise ModelError(f"model channel folder {channel_dir} does not exist: {_EXPECTED_CHANNEL}")
    found = _model_dirs(channel_dir)
    if not found:
        files = sorted(p for p in channel_dir.rglob("*") if p.is_file())
        archives = [p for p in files if p.name.endswith(ARCHIVE_SUFFIXES)]
        if len(archives) != 1:
            names = [str(p.relative_to(channel_dir)) for p in (archives or files)]
            shown = ", ".join(names[:20]) + (f" and {len(names) - 20} more" if names[20:] else "")
            what = "several archives: " if archives else ""
            raise ModelError(
                f"model channel {channel_dir} holds {what}{shown or 'no files'}: "
                + _EXPECTED_CHANNEL
            )
        safe_extract_tar(archives[0], work_dir)
        found = _model_dirs(work_dir)
        if not found:
            raise ModelError(f"{archives[0]} holds no model folder: {_EXPECTED_CHANNEL}")
    if len(found) > 1:
        raise ModelError(
            f"found several model folders ({', '.join(map(str, found))}): {_EXPECTED_CHANNEL}"
        )
    return found[0]


def _model_dirs(root: Path) -> list[Path]:
    """Folders under ``root`` holding both model files."""
    folders = {metadata.parent for metadata in root.rglob(MODEL_METADATA)}
    return sorted(d for d in folders if (d / MODEL_WEIGHTS).is_file())
