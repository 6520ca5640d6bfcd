import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, teach_cfg
from distill import materials
from distill.errors import DistillInputError
from distill.predict import PredictConfig
from distill.predict import run as predict
from distill.teach import main
from teachers.pipeline import TeachConfig, run


def test_run_directory_contract(sst2_run):
    run_dir = Path(sst2_run["run_dir"])
    for f in ("config.json", "metrics.json", "log.jsonl", "timings.json", "best/best.json", "materials/manifest.json"):
        assert (run_dir / f).is_file(), f
    assert not (run_dir / "checkpoints").exists()  # optimiser state dropped once training finished
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["kind"] == "teacher" and cfg["task"] == "sst2" and cfg["device"] == "cpu"
    m = json.loads((run_dir / "metrics.json").read_text())
    assert set(m) == {"train", "dev"} and set(m["dev"]) == {"accuracy"}
    # the tiny teacher learns the toy sentiment data
    assert m["dev"]["accuracy"] >= 0.9, m
    events = [json.loads(line)["event"] for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert events[0] == "start" and "eval" in events and "best" in events and events[-1] == "done"
    assert events.count("dump") == 3


def test_materials_match_predictions(sst2_run, glue_dir, tmp_path):
    run_dir = Path(sst2_run["run_dir"])
    dev = materials.load(run_dir, "dev", task="sst2")
    assert dev.logits.shape == (40, 2) and dev.embeddings.shape == (40, 32) and dev.labels.shape == (40,)
    # the pooled vector is what the head reads: classifier(pooled) reproduces the logits
    import torch
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(run_dir / "best").eval()
    with torch.no_grad():
        again = model.classifier(torch.from_numpy(np.array(dev.embeddings))).numpy()
    np.testing.assert_allclose(again, dev.logits, atol=1e-5)
    # metrics.json was computed from these arrays, and predict agrees with them row by row
    acc = float((dev.logits.argmax(-1) == dev.labels).mean())
    assert acc == pytest.approx(sst2_run["metrics"]["dev"]["accuracy"])
    texts = tmp_path / "dev.txt"
    texts.write_text("\n".join(dev.text_a) + "\n")
    out = predict(PredictConfig(str(run_dir), str(texts), str(tmp_path / "pred.tsv")))
    np.testing.assert_allclose(out["logits"], dev.logits, atol=1e-5)
    rows = (tmp_path / "pred.tsv").read_text().splitlines()
    assert rows[0] == "id\tlabel\tp_negative\tp_positive" and len(rows) == 41
    assert [r.split("\t")[1] for r in rows[1:]] == [("negative", "positive")[i] for i in dev.logits.argmax(-1)]
    test = materials.load(run_dir, "test", task="sst2")
    assert test.labels is None and len(test) == 24
    assert materials.load(run_dir, "train").manifest["teacher"]["weights_sha256"] == dev.manifest["teacher"]["weights_sha256"]


def test_dump_only_is_reproducible_and_adds_extra(sst2_run, tmp_path):
    run_dir = Path(sst2_run["run_dir"])
    before = materials.load(run_dir, "dev").logits.copy()
    extra = tmp_path / "more.txt"
    extra.write_text("what a wonderful film\nan awful script\n")
    res = run(TeachConfig.from_run(run_dir, dump_only=True, splits=("dev",), extra=(f"unlabelled={extra}",)))
    np.testing.assert_allclose(materials.load(run_dir, "dev").logits, before, atol=1e-6)
    more = materials.load(run_dir, "unlabelled")
    assert more.labels is None and more.text_a == ["what a wonderful film", "an awful script"]
    assert "train" in more.manifest["splits"]  # same teacher: other splits kept
    assert set(res["metrics"]) >= {"dev"}


def test_compiled_dump_matches_eager(sst2_run, tmp_path):
    """--compile (inductor, frozen weights) writes the same materials as the eager dump."""
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(sst2_run["run_dir"], run_dir)
    eager = materials.load(run_dir, "dev")
    logits, pooled = eager.logits.copy(), eager.embeddings.copy()
    run(TeachConfig.from_run(run_dir, dump_only=True, splits=("dev",), compile=True))
    compiled = materials.load(run_dir, "dev")
    assert compiled.ids == eager.ids
    np.testing.assert_allclose(compiled.logits, logits, atol=1e-4)
    np.testing.assert_allclose(compiled.embeddings, pooled, atol=1e-4)


def test_prepacked_dump_matches_plain_eager(sst2_run, tmp_path):
    """The default CPU dump (oneDNN-prepacked linears, token-budget batches, one worker thread per
    torch thread) writes the materials a plain eager one-stream dump in fixed batches writes."""
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(sst2_run["run_dir"], run_dir)
    fast = materials.load(run_dir, "dev")
    logits, pooled = fast.logits.copy(), fast.embeddings.copy()
    setup = [json.loads(x) for x in (run_dir / "log.jsonl").read_text().splitlines() if '"dump_setup"' in x]
    assert setup[-1]["prepacked_linears"] >= 12 and setup[-1]["batch_tokens"] == 1024
    assert setup[-1]["workers"] == setup[-1]["threads"] >= 1
    run(TeachConfig.from_run(run_dir, dump_only=True, splits=("dev",), prepack=False, dump_batch_tokens=0, dump_workers=1))
    plain = materials.load(run_dir, "dev")
    setup = [json.loads(x) for x in (run_dir / "log.jsonl").read_text().splitlines() if '"dump_setup"' in x]
    assert setup[-1]["prepacked_linears"] == 0 and setup[-1]["batch_tokens"] == 0 and setup[-1]["workers"] == 1
    assert plain.ids == fast.ids
    np.testing.assert_allclose(plain.logits, logits, atol=1e-5)
    np.testing.assert_allclose(plain.embeddings, pooled, atol=1e-5)


@pytest.mark.parametrize("task,metric_keys", [("cola", {"mcc", "accuracy"}), ("mrpc", {"f1", "accuracy"}),
                                              ("stsb", {"pearson", "spearman"})])
def test_other_tasks(tiny_bert, glue_dir, tmp_path, task, metric_keys):
    res = run(teach_cfg(task=task, teacher=str(tiny_bert), data_dir=str(glue_dir), output_dir=str(tmp_path / task),
                        epochs=1, splits=("dev",)))
    assert set(res["metrics"]["dev"]) == metric_keys
    dev = materials.load(tmp_path / task, "dev", task=task)
    assert dev.logits.shape[1] == (1 if task == "stsb" else 2)
    if task == "mrpc":
        assert dev.text_b is not None


@pytest.mark.parametrize("argv, match", [
    (["--task", "sst3"], "unknown task 'sst3'"),
    (["--data-dir", "/nonexistent/glue"], "does not exist"),
    (["--epochs", "0"], "--epochs must be > 0"),
    (["--precision", "fp16"], "fp16 needs CUDA"),
    (["--teacher", "/nonexistent/model"], "teacher folder /nonexistent/model does not exist"),
    (["--teacher", "no-such-org/no-such-model"], "could not be loaded from Hub model"),
    (["--extra", "dev=x.txt"], "clashes"),
    (["--compile", "--dump-workers", "2"], "--compile runs one compiled teacher"),
    (["--dump-workers", "-1"], "--dump-workers must be >= 0"),
])
def test_bad_input_exit_2_nothing_written(tmp_path, capsys, glue_dir, argv, match):
    out = tmp_path / "run"
    code = main(["--data-dir", str(glue_dir), "--output-dir", str(out), *argv])
    err = capsys.readouterr().err
    assert code == 2 and match in err, err
    assert err.count("\n") == 1  # one sentence
    assert not out.exists()


def test_refuses_existing_run_and_bad_resume(sst2_run, tmp_path):
    with pytest.raises(DistillInputError, match="already holds a run; pass --resume"):
        run(teach_cfg(output_dir=sst2_run["run_dir"]))
    with pytest.raises(DistillInputError, match="other --lr"):
        run(TeachConfig.from_run(sst2_run["run_dir"], resume=True, lr=0.5))
    with pytest.raises(DistillInputError, match="holds no run"):
        run(teach_cfg(output_dir=str(tmp_path / "new"), resume=True))


def _cmd(tiny_bert, glue_dir, out, *extra):
    return [sys.executable, "-m", "distill.teach", "--task", "sst2", "--teacher", str(tiny_bert), "--data-dir",
            str(glue_dir), "--output-dir", str(out), "--epochs", "30", "--batch-size", "8", "--lr", "3e-3",
            "--max-length", "32", "--seed", "0", "--save-steps", "20", "--patience", "0", "--splits", "dev", *extra]


def test_sigkill_then_resume_finishes(tiny_bert, glue_dir, tmp_path):
    """Kill the process mid-training (after a checkpoint), resume, and land on the same step count."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = tmp_path / "run"
    proc = subprocess.Popen(_cmd(tiny_bert, glue_dir, out), cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "checkpoints" / "checkpoint-60" / "trainer_state.json").exists():
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "train_summary.json").exists(), "training finished before the kill; the test needs a slower run"
    done = subprocess.run(_cmd(tiny_bert, glue_dir, out, "--resume"), cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["global_step"] == 30 * 20  # 160 examples / batch 8 = 20 steps an epoch
    events = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    resumed = [e for e in events if e["event"] == "resume"]
    assert resumed and int(resumed[0]["checkpoint"].split("-")[1]) >= 60
    assert json.loads((out / "metrics.json").read_text())["dev"]["accuracy"] >= 0.9


def test_dump_only_refuses_untrained_head(tmp_path, tokenizer_dir, glue_dir):
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    enc = tmp_path / "encoder"  # an encoder without any classification head
    BertModel(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(enc)
    for f in tokenizer_dir.iterdir():
        (enc / f.name).write_bytes(f.read_bytes())
    with pytest.raises(DistillInputError, match="no fine-tuned classification head"):
        run(teach_cfg(teacher=str(enc), data_dir=str(glue_dir), output_dir=str(tmp_path / "run"), dump_only=True))
    assert not (tmp_path / "run").exists()


def test_extra_split_streams_in_shards_and_resumes(sst2_run, tmp_path, monkeypatch):
    """An --extra file is labelled --shard-size rows at a time; a run killed after some shards
    keeps them, the next run computes only the rest, and the assembled split equals a one-shot dump."""
    import shutil

    from distill import materials
    from distill.data import read_text_file
    from teachers import dump as mat_mod  # the dump's own reference to materials.write_shard
    from teachers.pipeline import TeachConfig
    from teachers.pipeline import run as teach

    extra = tmp_path / "more.txt"
    extra.write_text("\n".join(f"sentence number {i} is {'great' if i % 2 else 'awful'}" for i in range(50)) + "\n")
    one = tmp_path / "one"
    shutil.copytree(sst2_run["run_dir"], one)
    teach(TeachConfig.from_run(one, dump_only=True, splits=("dev",), extra=(f"more={extra}",), device="cpu"))
    sharded = tmp_path / "sharded"
    shutil.copytree(sst2_run["run_dir"], sharded)
    real_write = mat_mod.write_shard

    def killed_at_shard_2(folder, ex, logits, pooled, meta):
        if meta["index"] == 2:
            raise KeyboardInterrupt("killed")
        real_write(folder, ex, logits, pooled, meta)

    cfg = TeachConfig.from_run(sharded, dump_only=True, splits=("dev",), extra=(f"more={extra}",), shard_size=16, device="cpu")
    n_log = len((sharded / "log.jsonl").read_text().splitlines())  # events of earlier tests on the shared run
    monkeypatch.setattr(mat_mod, "write_shard", killed_at_shard_2)
    with pytest.raises(KeyboardInterrupt):
        teach(cfg)
    assert sorted(p.name for p in (sharded / "materials" / ".more.shards").iterdir()) == ["00000", "00001"]
    monkeypatch.setattr(mat_mod, "write_shard", real_write)
    teach(cfg)
    log = [json.loads(line) for line in (sharded / "log.jsonl").read_text().splitlines()[n_log:]]
    assert [e["shard"] for e in log if e["event"] == "dump_shard"] == [0, 1, 2, 3]  # 0, 1 before the kill; 2, 3 after
    assert not (sharded / "materials" / ".more.shards").exists()
    a, b = materials.load(one, "more"), materials.load(sharded, "more")
    assert a.ids == b.ids and len(b) == 50
    np.testing.assert_allclose(a.logits, b.logits, atol=1e-5)
    np.testing.assert_allclose(a.soft, b.soft, atol=1e-5)
    np.testing.assert_allclose(a.embeddings, b.embeddings, atol=1e-5)
    ex = read_text_file(extra, split="more")
    info = b.manifest["splits"]["more"]
    assert info["text_sha256"] == ex.text_sha256() and info["shards"] == 4
    materials.load(sharded, "more", ids=ex.ids, text_sha256=ex.text_sha256())  # the reader accepts it


@pytest.mark.parametrize("argv", [["distill.teach"], ["distill.student", "--arch", "cnn"], ["distill.student", "--arch", "bilstm"],
                                  ["distill.student", "--arch", "transformer"], ["distill.tune"], ["distill.augment"]])
def test_every_cli_help_prints(argv, capsys):
    """--help lists every flag (a '%' in a field doc once made argparse crash on it)."""
    import importlib

    mod = importlib.import_module(argv[0])
    with pytest.raises(SystemExit) as e:
        mod.main([*argv[1:], "--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and "--output" in out and "(default:" in out
    import re

    flat = " ".join(out.split())  # argparse wraps help lines
    assert not re.search(r"\(default: ([^)]*)\) \(default: \1\)", flat), "a default printed twice"
