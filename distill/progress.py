"""Progress display for the CLIs (the edge): rich bars on a terminal, plain lines otherwise.

Library code never imports this; it takes an ``on_progress(n_done)`` callable or a Trainer
callback that the CLI builds here.
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from transformers import TrainerCallback

console = Console(stderr=True)


class _PlainBar:
    """Progress as plain log lines (CI logs, pipes): one line every ``every`` seconds and at the end."""

    def __init__(self, description: str, total: int, every: float = 30.0):
        self.description, self.total, self.every = description, total, every
        self.done, self.start, self.last = 0, time.monotonic(), 0.0
        self.note = ""

    def advance(self, n: int = 1, note: str | None = None) -> None:
        self.done += n
        if note is not None:
            self.note = note
        now = time.monotonic()
        if now - self.last >= self.every or self.done >= self.total:
            self.last = now
            elapsed = now - self.start
            # a rate over less than a second says nothing (the first batch lands at once)
            rate = f"{self.done / elapsed:.1f}/s, " if elapsed >= 1 else ""
            print(f"{self.description}: {self.done}/{self.total} ({rate}{elapsed:.0f}s) {self.note}".rstrip(),
                  file=sys.stderr, flush=True)
            self.note = ""  # each note once: the next line shows the next loss, not this one again


class _RichBar:
    def __init__(self, progress: Progress, description: str, total: int):
        self.progress, self.task = progress, progress.add_task(description, total=total, note="")

    def advance(self, n: int = 1, note: str | None = None) -> None:
        kw = {} if note is None else {"note": note}
        self.progress.update(self.task, advance=n, **kw)


@contextmanager
def bar(description: str, total: int):
    """``with bar("dump train", n) as b: b.advance(k)`` — rich on a terminal, plain lines otherwise."""
    if not console.is_terminal:
        yield _PlainBar(description, total)
        return
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[note]}")]
    with Progress(*columns, console=console, transient=False) as progress:
        yield _RichBar(progress, description, total)


class TrainerProgress(TrainerCallback):
    """Training and evaluation progress for transformers' Trainer, through ``bar``."""

    def __init__(self):
        self._train = self._train_cm = self._eval = self._eval_cm = None

    def on_train_begin(self, args, state, control, **kwargs):
        self._train_cm = bar("train", state.max_steps)
        self._train = self._train_cm.__enter__()
        if state.global_step:
            self._train.advance(state.global_step, note=f"resumed at step {state.global_step}")

    def on_step_end(self, args, state, control, **kwargs):
        self._train.advance(1)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self._train is not None and logs and "loss" in logs:
            self._train.advance(0, note=f"epoch {state.epoch:.2f} loss {logs['loss']:.4f} lr {logs.get('learning_rate', 0):.2e}")

    def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
        if self._eval is None and eval_dataloader is not None:
            self._eval_cm = bar("evaluate", len(eval_dataloader))
            self._eval = self._eval_cm.__enter__()
        if self._eval is not None:
            self._eval.advance(1)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if self._eval_cm is not None:
            self._eval_cm.__exit__(None, None, None)
            self._eval = self._eval_cm = None
        if metrics:
            shown = ", ".join(f"{k[5:]}={v:.4f}" for k, v in metrics.items()
                              if k.startswith("eval_") and isinstance(v, float) and "runtime" not in k and "per_second" not in k)
            console.print(f"epoch {state.epoch:.2f}: {shown}")

    def on_train_end(self, args, state, control, **kwargs):
        if self._train_cm is not None:
            self._train_cm.__exit__(None, None, None)
            self._train = self._train_cm = None
