"""benchmarks.precision on a tiny teacher: both precisions train and dump, the ratios and the bf16
dump's agreement are computed from the runs' own files (no test asserts a time)."""

import json
from pathlib import Path

from benchmarks.precision import PrecisionConfig, run


def test_bf16_against_fp32_on_tiny_teacher(tiny_bert, glue_dir, tmp_path):
    res = run(PrecisionConfig(teacher=str(tiny_bert), data_dir=str(glue_dir), train_samples=64, seeds=1, lr=3e-3,
                              output_dir=str(tmp_path)))
    assert [(t["precision"], t["seed"]) for t in res["trains"]] == [("fp32", 42), ("bf16", 42)]
    for t in res["trains"]:
        assert t["train_s"] > 0 and t["eval_s"] > 0 and t["dev_metric"] == "accuracy"
        cfg = json.loads((Path(t["run_dir"]) / "config.json").read_text())
        assert cfg["precision"] == t["precision"] and cfg["max_train_samples"] == 64
    fp32 = Path(res["trains"][0]["run_dir"])
    ref = json.loads((fp32 / "metrics.json").read_text())["dev"]["accuracy"]
    assert res["dumps"]["fp32"]["metrics"]["accuracy"] == ref  # the fp32 dump re-scores the same model
    assert res["dev_by_precision"]["fp32"] == [ref]
    assert 0.9 <= res["dump_top_label_agreement"] <= 1.0  # 40 dev rows of a tiny model
    assert 0 < res["dump_max_abs_logit_diff"] < 0.1  # bf16 rounding, not a different model
    assert res["train_speed_bf16_over_fp32"] > 0 and res["dump_speed_bf16_over_fp32"] > 0
