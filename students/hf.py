"""``python -m students.hf RUN/model``: make a student's model folder written before students shipped their
transformers config loadable in plain transformers (``from_pretrained(folder, trust_remote_code=True)``):
writes config.json and ``distill_modeling.py`` beside the weights, which stay untouched."""

from __future__ import annotations

import sys
from pathlib import Path

from students.train import migrate_model_folder


def main(argv: list[str] | None = None) -> int:
    for f in sys.argv[1:] if argv is None else argv:
        folder = Path(f) / "model" if (Path(f) / "model" / "student.json").is_file() else Path(f)
        if not (folder / "student.json").is_file():
            print(f"error: {f} holds no student.json; pass a student run or its model/ folder", file=sys.stderr)
            return 2
        print(f"{folder}: {'written' if migrate_model_folder(folder) else 'nothing to do (config.json present)'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
