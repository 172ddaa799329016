"""The acceptance test of training: the real entrypoint learns the generated data set on a CPU.

Held-out generated images (the validation channel, another seed) reach VOC mAP@0.5 >= 0.8 with the
light network trained from scratch with the built-in's full augmentation. mAP is read back from the
metric lines the job prints and cross-checked against metrics.json and the saved model.
"""

from __future__ import annotations

import json
import re

import pytest

from conftest import make_job, run_train, set_hyperparameters
from sagedet.artifacts import load_model
from sagedet.sagemaker.metrics_log import METRIC_DEFINITIONS

pytestmark = pytest.mark.slow

EPOCHS = 80
RECIPE = {  # about 11 minutes on the 2-core Xeon, 60 epochs about 13 on the AMD EPYC
    "base_network": "mobilenet-v3", "image_shape": "128", "use_pretrained_model": "0",
    "num_training_samples": "240", "epochs": str(EPOCHS), "mini_batch_size": "16", "optimizer": "adam",
    "learning_rate": "0.003", "lr_scheduler_step": "60, 72", "lr_scheduler_factor": "0.1",
}


def test_trained_model_reaches_map_080_on_held_out_images(tmp_path):
    paths = make_job(tmp_path / "opt_ml", train=240, validation=60, image_size=(160, 128))
    set_hyperparameters(paths, **RECIPE)
    result = run_train(paths, timeout=2400, SAGEDET_DATA_WORKERS="2")
    (tmp_path / "train.log").write_text(result.stdout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    maps = [float(v) for v in re.findall(METRIC_DEFINITIONS[2]["Regex"], result.stdout)]
    assert len(maps) == EPOCHS
    assert max(maps) >= 0.8, f"validation mAP per epoch: {maps}"
    _, metadata = load_model(paths.model_dir)
    assert metadata["validation_mAP"] == pytest.approx(max(maps), rel=1e-5)
    records = json.loads((paths.output_data_dir / "metrics.json").read_text())
    assert records[metadata["best_epoch"]]["validation_map"] == pytest.approx(max(maps), rel=1e-5)
