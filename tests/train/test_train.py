import csv
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import ROOT, maps_for, train_args

from models.checkpoint import load_checkpoint
from models.data import faces_as_tensors, load_split
from models.metrics import mean_psnr_db
from train.__main__ import main

CHECKPOINTS = ("tinybeauty_best_loss.pt", "tinybeauty_best_psnr.pt", "tinybeauty_final.pt", "tinybeauty_last.pt")


def metric_rows(out):
    with (out / "metrics.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_end_to_end_run_writes_loadable_checkpoints(trained_run):
    for name in CHECKPOINTS:
        payload = torch.load(trained_run / name, weights_only=True)  # plain types only
        assert {"model", "model_config", "optimizer", "epoch", "best_val_psnr", "train_config", "split"} <= set(payload)
        model, _ = load_checkpoint(trained_run / name)
        face = torch.rand(1, 3, 64, 64)
        assert model(face, regions=maps_for(model, face)).shape == (1, 3, 64, 64)
    rows = metric_rows(trained_run)
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    # The baseline the run reports is the untouched validation faces' PSNR against their targets.
    last = torch.load(trained_run / "tinybeauty_last.pt", weights_only=True)
    baseline = mean_psnr_db(*faces_as_tensors(load_split(last["split"], "val")))
    for row in rows:
        assert float(row["baseline_psnr"]) == pytest.approx(baseline, abs=1e-3)
        # The head starts near zero: two epochs leave the faces close to the baseline, neither
        # made up yet nor damaged.
        assert abs(float(row["val_psnr"]) - baseline) < 1.0
    assert last["best_val_psnr"] == pytest.approx(max(float(r["val_psnr"]) for r in rows))
    assert (trained_run / "samples_epoch_001.png").is_file() and (trained_run / "training_curves.png").is_file()
    assert (trained_run / "config.json").is_file()
    assert not list(trained_run.glob(".*tmp*"))  # atomic writes leave no temp files


def test_checkpoint_records_a_disjoint_split_with_hashes(trained_run, synthetic_data):
    split = torch.load(trained_run / "tinybeauty_best_psnr.pt", weights_only=True)["split"]
    names = {part: {e["name"] for e in split[part]} for part in ("train", "val", "test")}
    assert len(names["val"]) == 4 and len(names["test"]) == 2 and len(names["train"]) == 10  # 16 pairs: 25% / 10%
    assert not (names["train"] & names["val"] or names["train"] & names["test"] or names["val"] & names["test"])
    entry = split["test"][0]
    assert (synthetic_data / entry["source"]).is_file() and len(entry["sha256"]) == 64


def test_resumed_run_continues_the_same_stream(synthetic_data, tmp_path):
    """2 epochs + resume to 3 gives bit-identical weights to 3 epochs straight (same thread count:
    float sums are ordered by threads)."""
    run = tmp_path / "run"
    assert main(train_args(synthetic_data, run, "--epochs", "2", "--threads", "1")) == 0
    before = torch.load(run / "tinybeauty_last.pt", weights_only=True)
    assert main(["--out", str(run), "--epochs", "3", "--resume"]) == 0  # everything else from the checkpoint
    resumed = torch.load(run / "tinybeauty_last.pt", weights_only=True)
    assert resumed["epoch"] == 3 and before["epoch"] == 2
    assert [int(r["epoch"]) for r in metric_rows(run)] == [1, 2, 3]
    straight = tmp_path / "straight"
    assert main(train_args(synthetic_data, straight, "--epochs", "3", "--threads", "1")) == 0
    expected = torch.load(straight / "tinybeauty_last.pt", weights_only=True)
    assert all(torch.equal(expected["model"][k], resumed["model"][k]) for k in expected["model"])


@pytest.mark.parametrize("flag", [["--lr", "0.5"], ["--seed", "7"], ["--variant", "tiny"], ["--test-fraction", "0.3"],
                                  ["--data", "somewhere/else"]])
def test_resume_refuses_contradicting_flags(trained_run, tmp_path, caplog, flag):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    before = (run / "tinybeauty_last.pt").read_bytes()
    assert main(["--out", str(run), "--epochs", "3", "--resume", *flag]) == 2
    assert flag[0] in caplog.text and "contradicts" in caplog.text
    assert (run / "tinybeauty_last.pt").read_bytes() == before


def test_bad_data_fails_before_training(tmp_path, caplog):
    (tmp_path / "source").mkdir()
    (tmp_path / "target").mkdir()
    out = tmp_path / "out"
    assert main(train_args(tmp_path, out, "--epochs", "1")) == 2
    # The message names the empty folder and what to put there; nothing was written.
    assert str(tmp_path / "source") in caplog.text and "add the faces without makeup there" in caplog.text
    assert not out.exists()


@pytest.mark.slow
def test_two_process_torchrun(synthetic_data, tmp_path):
    out = tmp_path / "ddp"
    # --standalone picks a free rendezvous port: no clash with another run on the machine.
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "train", *train_args(synthetic_data, out, "--epochs", "1")]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "tinybeauty_final.pt").is_file()
    assert len(metric_rows(out)) == 1  # only rank 0 writes
    payload = torch.load(out / "tinybeauty_final.pt", weights_only=True)
    assert not any(k.startswith("module.") for k in payload["model"])  # unwrapped before saving
    assert torch.load(out / "tinybeauty_final.pt", weights_only=True)["train_config"]["batch_size"] == 4


