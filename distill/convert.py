"""``distill convert FOLDER OUT``: turn one of Google's original BERT release folders
(``bert_config.json``, ``vocab.txt``, ``bert_model.ckpt.*``: TensorFlow) into a transformers folder.

    distill convert uncased_L-12_H-768_A-12 models/bert-base-uncased
    distill teach --task sst2 --teacher models/bert-base-uncased ...   # or --teacher uncased_L-12_H-768_A-12 (cached)

No TensorFlow needed (``teachers.tf_checkpoint`` reads the checkpoint). Every encoder variable maps to
one parameter; Adam slots, ``global_step`` and the pre-training heads are skipped by a written list; a
``run_classifier.py`` fine-tune keeps its classifier head; cased/uncased comes from the folder name,
checked against the vocab.
"""

from __future__ import annotations

from dataclasses import dataclass

from distill.cli import dataclass_main, field_docs
from distill.errors import DistillInputError


@field_docs
@dataclass
class ConvertConfig:
    __positional__ = ("folder", "output_dir")

    folder: str  # Google's release folder: bert_config.json, vocab.txt, bert_model.ckpt.index + .data-*
    output_dir: str  # the transformers folder to write (must not exist yet)


def run(cfg: ConvertConfig) -> dict:
    from pathlib import Path

    from teachers.google import convert

    if Path(cfg.output_dir).exists():
        raise DistillInputError(f"{cfg.output_dir} already exists; choose a new output folder")
    out = convert(cfg.folder, cfg.output_dir)
    return {"output_dir": str(out), "files": sorted(p.name for p in out.iterdir())}


def main(argv: list[str] | None = None) -> int:
    return dataclass_main(ConvertConfig, "python -m distill.convert", __doc__, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
