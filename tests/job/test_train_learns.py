"""The acceptance test of training: the real entrypoint learns the generated data set on a CPU.

Held-out generated images (the validation channel, another seed) reach VOC mAP@0.5 >= 0.8 with the
light network trained from scratch with the built-in's full augmentation, and are still there at the
last epoch. mAP is read back from the metric lines the job prints and cross-checked against
metrics.json and the saved model.

Training is seeded and repeats exactly on one machine, so this is one trajectory out of many: the recipe
must clear 0.8 with a margin under other training seeds too (``bench/checks/acceptance_seeds.py``). At
the built-in's default learning rate of 0.001 it does, steadily (docs/benchmarks.md); at 0.003, the rate
this test used until the thirteenth session, runs collapsed mid-training and the best of 80 epochs
ranged 0.77-0.995 from seed to seed.
"""

from __future__ import annotations

import json
import re

import pytest

from conftest import make_job, run_train, set_hyperparameters
from sagedet.artifacts import load_model
from sagedet.sagemaker.metrics_log import METRIC_DEFINITIONS

pytestmark = pytest.mark.slow

EPOCHS = 40
RECIPE = {  # 8.5-10.8 minutes on the 2-core Xeon (2026-11-23), about half what its 80 epochs at 0.003 took
    "base_network": "mobilenet-v3", "image_shape": "128", "use_pretrained_model": "0",
    "num_training_samples": "240", "epochs": str(EPOCHS), "mini_batch_size": "16", "optimizer": "adam",
    "learning_rate": "0.001", "lr_scheduler_step": "30, 36", "lr_scheduler_factor": "0.1",
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
    assert maps[-1] >= 0.8, f"the model fell back after its best epoch; validation mAP per epoch: {maps}"
    _, metadata = load_model(paths.model_dir)
    assert metadata["validation_mAP"] == pytest.approx(max(maps), rel=1e-5)
    records = json.loads((paths.output_data_dir / "metrics.json").read_text())
    assert records[metadata["best_epoch"]]["validation_map"] == pytest.approx(max(maps), rel=1e-5)
