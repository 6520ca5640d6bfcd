"""--report-to: what each tracker wrote offline, read back (scalars and their steps) for a tiny
teacher and a tiny student run, under the same Trainer-style names on both sides."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distill.errors import DistillInputError
from distill.tracking import parse_report_to, scalars

pytest.importorskip("tensorboard")
pytest.importorskip("mlflow")
pytest.importorskip("wandb")


def test_event_to_scalar_names():
    assert scalars("train", {"step": 50, "epoch": 0.5, "loss": 0.4, "hard": 0.3, "lr": 1e-3, "time": 1.0}) == (
        50, {"train/epoch": 0.5, "train/loss": 0.4, "train/hard": 0.3, "train/learning_rate": 1e-3})
    assert scalars("eval", {"step": 100, "epoch": 1, "seconds": 12.5, "best": True, "accuracy": 0.9}, "dev") == (
        100, {"train/epoch": 1.0, "train/epoch_seconds": 12.5, "eval/dev_accuracy": 0.9})
    assert scalars("start", {"arch": "cnn"}) is None
    assert parse_report_to("none") == [] and parse_report_to("tensorboard,mlflow") == ["tensorboard", "mlflow"]
    with pytest.raises(DistillInputError, match="choose none or any of"):
        parse_report_to("comet")


def tensorboard_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def mlflow_scalars(uri: str) -> dict[str, list[tuple[int, float]]]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return {k: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, k)] for k in run.data.metrics}


def wandb_scalars(run_dir: Path) -> list[dict]:
    """The history rows of an offline W&B run, read from its .wandb file (a LevelDB-style log of
    protobuf records: 7-byte W&B header, 32 KiB blocks, 7-byte record headers)."""
    from wandb.proto import wandb_internal_pb2

    (path,) = sorted(run_dir.glob("wandb/offline-run-*/*.wandb"))
    data, pos, block, buf, out = path.read_bytes(), 7, 32768, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        buf, pos = buf + data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind in (1, 4):  # a FULL record, or the LAST piece of one
            rec = wandb_internal_pb2.Record()
            rec.ParseFromString(buf)
            buf = b""
            if rec.WhichOneof("record_type") == "history":
                out.append({"/".join(i.nested_key) or i.key: json.loads(i.value_json) for i in rec.history.item})
    return out


def close(got: list[tuple[int, float]], want: list[tuple[int, float]]) -> bool:
    """Same steps, values equal to float32 precision (TensorBoard stores float32)."""
    return [s for s, _ in got] == [s for s, _ in want] and [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-6)


def test_student_reports_to_every_tracker(sst2_run, tmp_path, monkeypatch):
    from students.train import StudentConfig, run

    for var in ("TENSORBOARD_LOGGING_DIR", "MLFLOW_TRACKING_URI", "WANDB_MODE", "WANDB_DIR"):
        monkeypatch.delenv(var, raising=False)
    out = tmp_path / "cnn"
    run(StudentConfig(arch="cnn", materials=sst2_run["run_dir"], output_dir=str(out), epochs=2, batch_size=16, log_every=5,
                      save_steps=0, device="cpu", report_to="tensorboard,mlflow,wandb"))
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    train = [(e["step"], e["loss"]) for e in log if e["event"] == "train"]
    evals = [(e["step"], e["accuracy"]) for e in log if e["event"] == "eval"]
    assert len(train) == 4 and len(evals) == 2  # 10 steps an epoch, logged every 5
    tb = tensorboard_scalars(out / "tensorboard")
    assert close(tb["train/loss"], train) and close(tb["eval/dev_accuracy"], evals)
    assert {"train/learning_rate", "train/hard", "train/soft", "train/epoch", "train/epoch_seconds"} <= set(tb)
    ml = mlflow_scalars((out / "mlruns").resolve().as_uri())
    assert close(ml["loss"], train) and close(ml["eval_dev_accuracy"], evals)  # Trainer's MLflow names
    wb = wandb_scalars(out)
    assert close([(r["train/global_step"], r["train/loss"]) for r in wb if "train/loss" in r], train)
    assert close([(r["train/global_step"], r["eval/dev_accuracy"]) for r in wb if "eval/dev_accuracy" in r], evals)


def test_teacher_reports_through_trainer_under_the_same_names(tiny_bert, glue_dir, tmp_path, monkeypatch):
    from conftest import teach_cfg
    from teachers.pipeline import run as teach

    for var in ("TENSORBOARD_LOGGING_DIR", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(var, raising=False)
    out = tmp_path / "teacher"
    teach(teach_cfg(teacher=str(tiny_bert), data_dir=str(glue_dir), output_dir=str(out), epochs=1, splits=("dev",),
                    report_to="tensorboard,mlflow"))
    tb = tensorboard_scalars(out / "tensorboard")
    assert {"train/loss", "train/learning_rate", "eval/dev_accuracy"} <= set(tb)
    steps = [s for s, _ in tb["eval/dev_accuracy"]]
    assert steps == sorted(steps) and steps[-1] == 10  # optimiser steps: 160 rows / 16
    ml = mlflow_scalars((out / "mlruns").resolve().as_uri())
    assert close(ml["eval_dev_accuracy"], tb["eval/dev_accuracy"]) and "loss" in ml and "learning_rate" in ml
    assert "TENSORBOARD_LOGGING_DIR" not in __import__("os").environ  # restored after the run