def test_existing_run_is_not_overwritten_by_accident(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    before = (run / "tinybeauty_best_psnr.pt").read_bytes()
    data = torch.load(run / "tinybeauty_last.pt", weights_only=True)["train_config"]["data"]
    assert main(train_args(data, run, "--epochs", "1")) == 2
    assert (run / "tinybeauty_best_psnr.pt").read_bytes() == before
    assert main(train_args(data, run, "--epochs", "1", "--overwrite")) == 0


# Runs training in a child process that writes half of the first epoch-3 checkpoint and then
# SIGKILLs itself: a kill in the middle of a write, at the same point on every machine.
KILL_MID_WRITE = textwrap.dedent("""
    import io, os, signal, sys
    from pathlib import Path
    import torch
    real_save = torch.save
    def save(payload, target, *args, **kwargs):  # target: a path or an open file
        if isinstance(payload, dict) and payload.get("epoch") == 3:
            buffer = io.BytesIO()
            real_save(payload, buffer, *args, **kwargs)
            half = buffer.getvalue()[: len(buffer.getvalue()) // 2]
            if hasattr(target, "write"):
                target.write(half)
                target.flush()
            else:
                Path(target).write_bytes(half)
            os.kill(os.getpid(), signal.SIGKILL)
        real_save(payload, target, *args, **kwargs)
    torch.save = save
    from train.__main__ import main
    sys.exit(main(sys.argv[1:]))
""")


@pytest.mark.slow
def test_killed_run_leaves_loadable_checkpoints_and_resumes(synthetic_data, tmp_path):
    """A kill mid-write: every *.pt on disk loads, the torn temp file is not one, --resume cleans it and goes on."""
    out = tmp_path / "killed"
    command = [sys.executable, "-c", KILL_MID_WRITE, *train_args(synthetic_data, out, "--epochs", "5")]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == -9, result.stderr[-2000:]
    torn = list(out.glob(".*.tmp"))
    assert len(torn) == 1 and torn[0].stat().st_size > 0  # the half-written file is there...
    assert torn[0] not in set(out.glob("*.pt"))  # ...and does not look like a checkpoint
    for path in out.glob("*.pt"):
        load_checkpoint(path)  # raises on a torn file
    assert torch.load(out / "tinybeauty_last.pt", weights_only=True)["epoch"] == 2
    assert main(["--out", str(out), "--epochs", "4", "--resume"]) == 0
    assert not list(out.glob(".*.tmp"))  # leftovers cleaned on resume
    assert [int(r["epoch"]) for r in metric_rows(out)] == [1, 2, 3, 4]


def test_learning_rate_is_held_while_the_network_adds_no_makeup():
    """No plateau cut while validation PSNR sits at the no-makeup baseline; the usual cuts after."""
    from train.trainer import step_plateau

    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([weight], lr=5e-4)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=0)
    stalled = {"val_loss": 0.02, "val_psnr": 31.0, "baseline_psnr": 31.0}
    for _ in range(10):
        assert not step_plateau(scheduler, stalled)
    assert optimizer.param_groups[0]["lr"] == 5e-4
    learning = {"val_loss": 0.01, "val_psnr": 33.0, "baseline_psnr": 31.0}
    assert step_plateau(scheduler, learning) and step_plateau(scheduler, learning)  # the second does not improve
    assert optimizer.param_groups[0]["lr"] == 2.5e-4
