"""``python -m distill.student --arch cnn --materials TEACH_RUN --output-dir RUN``: distil a teacher's
materials into a small fast student (TextCNN, BiLSTM or a small transformer).

The task, label names, tokenizer, max length and splits come from the teacher run's manifest; the
student reads the teacher's outputs row by row of the materials, matched by example id. ``--no-kd``
trains the same student on gold labels only (the baseline every report shows). ``--seeds K`` trains
K seeds into RUN/seed-<s>/ and writes their mean ± std to RUN/metrics.json.

    python -m distill.student --arch cnn --materials runs/sst2-full --output-dir runs/cnn-sst2 --seeds 3
    python -m distill.student --arch bilstm --materials runs/sst2-full --output-dir runs/bilstm-nokd --no-kd
    python -m distill.predict runs/cnn-sst2/seed-42 --input sentences.txt
"""

from __future__ import annotations

import sys

from distill.cli import print_result, quiet_transformers, run_cli


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)

    quiet_transformers()

    def body():
        from students.train import config_from_args, run

        cfg = config_from_args(argv)
        result = run(cfg, show_progress=True)
        print_result({"run_dir": result["run_dir"], "metrics": result["metrics"]})

    return run_cli(body)


if __name__ == "__main__":
    raise SystemExit(main())
