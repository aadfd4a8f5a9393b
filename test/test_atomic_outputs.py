"""Outputs are never half-written: a writer killed with SIGKILL at a random moment leaves the previous
complete output or the new complete one (eval, export, the checkpoint and training state).

Each test starts a child process that writes the same output over and over (or once, slowly), kills it
at random moments, and checks what is left with the project's own readers.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from vl_tracker_core.atomic import OutputDirError, recover_dir, replacing_dir, swap_dir, write_text_atomic

ROOT = Path(__file__).resolve().parent.parent


def _child(code: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _wait_for(proc: subprocess.Popen, word: str, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if word in line:
            return
        if not line and proc.poll() is not None:
            raise AssertionError(f"child ended before {word!r}: {proc.stderr.read()[-3000:]}")
    proc.kill()
    raise AssertionError(f"child did not say {word!r} in {timeout} s")


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def _leftovers(folder: Path, name: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(f".{name}."))


# ------------------------------------------------------------------------------------- the helpers
def test_swap_and_replace_keep_one_complete_version(tmp_path):
    target = tmp_path / "out"
    with replacing_dir(target, "done", "test output") as stage:
        (stage / "done").write_text("1")
    assert (target / "done").read_text() == "1"
    with pytest.raises(RuntimeError), replacing_dir(target, "done", "test output") as stage:
        (stage / "done").write_text("2")
        raise RuntimeError("stopped half-way")
    assert (target / "done").read_text() == "1" and _leftovers(tmp_path, "out") == []
    # A folder that is not an earlier output of the same command is never replaced.
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(OutputDirError, match="refusing to replace"), \
            replacing_dir(tmp_path / "mine", "done", "test output"):
        pass
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


def test_a_kill_between_the_two_fallback_renames_is_recovered(tmp_path):
    """Where the atomic exchange is unavailable: previous folder moved aside, new one not yet in place."""
    target = tmp_path / "out"
    (tmp_path / ".out.old-abc").mkdir()
    (tmp_path / ".out.old-abc" / "done").write_text("previous")
    recover_dir(target)
    assert (target / "done").read_text() == "previous" and _leftovers(tmp_path, "out") == []
    stage = tmp_path / "stage"
    stage.mkdir()
    (stage / "done").write_text("new")
    swap_dir(stage, target)
    assert (target / "done").read_text() == "new" and not stage.exists()


def test_what_a_killed_writer_staged_is_removed_by_the_next_one(tmp_path):
    proc = _child("""
        import sys, time
        from vl_tracker_core.atomic import staging_dir
        stage = staging_dir(sys.argv[1])
        (stage / "half").write_text("x")
        print("staged", flush=True)
        time.sleep(60)
    """, str(tmp_path / "out"))
    _wait_for(proc, "staged")
    _kill(proc)
    assert len(_leftovers(tmp_path, "out")) == 1
    write_text_atomic(tmp_path / "note.txt", "a")
    with replacing_dir(tmp_path / "out", "done", "test output") as stage:
        (stage / "done").write_text("1")
    assert _leftovers(tmp_path, "out") == []


# ------------------------------------------------------------------------ checkpoint and train state
_CHECKPOINT_WRITER = """
    import sys, torch
    from pathlib import Path
    from vl_tracker_core.models.checkpoint import save_checkpoint
    from vl_tracker_core.models.config import preset
    from vl_tracker_core.models.network import JointVLNet
    from vl_tracker_core.train.trainer import _save_state
    out = Path(sys.argv[1])
    nets, opts = [], []
    for seed in (0, 1):
        torch.manual_seed(seed)
        net = JointVLNet(preset("tiny"))
        opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-3)
        nets.append(net)
        opts.append(opt)
    save_checkpoint(nets[0], out, {"version": 0})
    _save_state(nets[0], opts[0], 0, 0.0, out / "train_state.safetensors")
    print("ready", flush=True)
    i = 1
    while True:
        save_checkpoint(nets[i % 2], out, {"version": i % 2})
        _save_state(nets[i % 2], opts[i % 2], i, float(i), out / "train_state.safetensors")
        i += 1
