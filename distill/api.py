"""The Python API behind ``from distill import fine_tune, distil, load`` (see the package docstring):
each is the library call behind a command, its settings that command's flags as keyword arguments."""

from __future__ import annotations

__all__ = ["fine_tune", "distil", "load"]


def fine_tune(**settings) -> dict:
    """Fine-tune a teacher and dump its materials (``distill teach``; settings: ``teachers.pipeline.TeachConfig``).
    Returns {"run_dir", "metrics", ...}."""
    from teachers.pipeline import TeachConfig, run

    return run(TeachConfig(**settings))


def distil(**settings) -> dict:
    """Train a student from a teacher run's materials (``distill student``; settings:
    ``students.train.StudentConfig``, the arch's own under ``options``). Returns {"run_dir", "metrics", ...}."""
    from students.train import StudentConfig, run

    known = StudentConfig.__dataclass_fields__  # the rest are the arch's options (num_filters=..., hidden=...)
    options = {**settings.pop("options", {}), **{k: settings.pop(k) for k in list(settings) if k not in known}}
    return run(StudentConfig(**settings, options=options))


def load(run_dir: str, device: str = "cpu"):
    """A teacher or student run's model for prediction (``students.predictor.Predictor``)."""
    from students.predictor import Predictor

    return Predictor(run_dir, device)
