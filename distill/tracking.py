"""Experiment trackers for ``--report-to``: TensorBoard, Weights & Biases and MLflow, each an optional
extra (``pip install '.[track]'``), each working offline: TensorBoard event files in RUN/tensorboard,
W&B in offline mode (``WANDB_MODE=offline`` unless set; ``wandb sync`` uploads later, which needs the
network), MLflow's file store in RUN/mlruns (unless ``MLFLOW_TRACKING_URI`` is set).

The teacher reports through Trainer's own integrations (``teachers.finetune``, inside
``tracker_env``); the student loop and tune through ``Trackers``, a sink of the run's ``log.jsonl`` (which stays the contract): every
``train`` and ``eval`` event becomes the scalars Trainer would name — ``train/loss``,
``train/learning_rate``, ``train/epoch``, ``train/<loss term>``, ``eval/<split>_<metric>``,
``train/epoch_seconds`` — at its optimiser step (MLflow: Trainer's raw keys, ``loss``,
``eval_dev_accuracy``, see ``mlflow_name``).
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from distill.errors import DistillInputError

TRACKERS = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}  # name -> the module it needs


def parse_report_to(spec: str) -> list[str]:
    """``--report-to`` "none" | "tensorboard,wandb,..." -> the tracker names, each importable."""
    names = [] if spec in ("", "none") else [s.strip() for s in spec.split(",") if s.strip()]
    for name in names:
        if name not in TRACKERS:
            raise DistillInputError(f"--report-to {name}: choose none or any of {', '.join(TRACKERS)}, comma-separated")
        try:
            __import__(TRACKERS[name])
        except ImportError:
            raise DistillInputError(f"--report-to {name} needs its package: pip install '.[track]' (or pip install {name})") from None
    return names


@contextlib.contextmanager
def tracker_env(run_dir: Path, names: list[str]):
    """While it lasts, each tracker writes into ``run_dir`` and offline, unless the environment already
    says otherwise (Trainer's integrations read these variables; so do ``Trackers`` and every trial
    of a study run inside it). Restored afterwards, so the next run in this process gets its own."""
    want = {}
    if "tensorboard" in names:
        want["TENSORBOARD_LOGGING_DIR"] = str(run_dir / "tensorboard")
    if "wandb" in names:
        want.update(WANDB_MODE="offline", WANDB_DIR=str(run_dir), WANDB_SILENT="true")
    if "mlflow" in names:
        want["MLFLOW_TRACKING_URI"] = (Path(run_dir) / "mlruns").resolve().as_uri()
        want["MLFLOW_ALLOW_FILE_STORE"] = "true"  # MLflow 3 refuses its file store unless told; mlflow-skinny has no database backend
    added = {k: v for k, v in want.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


def scalars(event: str, fields: dict, eval_split: str = "dev") -> tuple[int, dict[str, float]] | None:
    """A log.jsonl event -> (optimiser step, {Trainer-style name: value}), or None if it has none.
    Evaluation metrics are named as Trainer names a teacher's: ``eval/<split>_<metric>``."""
    if event not in ("train", "eval") or "step" not in fields:
        return None
    out = {}
    for k, v in fields.items():
        if k in ("step", "time", "best") or not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        if event == "train" or k == "epoch":
            out["train/" + {"lr": "learning_rate"}.get(k, k)] = float(v)
        elif k == "seconds":
            out["train/epoch_seconds"] = float(v)
        else:
            out[f"eval/{eval_split}_{k}"] = float(v)
    return int(fields["step"]), out


def mlflow_name(name: str) -> str:
    """Trainer's MLflow names are its raw log keys (``loss``, ``eval_dev_accuracy``), not the
    ``train/`` / ``eval/`` names it gives TensorBoard and W&B: the same here."""
    return name.removeprefix("train/") if name.startswith("train/") else name.replace("eval/", "eval_", 1)


class Trackers:
    """The chosen trackers for one run: ``__call__(event, **fields)`` as a ``JsonlLog`` sink;
    ``close()`` ends their runs. They start at the first event, so a run refused on bad input (before
    its first log line) leaves no tracker files behind."""

    def __init__(self, names: list[str], run_dir: Path, config: dict, name: str | None = None, eval_split: str = "dev"):
        self.names, self.run_dir, self.config, self.name = names, Path(run_dir), config, name or Path(run_dir).name
        self.eval_split = eval_split
        self._tb = self._wandb = self._mlflow = None
        self._open = False

    def _start(self) -> None:
        self._open = True
        names, name, config = self.names, self.name, self.config
        env = os.environ.get
        if "tensorboard" in names:
            from torch.utils.tensorboard import SummaryWriter

            # a study's trials share the study's folder (TENSORBOARD_LOGGING_DIR), one subfolder each
            shared = env("TENSORBOARD_LOGGING_DIR")
            self._tb = SummaryWriter(log_dir=str(Path(shared) / name if shared else self.run_dir / "tensorboard"))
        if "wandb" in names:
            import wandb

            self._wandb = wandb.init(project=env("WANDB_PROJECT", "distill"), name=name, config=config,
                                     dir=env("WANDB_DIR", str(self.run_dir)), mode=env("WANDB_MODE", "offline"),
                                     reinit="create_new")
            self._wandb.define_metric("train/global_step")  # as Trainer's integration: optimiser steps on the x axis
            self._wandb.define_metric("*", step_metric="train/global_step", step_sync=True)
        if "mlflow" in names:
            # the client, not mlflow's fluent API: no process-wide tracking URI or active run is left behind
            from mlflow.tracking import MlflowClient

            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # as in tracker_env
            client = MlflowClient(env("MLFLOW_TRACKING_URI", (self.run_dir / "mlruns").resolve().as_uri()))
            experiment = env("MLFLOW_EXPERIMENT_NAME", "distill")
            found = client.get_experiment_by_name(experiment)
            run = client.create_run(found.experiment_id if found else client.create_experiment(experiment), run_name=name)
            from mlflow.entities import Param

            client.log_batch(run.info.run_id, params=[Param(k, str(v)[:500]) for k, v in config.items()])
            self._mlflow = (client, run.info.run_id)

    def __call__(self, event: str, **fields) -> None:
        if not self._open:
            self._start()
        got = scalars(event, fields, self.eval_split)
        if got is None or not got[1]:
            return
        step, values = got
        if self._tb is not None:
            for k, v in values.items():
                self._tb.add_scalar(k, v, step)
        if self._wandb is not None:
            self._wandb.log({**values, "train/global_step": step})
        if self._mlflow is not None:
            from mlflow.entities import Metric

            client, run_id = self._mlflow
            now = int(time.time() * 1000)
            client.log_batch(run_id, metrics=[Metric(mlflow_name(k), v, now, step) for k, v in values.items()])

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()
        if self._mlflow is not None:
            client, run_id = self._mlflow
            client.set_terminated(run_id)
        self._tb = self._wandb = self._mlflow = None