"""


def test_a_checkpoint_and_training_state_killed_mid_write_load_whole(tmp_path):
    import torch

    from vl_tracker_core.models.checkpoint import WEIGHTS, load_checkpoint, sha256_file
    from vl_tracker_core.models.config import preset
    from vl_tracker_core.models.network import JointVLNet
    from vl_tracker_core.train.trainer import _load_state

    out = tmp_path / "run"
    rng = random.Random(5)
    versions = set()
    for _ in range(5):
        proc = _child(_CHECKPOINT_WRITER, str(out))
        _wait_for(proc, "ready")
        time.sleep(rng.uniform(0.0, 1.5))
        _kill(proc)
        # Weights, config and card are one version: the card's sha256 matches, the network loads strictly.
        net, card = load_checkpoint(out)
        assert card["sha256"] == sha256_file(out / WEIGHTS)
        versions.add(card["version"])
        # The training state is whole and its step is the one stored with its tensors.
        fresh = JointVLNet(preset("tiny"))
        opt = torch.optim.AdamW([p for p in fresh.parameters() if p.requires_grad], lr=1e-3)
        step, elapsed = _load_state(fresh, opt, out / "train_state.safetensors")
        assert step >= 0 and elapsed == float(step)
    assert versions <= {0, 1}


# ----------------------------------------------------------------------------------------------- eval
_EVAL_WRITER = """
    import sys
    from pathlib import Path
    from vl_tracker_core.eval.runner import evaluate
    from vl_tracker_core.trackers.registry import create_tracker
    print("ready", flush=True)
    i = int(sys.argv[3])
    while True:  # two trackers in turn, so that results of one run differ from those of the next
        name = ("kcf", "csrt")[i % 2]
        evaluate(lambda: create_tracker(name), Path(sys.argv[1]), Path(sys.argv[2]), title=f"run {i} {name}",
                 init="bb", progress=False)
        i += 1
"""


def test_an_evaluation_killed_mid_run_leaves_a_complete_report(tmp_path):
    pytest.importorskip("cv2")
    from vl_tracker_core.data.synthetic.writer import make_synthetic
    from vl_tracker_core.eval.runner import score_results

    data = tmp_path / "data"
    make_synthetic(data, "val", 3, 30, seed=4, width=320, height=240, progress=False)
    out = tmp_path / "eval"
    rng = random.Random(9)
    titles = set()
    for i in range(5):
        proc = _child(_EVAL_WRITER, str(data), str(out), str(i))
        _wait_for(proc, "ready")
        if i % 2 == 0:  # let every other writer finish a run first, so that kills land on replacements too
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not (
                    (out / "report.json").is_file() and json.loads((out / "report.json").read_text())["title"]
                    .startswith(f"run {i} ")):
                time.sleep(0.05)
        time.sleep(rng.uniform(0.5, 3.0))
        _kill(proc)
        report = json.loads((out / "report.json").read_text())
        titles.add(report["title"])
        # The report and the result files are one run: every sequence it scored has its results.
        assert report["sequences"] == 3
        assert sorted(p.name for p in (out / "results").glob("*.txt")) == sorted(
            [f"{n}.txt" for n in report["per_sequence"]] + [f"{n}_state.txt" for n in report["per_sequence"]])
        assert (out / "report.md").read_text().startswith(f"# {report['title']}")
        # ... and the results on disk are the ones the report scored.
        rescored = score_results([out / "results"], data, tmp_path / f"rescore{i}", "rescore")
        assert rescored["auc"] == pytest.approx(report["auc"], abs=1e-9), (report["title"], i)
    assert len(titles) >= 2  # at least one complete replacement was seen (how many depends on timing)


# --------------------------------------------------------------------------------------------- export
_EXPORT_WRITER = """
    import sys
    from pathlib import Path
    from vl_tracker_core.engines.export import export_model
    print("ready", flush=True)
    export_model(Path(sys.argv[1]), Path(sys.argv[2]))
    print("done", flush=True)
"""


@pytest.mark.parametrize("delay", [0.5, 4.0], ids=["early", "late"])
def test_an_export_killed_mid_write_keeps_the_previous_export(export_dir, checkpoint, tmp_path, delay):
    pytest.importorskip("onnxruntime")
    from vl_tracker_core.engines import create_engine
    from vl_tracker_core.engines.artifacts import load_manifest

    out = tmp_path / "export"
    shutil.copytree(export_dir, out)
    before = load_manifest(out, verify_files=True)
    proc = _child(_EXPORT_WRITER, str(out), str(checkpoint))
    _wait_for(proc, "ready")
    time.sleep(delay)
    _kill(proc)
    after = load_manifest(out, verify_files=True)  # whole, every graph's sha256 checked
    assert after["created_unix"] >= before["created_unix"]  # the previous export, or a finished new one
    create_engine("onnxruntime", out, threads=1).encode_text("the red ball")
