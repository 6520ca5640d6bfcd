"""``python -m distill.teach``: fine-tune a BERT-family teacher on a task and dump its teaching materials.

    python -m distill.teach --task sst2 --data-dir ../shared/data/glue_data --epochs 1 --output-dir runs/teach-sst2
    python -m distill.teach --output-dir runs/teach-sst2 --resume          # after a crash or kill
    python -m distill.teach --output-dir runs/teach-sst2 --dump-only --extra unlabelled=more.txt
    python -m distill.teach --ensemble runs/teach-sst2 runs/mpnet-sst2 --output-dir runs/ensemble-sst2

Writes RUN/config.json, RUN/log.jsonl, RUN/checkpoints/, RUN/best/ (the best model by the task's
first metric on dev), RUN/materials/ (see distill.materials) and RUN/metrics.json
({split: {metric: value}}, computed from the dumped logits of the best model).
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from distill.cli import config_from, dataclass_parser, given_fields, print_result, quiet_transformers, run_cli


def main(argv: list[str] | None = None) -> int:
    quiet_transformers()

    def body():
        from teachers.pipeline import TeachConfig, run

        args = dataclass_parser(TeachConfig, "python -m distill.teach", __doc__).parse_args(argv)
        cfg = config_from(TeachConfig, args)
        run_dir = Path(cfg.output_dir or f"runs/teach-{cfg.task}")
        if (cfg.resume or cfg.dump_only) and (run_dir / "config.json").is_file():
            # the run's saved flags, overridden only by the flags given now
            given = given_fields(argv or sys.argv[1:], [f.name for f in dataclasses.fields(TeachConfig)])
            cfg = TeachConfig.from_run(run_dir, **{k: getattr(cfg, k) for k in given | {"resume", "dump_only"}})
        result = run(cfg, show_progress=True)
        print_result({"run_dir": result["run_dir"], "metrics": result["metrics"]})

    return run_cli(body)


if __name__ == "__main__":
    raise SystemExit(main())
