import math

import pytest
import torch

from sagedet.errors import ModelError
from sagedet.train.checkpoint import load_checkpoint, save_checkpoint


def training_state():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[2, 5], gamma=0.1)
    model(torch.randn(8, 4)).sum().backward()
    optimizer.step()
    scheduler.step()
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "epoch": 3,
        "best_map": 0.42,
        "history": [{"epoch": 1, "validation_map": math.nan}],
        "base_network": "vgg-16",
    }


def test_round_trip(tmp_path):
    state = training_state()
    path = tmp_path / "checkpoints" / "last.pt"
    save_checkpoint(path, state)
    loaded = load_checkpoint(path)
    assert loaded.keys() == state.keys()
    for name, tensor in state["model"].items():
        assert torch.equal(loaded["model"][name], tensor)
    for key, saved in state["optimizer"]["state"].items():
        restored = loaded["optimizer"]["state"][key]["momentum_buffer"]
        assert torch.equal(restored, saved["momentum_buffer"])
    assert loaded["optimizer"]["param_groups"] == state["optimizer"]["param_groups"]
    assert loaded["scheduler"] == state["scheduler"]
    assert (loaded["epoch"], loaded["best_map"], loaded["base_network"]) == (3, 0.42, "vgg-16")
    assert math.isnan(loaded["history"][0]["validation_map"])
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]


def test_restores_an_optimizer(tmp_path):
    state = training_state()
    save_checkpoint(tmp_path / "c.pt", state)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loaded = load_checkpoint(tmp_path / "c.pt")
    model.load_state_dict(loaded["model"])
    optimizer.load_state_dict(loaded["optimizer"])
    assert optimizer.state_dict()["param_groups"][0]["weight_decay"] == 5e-4


def test_overwrite(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"epoch": 1})
    save_checkpoint(path, {"epoch": 2})
    assert load_checkpoint(path) == {"epoch": 2}


def test_absent_is_none(tmp_path):
    assert load_checkpoint(tmp_path / "missing.pt") is None


@pytest.mark.parametrize("cut", [0.5, 0.99, 0.0])
def test_truncated_checkpoint_is_a_model_error(tmp_path, cut):
    path = tmp_path / "c.pt"
    save_checkpoint(path, training_state())
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(ModelError, match="c.pt"):
        load_checkpoint(path)


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"x": Exploit()}, path)
    with pytest.raises(ModelError, match="evil.pt"):
        load_checkpoint(path)


class Exploit:
    def __reduce__(self):
        return (print, ("pickled code ran",))


def test_a_checkpoint_resumes_only_under_the_same_network_and_optimization():
    from sagedet.sagemaker.hyperparameters import parse_hyperparameters
    from sagedet.train.loop import identity, identity_differences

    def config(**values):
        return parse_hyperparameters({"num_classes": "3", "num_training_samples": "8", **values})

    saved = identity(config(lr_scheduler_step="10, 20"))
    assert identity_differences(saved, config(lr_scheduler_step="[10, 20]", epochs="90", mini_batch_size="4",
                                              early_stopping="true", nms_threshold="0.3")) == []
    assert identity_differences({**saved, "lr_scheduler_step": [10, 20]}, config(lr_scheduler_step="10,20")) == []
    assert identity_differences(saved, config(lr_scheduler_step="10, 20", learning_rate="0.01", optimizer="adam")) == [
        "optimizer is 'sgd' in the checkpoint but 'adam' in this job",
        "learning_rate is 0.001 in the checkpoint but 0.01 in this job"]
    # a checkpoint from before the optimization's keys: compared on what it holds
    old = {key: saved[key] for key in ("base_network", "num_classes", "image_shape")}
    assert identity_differences(old, config(optimizer="adam")) == []
    assert identity_differences(old, config(num_classes="4")) == [
        "num_classes is 3 in the checkpoint but 4 in this job"]
    assert identity_differences(None, config()) == ["the checkpoint names no hyperparameters (None)"]
