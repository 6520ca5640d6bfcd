"""The benchmark harness on tiny runs: every report file, the results.json schema, and the
summary ratios computed from the measured figures (no test asserts a time)."""

import json
from pathlib import Path

import pytest

from benchmarks import __main__ as bench
from distill.timing import Budget
from benchmarks.report import pareto_front
from students.train import StudentConfig
from students.train import run as student

pytest.importorskip("onnxruntime")
pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def report(sst2_run, tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    cnn = student(StudentConfig(arch="cnn", materials=sst2_run["run_dir"], output_dir=str(root / "cnn"), epochs=1,
                                batch_size=16, save_steps=0, device="cpu"))
    out = root / "report"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("os.getloadavg", lambda: (0.5, 0.5, 0.5))  # the test's machine may be busy: not under test here
        res = bench.run([sst2_run["run_dir"], cnn["run_dir"]], str(out), budget=Budget((2, 4), 0.05, 2, 1),
                        subprocesses=False, bert_base_overrides=dict(hidden_size=32, num_hidden_layers=2,
                                                                     num_attention_heads=2, intermediate_size=64),
                        peak_fn=iter([400e9, 200e9]).__next__)  # another process took a core half-way
    return out, res


def test_busy_machine_is_marked(report):
    from benchmarks.harness import busy_reason

    out, res = report
    mach = json.loads((out / "results.json").read_text())["machine"]
    assert mach["load_before"]["matmul_peak_gflops"] == 400.0 and mach["load_after"]["matmul_peak_gflops"] == 200.0
    assert mach["busy"] == "matmul peak 200.0 vs 400.0 GFLOP/s before/after"
    assert "**Measured on a busy machine (matmul peak 200.0 vs 400.0" in (out / "report.md").read_text()
    quiet = {"loadavg_1min": 1.0, "matmul_peak_gflops": 400.0}
    assert busy_reason(quiet, {**quiet, "matmul_peak_gflops": 350.0}, cores=2) is None
    assert busy_reason(quiet, {**quiet, "loadavg_1min": 3.5}, cores=2) == "load average 3.5 on 2 cores"


def test_report_files_and_schema(report):
    out, res = report
    for f in ("results.json", "report.md", "pareto.png"):
        assert (out / f).is_file() and (out / f).stat().st_size > 0, f
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((out / "results.json").read_text())
    assert data["schema"] == 1 and {"cpu", "cpu_count", "torch", "onnxruntime"} <= set(data["machine"])
    assert [m["kind"] for m in data["models"]] == ["teacher", "student"]
    for m in data["models"]:
        assert {"params", "size_bytes", "peak_rss_mb", "tokenize", "backends", "dev_examples"} <= set(m)
        assert set(m["backends"]) == {"eager", "bf16", "int8", "onnx", "onnx-int8"}
        # re-measured on the whole dev split: eager gives the run's own score from training time, ONNX
        # fp32 the same within one sentence; reduced precision stays near it (a tiny model's near-ties flip)
        trained = json.loads((Path(m["run_dir"]) / "metrics.json").read_text())["dev"]["accuracy"]
        eager = m["backends"]["eager"]["metrics"]["accuracy"]
        assert eager == pytest.approx(trained)
        assert abs(m["backends"]["onnx"]["metrics"]["accuracy"] - eager) <= 1 / m["dev_examples"]
        for backend, r in m["backends"].items():
            assert "error" not in r, (backend, r)
            assert abs(r["metrics"]["accuracy"] - eager) <= 0.2 and r["size_bytes"] > 0
            assert set(r["speed"]) == {"2", "4"}
            for sp in r["speed"].values():
                assert sp["examples_per_s"] > 0 and sp["p50_ms"] <= sp["p95_ms"] <= sp["p99_ms"]
        if m["kind"] == "student":
            assert "teacher_agreement" in m["backends"]["eager"]["metrics"]
    # ONNX fp32 is the eager model: the same dev accuracy
    for m in data["models"]:
        assert m["backends"]["onnx"]["metrics"]["accuracy"] == pytest.approx(m["backends"]["eager"]["metrics"]["accuracy"])
    assert set(data["baselines"]) == {"pipeline", "bert_base_random"}
    s = data["summary"]
    t = data["models"][0]["backends"]
    assert s["teacher_int8_speedup"] == pytest.approx(t["int8"]["speed"]["4"]["examples_per_s"] / t["eager"]["speed"]["4"]["examples_per_s"])
    st = data["models"][1]["backends"]["eager"]["speed"]["4"]["examples_per_s"]
    assert s["best_small_student_speedup_vs_teacher"] == pytest.approx(st / t["eager"]["speed"]["4"]["examples_per_s"])
    assert s["best_small_student_speedup_vs_bert_base"] == pytest.approx(st / data["baselines"]["bert_base_random"]["4"]["examples_per_s"])
    md = (out / "report.md").read_text()
    assert "| teacher | eager |" in md and "pipeline" in md and "pareto.png" in md


def test_pareto_front():
    pts = [{"metric": 0.9, "examples_per_s": 10}, {"metric": 0.85, "examples_per_s": 1000},
           {"metric": 0.84, "examples_per_s": 500}, {"metric": 0.88, "examples_per_s": 100}]
    assert [p["examples_per_s"] for p in pareto_front(pts)] == [1000, 100, 10]


def test_refuses_without_one_teacher(report, tmp_path):
    from distill.errors import DistillInputError

    out, res = report
    with pytest.raises(DistillInputError, match="exactly one teacher"):
        bench.run([res["models"][1]["run_dir"]], str(tmp_path / "r"))
    assert bench.main([str(tmp_path / "missing"), "--output-dir", str(tmp_path / "r")]) == 2
    assert bench.main(["--output-dir", str(tmp_path / "r")]) == 2  # nothing to measure: one sentence


def test_report_only_as_the_readme_writes_it(report, capsys):
    out, res = report
    (out / "report.md").unlink()
    assert bench.main(["--report-only", "--output-dir", str(out)]) == 0
    assert (out / "report.md").is_file()
    assert json.loads(capsys.readouterr().out) == res["summary"]  # the summary alone on stdout


def _counted_encoder_flops(model, shapes) -> float:
    """An independent FLOP count: torch's FlopCounterMode over the encoder of ``model`` (eager attention,
    whose score and mixing matmuls it sees) run on batches of the given (B, L) shapes."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as fc:
        for b, l in shapes:
            model(input_ids=torch.full((b, l), 5), attention_mask=torch.ones(b, l, dtype=torch.long))
    return sum(fc.get_flop_counts()[f"{type(model).__name__}.bert.encoder"].values())


def test_dump_speed_counts_flops_and_matches_pipeline(sst2_run, monkeypatch):
    """benchmarks.dump_speed on the tiny run: the FLOP count is what torch's FlopCounterMode counts in
    the encoder over the batches it ran,
    the pipeline on the same model predicts the same labels, and --arch swaps in a random model of
    another shape (a 8-wide one here; bert-base's parameter count checked on its own)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from benchmarks import dump_speed
    from distill.data import load_split
    from distill.inference import encode, length_sorted_batches
    from distill.tasks import get_task

    real_peaks = dump_speed.matmul_peaks
    monkeypatch.setattr(dump_speed, "matmul_peaks", lambda: real_peaks(n=256, repeats=2))  # 2048^3 x 13 x 2 libs: ~10 s a probe
    run_dir = sst2_run["run_dir"]
    res = dump_speed.run(dump_speed.DumpSpeedConfig(run_dir, split="dev", limit=24, batch_size=8, repeats=1))
    assert res["n"] == 24 and res["pipeline_top_label_agreement"] == 1.0 and not res["random_weights"]

    tok = AutoTokenizer.from_pretrained(f"{run_dir}/best")
    data_dir = json.loads(Path(run_dir, "config.json").read_text())["data_dir"]
    enc = encode(tok, load_split(get_task("sst2"), "dev", data_dir).select(24), res["max_length"])
    shapes = [(len(b), int(enc.lengths[b].max())) for b in length_sorted_batches(enc.lengths, 8)]
    counter = AutoModelForSequenceClassification.from_pretrained(f"{run_dir}/best", attn_implementation="eager").eval()
    want = _counted_encoder_flops(counter, shapes)
    assert res["model_gflop"] * 1e9 == pytest.approx(want)
    assert res["padded_tokens"] == sum(b * l for b, l in shapes) >= res["real_tokens"] == int(enc.lengths.sum())
    assert res["share_of_peak"] == pytest.approx(want / res["ours_model_s"] / (res["matmul_peak_gflops"] * 1e9))
    # the peak is the faster library's; the dump ran as distill.teach's does (prepacked linears)
    by_lib = res["matmul_peaks_by_library_gflops"]
    assert "mkl" in by_lib
    assert [max(lib[r] for lib in by_lib.values()) for r in range(1)] == res["matmul_peaks_gflops"]
    assert res["prepacked_linears"] >= 12 and res["batch_tokens"] == 1024
    # a token budget: batches of at most 40 padded tokens, FLOPs counted over those batches
    small = dump_speed.run(dump_speed.DumpSpeedConfig(run_dir, split="dev", limit=24, batch_size=8, repeats=1, batch_tokens=40,
                                                     prepack=False))
    shapes = [(len(b), int(enc.lengths[b].max())) for b in length_sorted_batches(enc.lengths, 8, 40)]
    assert small["batches"] == len(shapes) > res["batches"] == 3 and small["prepacked_linears"] == 0
    assert all(b * l <= 40 or b == 1 for b, l in shapes)
    assert small["model_gflop"] * 1e9 == pytest.approx(_counted_encoder_flops(counter, shapes))

    monkeypatch.setitem(dump_speed.ARCHS, "tiny", dict(hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                                       intermediate_size=16))
    swapped = dump_speed.run(dump_speed.DumpSpeedConfig(run_dir, split="dev", limit=24, batch_size=8, repeats=1, arch="tiny"))
    assert swapped["random_weights"] and swapped["arch"] == "tiny" and swapped["params"] < res["params"]
    assert swapped["pipeline_top_label_agreement"] == 1.0 and swapped["model_gflop"] < res["model_gflop"]
    base = dump_speed.random_bert("bert-base", tok, AutoModelForSequenceClassification.from_pretrained(f"{run_dir}/best"))
    assert sum(p.numel() for p in base.parameters()) == 109_483_778  # bert-base-uncased with a 2-label head
