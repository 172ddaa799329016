import io
import json
import tarfile

import pytest
import torch

from sagedet.artifacts import (
    MODEL_METADATA,
    MODEL_WEIGHTS,
    find_model_dir,
    load_model,
    safe_extract_tar,
    save_model,
)
from sagedet.errors import ModelError


def state_dict():
    torch.manual_seed(0)
    base = torch.randn(6, 4)
    return {
        "conv.weight": torch.randn(8, 3, 3, 3),
        "transposed": base.t(),  # not contiguous
        "view": base[1:3],  # shares memory with "transposed"
        "bn.num_batches_tracked": torch.tensor(7),
        "half": torch.randn(5).half(),
    }


def test_model_round_trip(tmp_path):
    weights = state_dict()
    save_model(tmp_path / "model", weights, {"base_network": "vgg-16", "num_classes": 3})
    loaded, metadata = load_model(tmp_path / "model")
    assert loaded.keys() == weights.keys()
    for name, tensor in weights.items():
        assert torch.equal(loaded[name], tensor) and loaded[name].dtype == tensor.dtype
    assert metadata == {"base_network": "vgg-16", "num_classes": 3, "format_version": 1}
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == [MODEL_METADATA, MODEL_WEIGHTS]


def test_weights_file_is_plain_safetensors(tmp_path):
    save_model(tmp_path, {"w": torch.ones(2)}, {})
    header_size = int.from_bytes((tmp_path / MODEL_WEIGHTS).read_bytes()[:8], "little")
    header = json.loads((tmp_path / MODEL_WEIGHTS).read_bytes()[8 : 8 + header_size])
    assert header["w"]["shape"] == [2]


@pytest.mark.parametrize("missing", [MODEL_WEIGHTS, MODEL_METADATA])
def test_missing_file_is_named(tmp_path, missing):
    save_model(tmp_path, {"w": torch.ones(2)}, {})
    (tmp_path / missing).unlink()
    with pytest.raises(ModelError, match=missing.replace(".", r"\.")):
        load_model(tmp_path)


@pytest.mark.parametrize(
    ("file", "content", "message"),
    [
        (MODEL_WEIGHTS, b"\x00" * 3, "safetensors"),
        (MODEL_WEIGHTS, None, "safetensors"),  # truncated
        (MODEL_METADATA, b"{not json", "JSON"),
        (MODEL_METADATA, b'{"format_version": 2}', "format_version"),
        (MODEL_METADATA, b"[1, 2]", "format_version"),
    ],
)
def test_corrupt_file_is_named(tmp_path, file, content, message):
    save_model(tmp_path, {"w": torch.ones(100)}, {})
    path = tmp_path / file
    path.write_bytes(path.read_bytes()[:-40] if content is None else content)
    with pytest.raises(ModelError, match=message) as error:
        load_model(tmp_path)
    assert file in str(error.value)


# --- archives ---------------------------------------------------------------------------------


