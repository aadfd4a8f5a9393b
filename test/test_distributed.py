"""Data-parallel training: two CPU processes under torchrun (gloo) compute the same steps as one process
averaging the same two sub-batches."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

SCRIPT = '''
import sys
from pathlib import Path
from vl_tracker_core.models.config import ModelConfig
from vl_tracker_core.train.trainer import TrainOptions, train

out, accumulate = Path(sys.argv[1]), int(sys.argv[2])
config = ModelConfig(dim=32, depth=1, heads=2, embed_dim=16, matcher_dim=32, matcher_depth=1, trunk_blocks=6,
                     trunk_train_from=5, candidates=8)
train(TrainOptions(out=out, config=config, steps=2, track_batch=2, frame_batch=1, sets_per_frame=2,
                   proposal_frames=1, accumulate=accumulate, warmup=0, lr=0.02, val_every=1000, save_every=1,
                   threads=1, progress=False, val_scenes=2))
'''


def _run(args: list[str], cwd: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]


def test_two_gloo_ranks_equal_one_process_accumulating_their_sub_batches(tmp_path: Path):
    pytest.importorskip("torch.distributed")
    script = tmp_path / "train_small.py"
    script.write_text(SCRIPT)
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(script),
          str(tmp_path / "ddp"), "1"], tmp_path)
    _run([sys.executable, str(script), str(tmp_path / "single"), "2"], tmp_path)
    _run([sys.executable, str(script), str(tmp_path / "one"), "1"], tmp_path)
    ddp = load_file(str(tmp_path / "ddp" / "model.safetensors"))
    single = load_file(str(tmp_path / "single" / "model.safetensors"))
    one = load_file(str(tmp_path / "one" / "model.safetensors"))
    assert ddp.keys() == single.keys()
    # Learned tensors only: batch-norm running statistics of the fine-tuned block are per process by design
    # (each rank averages its own sub-batches; rank 0's are saved).
    learned = [k for k in ddp if "running_" not in k and "num_batches" not in k]
    worst = max(float((ddp[k] - single[k]).abs().max()) for k in learned)
    # The fine-tuned trunk block and the heads moved, identically on both setups ...
    moved = max(float((ddp[k] - one[k]).abs().max()) for k in learned)
    assert worst < 1e-4, worst
    # ... and differently from one process that saw only one of the two sub-batches.
    assert moved > 100 * max(worst, 1e-6), (moved, worst)
    card = (tmp_path / "ddp" / "model_card.json").read_text()
    assert '"processes": 2' in card


REAL_DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "real_dev"


@pytest.mark.skipif(not REAL_DEV.is_dir(), reason="../shared/data/real_dev is not here")
def test_training_mixes_synthetic_scenes_and_real_train_sequences(tmp_path: Path):
    script = tmp_path / "train_mixed.py"
    script.write_text(SCRIPT.replace("val_scenes=2))", f"val_scenes=2, data=('synthetic=3', '{REAL_DEV}=1'), "
                                     "data_split='real-train', data_descriptions='project'))"))
    _run([sys.executable, str(script), str(tmp_path / "mixed"), "1"], tmp_path)
    card = (tmp_path / "mixed" / "model_card.json").read_text()
    assert "(weight 3)" in card and "real_dev (weight 1)" in card and "split real-train" in card
