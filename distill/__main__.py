"""``distill <command> [flags]``: every command of the suite under one name (the ``distill`` console
script, or ``python -m distill``); each is exactly its ``python -m`` form — ``distill teach`` runs
``python -m distill.teach``'s ``main`` with the same flags."""

from __future__ import annotations

import importlib
import sys

# subcommand -> (the module whose main(argv) it runs, its one line in --help); a command added later is one line here
COMMANDS = {
    "teach": ("distill.teach", "fine-tune a teacher on a task and dump its teaching materials"),
    "student": ("distill.student", "distil a teacher run's materials into a small fast student"),
    "tune": ("distill.tune", "Optuna study over a student's settings (resumable, pruned, optionally accuracy x latency)"),
    "augment": ("distill.augment", "write a transfer set of perturbed training sentences for the teacher to label"),
    "predict": ("distill.predict", "label new texts with a teacher or student run"),
    "export": ("distill.export", "write a run's model as ONNX (and ONNX int8), checked against PyTorch"),
    "bench": ("benchmarks.__main__", "accuracy against throughput for a teacher and its students on this machine"),
    "launch": ("distill.launch", "run teach or student on every TPU core (torch-xla's launcher)"),
    "push": ("distill.push", "upload a run's model (and its card) to the Hugging Face Hub (needs the network)"),
    "kaggle": ("distill.kaggle_bundle", "write a Kaggle kernel bundle (metadata, wheelhouse, script) that runs one distill command"),
    "convert": ("distill.convert", "turn a Google BERT release folder (TensorFlow checkpoint) into a transformers folder"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        width = max(map(len, COMMANDS))
        lines = [f"  {name:<{width}}  {line}" for name, (_, line) in COMMANDS.items()]
        print("usage: distill <command> [flags]   (distill <command> --help for its flags)\n\ncommands:\n" + "\n".join(lines))
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}; one of {', '.join(COMMANDS)} (distill --help)", file=sys.stderr)
        return 2
    return importlib.import_module(COMMANDS[name][0]).main(rest) or 0


if __name__ == "__main__":
    raise SystemExit(main())
