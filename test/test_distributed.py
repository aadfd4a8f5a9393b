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


def test_init_weights_starts_a_run_from_a_checkpoint_and_refuses_another_config(tmp_path: Path):
    """--init-weights: the first step starts from the checkpoint (not from ImageNet and random heads), the
    card says so, and a checkpoint of another architecture is refused with the reason."""
    import torch

    from vl_tracker_core.models.checkpoint import CheckpointError, save_checkpoint
    from vl_tracker_core.models.config import ModelConfig
    from vl_tracker_core.models.network import JointVLNet
    from vl_tracker_core.train.trainer import TrainOptions, train

    config = ModelConfig(dim=32, depth=1, heads=2, embed_dim=16, matcher_dim=32, matcher_depth=1, trunk_blocks=6,
                         trunk_train_from=5, candidates=8)
    torch.manual_seed(3)
    source = JointVLNet(config)
    with torch.no_grad():
        source.head[-1].bias.fill_(0.5)  # a mark no fresh initialisation makes
    save_checkpoint(source, tmp_path / "source", {"model": "test source"})

    def options(out: Path, cfg: ModelConfig, init: Path | None, steps: int = 1) -> TrainOptions:
        return TrainOptions(out=out, config=cfg, steps=steps, track_batch=2, frame_batch=1, sets_per_frame=2,
                            proposal_frames=1, warmup=0, lr=1e-6, val_every=1000, save_every=1, threads=1,
                            progress=False, val_scenes=2, init_weights=init)

    card = train(options(tmp_path / "tuned", config, tmp_path / "source"))
    tuned = load_file(str(tmp_path / "tuned" / "model.safetensors"))
    # One step at lr 1e-6 moves the weights by about 1e-6: the run started from the source's.
    assert float((tuned["head.2.bias"] - source.head[-1].bias).abs().max()) < 1e-3
    frozen = [k for k in tuned if k.startswith("trunk.stem")]
    assert frozen and all(torch.equal(tuned[k], source.state_dict()[k]) for k in frozen)
    assert card["init_weights"] == str(tmp_path / "source")
    other = ModelConfig(dim=48, depth=1, heads=2, embed_dim=16, matcher_dim=32, matcher_depth=1, trunk_blocks=6,
                        trunk_train_from=5, candidates=8)
    with pytest.raises(CheckpointError, match="differs"):
        train(options(tmp_path / "other", other, tmp_path / "source"))


def test_train_cli_refuses_a_bad_init_weights_folder(tmp_path: Path, capsys):
    from vl_tracker_core.cli import main

    assert main(["train", "--out", str(tmp_path / "run"), "--init-weights", str(tmp_path)]) == 2
    assert "not a checkpoint folder" in capsys.readouterr().err
    shipped = Path(__file__).resolve().parents[1] / "vl_tracker_core" / "weights" / "tiny"
    assert main(["train", "--out", str(tmp_path / "run"), "--init-weights", str(shipped), "--config", "base"]) == 2
    assert "differs from --config base" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # refused before anything was written
