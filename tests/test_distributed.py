"""torchrun on CPU (gloo): two processes with half the batch each must train the same teacher and
student as one process with the whole batch, and only rank 0 may write the run directory."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from conftest import REPO
from distill import materials


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(module: str, args: list[str], nproc: int) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    if nproc == 1:
        cmd = [sys.executable, "-m", module, *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--nnodes", "1",
               "--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{_free_port()}", "-m", module, *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _files(run_dir: Path) -> list[str]:
    return sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file())


def _events(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def test_torchrun_two_processes_match_one(tmp_path, nodrop_bert, glue_dir):
    teach = ["--task", "sst2", "--teacher", str(nodrop_bert), "--data-dir", str(glue_dir), "--epochs", "4",
             "--lr", "3e-3", "--eval-batch-size", "32", "--max-length", "32", "--seed", "0", "--patience", "0",
             "--device", "cpu", "--splits", "train", "dev"]
    one, two = tmp_path / "teach-1", tmp_path / "teach-2"
    _run("distill.teach", [*teach, "--batch-size", "16", "--output-dir", str(one)], 1)
    _run("distill.teach", [*teach, "--batch-size", "8", "--output-dir", str(two)], 2)  # 2 x 8 = the same global batch

    for run_dir, procs in ((one, 1), (two, 2)):
        ev = _events(run_dir)
        starts = [e for e in ev if e["event"] == "start"]
        # one writer: rank 1 appending to the log would double every event
        assert len(starts) == 1 and starts[0]["processes"] == procs
        assert [e["event"] for e in ev].count("done") == 1
        assert not (run_dir / "checkpoints").exists()
    assert _files(two) == _files(one)  # nothing extra (no per-rank logs or checkpoints), nothing missing
    s1 = json.loads((one / "train_summary.json").read_text())
    s2 = json.loads((two / "train_summary.json").read_text())
    assert s1["global_step"] == s2["global_step"] == 40  # 160 rows / 16 per step x 4 epochs
    assert s2["train_loss"] == pytest.approx(s1["train_loss"], rel=2e-3)
    t1, t2 = (json.loads((d / "metrics.json").read_text()) for d in (one, two))
    assert t1["dev"]["accuracy"] >= 0.9 and t2["dev"]["accuracy"] == t1["dev"]["accuracy"]  # it learnt, both alike
    m1, m2 = materials.load(one, "dev"), materials.load(two, "dev")
    assert np.asarray(m1.logits).shape == np.asarray(m2.logits).shape == (40, 2)
    np.testing.assert_allclose(np.asarray(m2.logits), np.asarray(m1.logits), atol=2e-3)
    assert (np.asarray(m2.logits).argmax(-1) == np.asarray(m1.logits).argmax(-1)).all()

    student = ["--arch", "cnn", "--materials", str(one), "--epochs", "3", "--lr", "5e-3", "--log-every", "5",
               "--save-steps", "0", "--device", "cpu", "--dropout", "0", "--embedding", "dense",
               "--num-filters", "8", "--embed-dim", "16"]
    s_one, s_two = tmp_path / "cnn-1", tmp_path / "cnn-2"
    _run("distill.student", [*student, "--batch-size", "16", "--output-dir", str(s_one)], 1)
    _run("distill.student", [*student, "--batch-size", "8", "--output-dir", str(s_two)], 2)
    assert _files(s_two) == _files(s_one)
    w1, w2 = load_file(s_one / "model/model.safetensors"), load_file(s_two / "model/model.safetensors")
    assert w1.keys() == w2.keys()
    for k in w1:
        np.testing.assert_allclose(w2[k].numpy(), w1[k].numpy(), atol=1e-4, err_msg=k)
    r1, r2 = (json.loads((d / "metrics.json").read_text()) for d in (s_one, s_two))
    assert r2["dev"]["accuracy"] == r1["dev"]["accuracy"]
    ev = _events(s_two)
    assert [e["event"] for e in ev].count("start") == 1 and [e["event"] for e in ev].count("done") == 1
    assert json.loads((s_two / "train_summary.json").read_text())["processes"] == 2


def test_launch_needs_torch_xla_and_names_the_fix(capsys):
    import importlib.util

    from distill.launch import main

    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0 and "distill.teach" in capsys.readouterr().out
    if importlib.util.find_spec("torch_xla") is None:
        assert main(["distill.teach", "--task", "sst2"]) == 2
        assert "needs torch_xla" in capsys.readouterr().err


def test_device_flags_resolve(monkeypatch):
    import importlib.util

    from distill.devices import World, bucket_width, resolve_device, scaled_lr, world
    from distill.errors import DistillInputError

    assert [bucket_width(n) for n in (1, 16, 17, 33, 100, 129, 512)] == [16, 16, 32, 64, 128, 256, 512]
    assert bucket_width(100, cap=100) == 100 and bucket_width(600) == 600  # never below the real length
    monkeypatch.delenv("PJRT_DEVICE", raising=False)
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    assert world() == World(0, 1, 0) and scaled_lr(1e-3, True) == 1e-3
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "2")
    assert world() == World(2, 4, 0) and not world().main and scaled_lr(1e-3, True) == pytest.approx(4e-3)
    assert scaled_lr(1e-3, False) == 1e-3
    with pytest.raises(DistillInputError, match="--device"):
        resolve_device("tpu")
    if importlib.util.find_spec("torch_xla") is None:
        with pytest.raises(DistillInputError, match="torch_xla is not installed"):
            resolve_device("xla")
        assert resolve_device("auto") in ("cpu", "cuda")
