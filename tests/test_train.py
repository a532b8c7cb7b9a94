import csv
import shutil
import subprocess
import sys
import time

import pytest
import torch
from conftest import ROOT, train_args

from models.checkpoint import load_checkpoint
from train.__main__ import main

CHECKPOINTS = ("tinybeauty_best_loss.pt", "tinybeauty_best_psnr.pt", "tinybeauty_final.pt", "tinybeauty_last.pt")


def metric_rows(out):
    with (out / "metrics.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_end_to_end_run_writes_loadable_checkpoints(trained_run):
    for name in CHECKPOINTS:
        payload = torch.load(trained_run / name, weights_only=True)  # plain types only
        assert {"model", "model_config", "optimizer", "epoch", "best_val_psnr", "train_config"} <= set(payload)
        model, _ = load_checkpoint(trained_run / name)
        assert model(torch.rand(1, 3, 64, 64)).shape == (1, 3, 64, 64)
    rows = metric_rows(trained_run)
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    for row in rows:
        assert float(row["val_psnr"]) > 10 and float(row["baseline_psnr"]) > 10
    assert (trained_run / "samples_epoch_001.png").is_file() and (trained_run / "training_curves.png").is_file()
    assert (trained_run / "config.json").is_file()
    assert not list(trained_run.glob(".*tmp*"))  # atomic writes leave no temp files


def test_resume_continues_after_an_interrupted_run(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)  # as if a 4-epoch run had been killed after epoch 2
    before = torch.load(run / "tinybeauty_last.pt", weights_only=True)
    assert main(train_args(ROOT / "unused", run, "--epochs", "3", "--resume")) != 0  # wrong data: clear error
    data = before["train_config"]["data"]
    assert main(train_args(data, run, "--epochs", "3", "--resume")) == 0
    after = torch.load(run / "tinybeauty_last.pt", weights_only=True)
    assert after["epoch"] == 3 and before["epoch"] == 2
    assert [int(r["epoch"]) for r in metric_rows(run)] == [1, 2, 3]
    assert any(not torch.equal(before["model"][k], after["model"][k]) for k in before["model"])
    assert after["optimizer"]["state"][0]["step"] > before["optimizer"]["state"][0]["step"]


def test_bad_data_fails_before_training(tmp_path, capsys):
    (tmp_path / "source").mkdir()
    (tmp_path / "target").mkdir()
    out = tmp_path / "out"
    assert main(train_args(tmp_path, out, "--epochs", "1")) == 2
    assert not (out / "tinybeauty_last.pt").exists()


@pytest.mark.slow
def test_two_process_torchrun(synthetic_data, tmp_path):
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531",
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


@pytest.mark.slow
def test_killed_run_leaves_loadable_checkpoints_and_resumes(synthetic_data, tmp_path):
    """SIGKILL a real training process mid-run: every checkpoint on disk loads, and --resume goes on."""
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "train", *train_args(synthetic_data, out, "--epochs", "500")]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(metric_rows(out) if (out / "metrics.csv").exists() else []) < 3:
            time.sleep(0.05)
    finally:
        process.kill()
        process.wait()
    for path in out.glob("*.pt"):
        load_checkpoint(path)  # raises on a torn file
    done = torch.load(out / "tinybeauty_last.pt", weights_only=True)["epoch"]
    assert 3 <= done < 500
    assert main(train_args(synthetic_data, out, "--epochs", str(done + 1), "--resume")) == 0
    assert [int(r["epoch"]) for r in metric_rows(out)] == list(range(1, done + 2))