def make_tar(path, *members):
    """members: (TarInfo, bytes or None)."""
    with tarfile.open(path, "w") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def entry(name, kind=tarfile.REGTYPE, linkname=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info


@pytest.mark.parametrize(
    ("members", "culprit", "reason"),
    [
        ([(entry("/tmp/sagedet-evil"), b"x")], "/tmp/sagedet-evil", "absolute"),
        ([(entry("ok.txt"), b"x"), (entry("../evil.txt"), b"x")], "../evil.txt", r"\.\."),
        ([(entry("sub/../../evil.txt"), b"x")], "sub/../../evil.txt", r"\.\."),
        ([(entry("pw", tarfile.SYMTYPE, "/etc/passwd"), None)], "pw", "symbolic link.*absolute"),
        ([(entry("sub/up", tarfile.SYMTYPE, "../../etc"), None)], "sub/up", r"symbolic link.*\.\."),
        ([(entry("pw", tarfile.LNKTYPE, "/etc/passwd"), None)], "pw", "hard link.*absolute"),
        ([(entry("out", tarfile.LNKTYPE, "../outside.txt"), None)], "out", r"hard link.*\.\."),
        ([(entry("pipe", tarfile.FIFOTYPE), None)], "pipe", "FIFO"),
        ([(entry("null", tarfile.CHRTYPE), None)], "null", "device"),
        (
            [(entry("d", tarfile.SYMTYPE, "sub"), None), (entry("d/x.txt"), b"x")],
            "d/x.txt",
            "passes through the symbolic link 'd'",
        ),
        (
            [
                (entry("sub/c", tarfile.SYMTYPE, "../x"), None),
                (entry("a", tarfile.SYMTYPE, "sub/c/../.."), None),  # normalizes to "." on paper
            ],
            "a",
            "passes through the symbolic link 'sub/c'",
        ),
    ],
)
def test_unsafe_members_are_refused(tmp_path, members, culprit, reason):
    archive = make_tar(tmp_path / "evil.tar", *members)
    dest = tmp_path / "out"
    with pytest.raises(ModelError, match=reason) as error:
        safe_extract_tar(archive, dest)
    assert repr(culprit) in str(error.value) and "evil.tar" in str(error.value)
    assert not dest.exists()  # checked before anything is written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.tar"]


def test_links_inside_the_folder_are_extracted(tmp_path):
    archive = make_tar(
        tmp_path / "ok.tar",
        (entry("sub", tarfile.DIRTYPE), None),
        (entry("sub/a.txt"), b"hello"),
        (entry("b.txt", tarfile.SYMTYPE, "sub/a.txt"), None),
        (entry("sub/c.txt", tarfile.SYMTYPE, "../b.txt"), None),
        (entry("hard.txt", tarfile.LNKTYPE, "sub/a.txt"), None),
    )
    safe_extract_tar(archive, tmp_path / "out")
    for name in ("sub/a.txt", "b.txt", "sub/c.txt", "hard.txt"):
        assert (tmp_path / "out" / name).read_bytes() == b"hello"


def test_not_an_archive(tmp_path):
    (tmp_path / "model.tar.gz").write_bytes(b"not a tar at all" * 100)
    with pytest.raises(ModelError, match="model.tar.gz"):
        safe_extract_tar(tmp_path / "model.tar.gz", tmp_path / "out")


# --- the model channel ------------------------------------------------------------------------


def write_archive(model_dir, archive, arcname="."):
    with tarfile.open(archive, "w:gz" if archive.name.endswith(("gz", "tgz")) else "w") as tar:
        tar.add(model_dir, arcname=arcname)


@pytest.mark.parametrize("name", ["model.tar.gz", "model.tgz", "model.tar"])
def test_archive_in_channel_is_extracted_and_found(tmp_path, name):
    weights = state_dict()
    save_model(tmp_path / "trained", weights, {"num_classes": 3})
    channel = tmp_path / "channel"
    channel.mkdir()
    write_archive(tmp_path / "trained", channel / name)
    work = tmp_path / "work"
    found = find_model_dir(channel, work)
    assert found == work
    loaded, metadata = load_model(found)
    assert torch.equal(loaded["conv.weight"], weights["conv.weight"])
    assert metadata["num_classes"] == 3


def test_archive_with_a_top_folder_and_nested_channel_path(tmp_path):
    save_model(tmp_path / "trained", {"w": torch.ones(1)}, {})
    channel = tmp_path / "channel"
    (channel / "job" / "output").mkdir(parents=True)
    archive = channel / "job" / "output" / "model.tar.gz"
    write_archive(tmp_path / "trained", archive, arcname="model")
    assert find_model_dir(channel, tmp_path / "work") == tmp_path / "work" / "model"


def test_extracted_folder_in_channel_is_used_in_place(tmp_path):
    channel = tmp_path / "channel"
    save_model(channel / "nested", {"w": torch.ones(1)}, {})
    (channel / "other.tar.gz").write_bytes(b"ignored: a model folder is already there")
    assert find_model_dir(channel, tmp_path / "work") == channel / "nested"
    assert not (tmp_path / "work").exists()


def test_empty_channel_lists_what_it_found(tmp_path):
    channel = tmp_path / "channel"
    channel.mkdir()
    (channel / "model.params").write_bytes(b"mxnet")
    (channel / "model.json").write_text("{}")  # without model.safetensors beside it
    message = r"holds model\.json, model\.params: expected a folder holding model\.json and"
    with pytest.raises(ModelError, match=message):
        find_model_dir(channel, tmp_path / "work")


def test_missing_channel(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        find_model_dir(tmp_path / "nope", tmp_path / "work")


def test_several_archives_are_ambiguous(tmp_path):
    save_model(tmp_path / "trained", {"w": torch.ones(1)}, {})
    channel = tmp_path / "channel"
    channel.mkdir()
    write_archive(tmp_path / "trained", channel / "a.tar.gz")
    write_archive(tmp_path / "trained", channel / "b.tar")
    with pytest.raises(ModelError, match="several archives"):
        find_model_dir(channel, tmp_path / "work")


def test_archive_without_a_model(tmp_path):
    channel = tmp_path / "channel"
    channel.mkdir()
    make_tar(channel / "model.tar", (entry("readme.txt"), b"nothing here"))
    with pytest.raises(ModelError, match="model.tar holds no model folder"):
        find_model_dir(channel, tmp_path / "work")


def test_unsafe_archive_in_channel_is_refused(tmp_path):
    channel = tmp_path / "channel"
    channel.mkdir()
    make_tar(channel / "model.tar", (entry("../model.json"), b"{}"))
    with pytest.raises(ModelError, match="refusing"):
        find_model_dir(channel, tmp_path / "work")
