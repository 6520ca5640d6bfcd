"""The XLA path on XLA:CPU (``PJRT_DEVICE=CPU``): the CI's XLA lane runs these in a second virtualenv
with torch + torch-xla at their paired release (``.ci/xla-venv``); elsewhere they are skipped."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, teach_cfg
from distill import materials

pytestmark = pytest.mark.xla
pytest.importorskip("torch_xla", reason="torch_xla is not installed (the XLA lane of .ci/run installs it)")
os.environ.setdefault("PJRT_DEVICE", "CPU")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, nodrop_bert, glue_dir):
    """The tiny teacher trained on the tiny SST-2 on XLA (here) and on the CPU (a subprocess: this
    process loaded transformers with XLA on) with the same seed."""
    from teachers.pipeline import run

    root = tmp_path_factory.mktemp("xla")
    kw = dict(teacher=str(nodrop_bert), data_dir=str(glue_dir), epochs=4, splits=("train", "dev"))
    xla = run(teach_cfg(device="xla", output_dir=str(root / "teach-xla"), **kw))
    cfg = teach_cfg(device="cpu", output_dir=str(root / "teach-cpu"), **kw)
    argv = [a for f in dataclasses.fields(cfg)  # every flag with a value (tuples and switches left at their defaults)
            if getattr(cfg, f.name) is not None and not isinstance(getattr(cfg, f.name), (bool, tuple))
            for a in (f"--{f.name.replace('_', '-')}", str(getattr(cfg, f.name)))]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("USE_TORCH_XLA", None)  # distill.teach sets it for --device cpu before transformers loads
    proc = subprocess.run([sys.executable, "-m", "distill.teach", *argv, "--splits", "train", "dev"], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"xla": xla, "cpu": {"run_dir": cfg.output_dir}}


def test_cpu_device_refused_once_transformers_runs_on_xla(tiny_bert, glue_dir, tmp_path, monkeypatch):
    from distill.errors import DistillInputError
    from teachers.pipeline import run

    monkeypatch.delenv("USE_TORCH_XLA", raising=False)
    with pytest.raises(DistillInputError, match="USE_TORCH_XLA=0"):
        run(teach_cfg(device="cpu", teacher=str(tiny_bert), data_dir=str(glue_dir), output_dir=str(tmp_path / "t")))
    assert not (tmp_path / "t").exists()


def _events(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (Path(run_dir) / "log.jsonl").read_text().splitlines()]


def test_auto_picks_xla_when_pjrt_is_configured(monkeypatch):
    from distill.devices import resolve_device

    monkeypatch.setenv("PJRT_DEVICE", "CPU")
    assert resolve_device("auto") == "xla"


def test_teacher_trains_on_xla_like_on_cpu(runs):
    xla, cpu = (Path(runs[d]["run_dir"]) for d in ("xla", "cpu"))
    summary = json.loads((xla / "train_summary.json").read_text())
    assert summary["global_step"] == 40  # 160 rows / 16 per step x 4 epochs, no short last batch
    # fixed bucket widths: a handful of graphs (train step, eval, per width), not one per batch:
    # every shape has been seen by the end of epoch 2, and nothing compiles after that
    counts = [e["xla_compiles"] for e in _events(xla) if e["event"] == "eval"]
    assert len(counts) == 8 and counts[3] == counts[-1] > 0, counts
    assert summary["xla_compiles"] < summary["global_step"], summary
    start = next(e for e in _events(xla) if e["event"] == "start")
    assert start["device"] == "xla"
    for split in ("train", "dev"):
        mx, mc = materials.load(xla, split), materials.load(cpu, split)
        assert mx.ids == mc.ids
        for a, b in ((mx.logits, mc.logits), (mx.embeddings, mc.embeddings)):
            a, b = np.asarray(a), np.asarray(b)
            assert a.shape == b.shape and a.dtype == b.dtype == np.float32
            np.testing.assert_allclose(a, b, atol=5e-3)
    mx, mc = (json.loads((d / "metrics.json").read_text()) for d in (xla, cpu))
    assert mx["dev"]["accuracy"] == mc["dev"]["accuracy"]


def test_student_trains_on_xla_like_on_cpu(runs, tmp_path):
    from students.train import StudentConfig, run

    out = {}
    for dev in ("xla", "cpu"):
        cfg = StudentConfig(materials=runs["cpu"]["run_dir"], output_dir=str(tmp_path / f"cnn-{dev}"), epochs=3, lr=5e-3,
                            batch_size=16, save_steps=0, log_every=5, device=dev,
                            options={"embed_dim": 16, "num_filters": 8, "dropout": 0.0, "embedding": "sparse"})
        out[dev] = run(cfg)
    saved = json.loads((tmp_path / "cnn-xla" / "config.json").read_text())
    assert saved["device"] == "xla" and saved["options"]["embedding"] == "dense"  # SparseAdam has no XLA kernel
    summary = json.loads((tmp_path / "cnn-xla" / "train_summary.json").read_text())
    assert summary["global_step"] == 30
    counts = [e["xla_compiles"] for e in _events(tmp_path / "cnn-xla") if e["event"] == "eval"]
    assert len(counts) == 3 and counts[1] == counts[2] > 0, counts  # no new graphs after epoch 1
    assert out["xla"]["metrics"]["dev"]["accuracy"] >= 0.9
    # the CPU run used the sparse table (SparseAdam), XLA the dense one (AdamW): close, not equal
    assert abs(out["xla"]["metrics"]["dev"]["accuracy"] - out["cpu"]["metrics"]["dev"]["accuracy"]) <= 0.05
