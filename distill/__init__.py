"""distill: knowledge distillation from BERT-family teachers into small fast students.

The Python API covers the three things people script; each is the library call behind a command,
and the settings are that command's flags as keyword arguments::

    import distill

    distill.fine_tune(task="sst2", data_dir="../shared/data/glue_data", epochs=1, output_dir="runs/sst2")
    distill.distil(arch="cnn", materials="runs/sst2", output_dir="runs/cnn", seeds=3)
    model = distill.load("runs/cnn")
    model.labels(["a gorgeous, witty film", "a dull mess"])  # ['positive', 'negative']; .predict(...) -> logits

The rest is the core the commands share (``distill.losses``, ``distill.materials``, ``distill.tasks``,
...). ``teachers``, ``students`` and ``benchmarks`` import from here, never the other way: the three
functions live in ``distill.api`` and are looked up by name on first use (PEP 562), so importing the
core never imports them.
"""

__version__ = "0.1.0"
__all__ = ["fine_tune", "distil", "load"]


def __getattr__(name: str):
    if name in __all__:
        import importlib

        return getattr(importlib.import_module("distill.api"), name)
    raise AttributeError(f"module 'distill' has no attribute {name!r}")
