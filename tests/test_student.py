"""Students end to end on tiny teachers: every arch, single sentences and pairs, KD and --no-kd,
seeds, exact resume, prediction from the run directory alone, and the refusals."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from distill import materials
from distill.errors import DistillInputError
from distill.predict import PredictConfig
from distill.predict import run as predict
from distill.student import main
from students.train import StudentConfig, command_line, config_from_args, run


def student_cfg(mat, out, **kw):
    base = dict(materials=str(mat), output_dir=str(out), epochs=3, batch_size=16, save_steps=0, log_every=5, device="cpu")
    base.update(kw)
    return StudentConfig(**base)


@pytest.fixture(scope="module")
def cnn_run(sst2_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("students") / "cnn"
    return run(student_cfg(sst2_run["run_dir"], out, epochs=4, lr=5e-3))


def test_cnn_run_directory(cnn_run, sst2_run):
    run_dir = Path(cnn_run["run_dir"])
    for f in ("config.json", "metrics.json", "log.jsonl", "README.md", "train_summary.json",
              "model/model.safetensors", "model/student.json", "model/tokenizer.json", "checkpoint/state.json"):
        assert (run_dir / f).is_file(), f
    m = json.loads((run_dir / "metrics.json").read_text())
    assert set(m["dev"]) == {"accuracy", "teacher_agreement"}
    assert m["dev"]["accuracy"] >= 0.9, m  # the toy sentiment data is easy
    # the teacher is right on the toy dev set too, so agreeing with it means being right
    assert m["dev"]["teacher_agreement"] >= 0.85
    assert m["params"] == sum(v.numel() for v in __import__("safetensors.torch").torch.load_file(
        run_dir / "model/model.safetensors").values())
    card = (run_dir / "README.md").read_text()
    assert "python -m distill.student" in card and f"{m['params']:,}" in card and "| dev | accuracy |" in card
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["kind"] == "student" and cfg["task"] == "sst2" and cfg["max_length"] == 32 and cfg["temperature"] == 2.0


def test_predict_on_student_run_matches_eval(cnn_run, sst2_run, tmp_path):
    run_dir = Path(cnn_run["run_dir"])
    dev = materials.load(sst2_run["run_dir"], "dev")
    texts = tmp_path / "dev.txt"
    texts.write_text("\n".join(dev.text_a) + "\n")
    out = predict(PredictConfig(str(run_dir), str(texts), str(tmp_path / "pred.tsv")))
    acc = float((out["logits"].argmax(-1) == dev.labels).mean())
    assert acc == pytest.approx(cnn_run["metrics"]["dev"]["accuracy"])
    agree = float((out["logits"].argmax(-1) == dev.logits.argmax(-1)).mean())
    assert agree == pytest.approx(cnn_run["metrics"]["dev"]["teacher_agreement"])


@pytest.mark.parametrize("arch", ["cnn", "bilstm", "transformer"])
def test_every_arch_on_pairs(arch, mrpc_run, tmp_path):
    res = run(student_cfg(mrpc_run["run_dir"], tmp_path / arch, arch=arch, epochs=2,
                          lr=5e-3 if arch != "transformer" else 1e-3))
    dev = res["metrics"]["dev"]
    assert set(dev) == {"f1", "accuracy", "teacher_agreement"}
    # predict reads pairs from a two-column TSV and reproduces the evaluation: every dev figure
    # recomputed from its labels with scikit-learn
    from sklearn.metrics import accuracy_score, f1_score

    mat = materials.load(mrpc_run["run_dir"], "dev")
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("sentence1\tsentence2\n" + "".join(f"{a}\t{b}\n" for a, b in zip(mat.text_a, mat.text_b)))
    pred = predict(PredictConfig(res["run_dir"], str(tsv)))["logits"].argmax(-1)
    assert accuracy_score(mat.labels, pred) == pytest.approx(dev["accuracy"])
    assert f1_score(mat.labels, pred) == pytest.approx(dev["f1"])
    assert accuracy_score(mat.logits.argmax(-1), pred) == pytest.approx(dev["teacher_agreement"])


def test_students_are_padding_invariant_and_transformer_copies_teacher_layers(tiny_bert):
    from students import CNNConfig, TextCNN, TransformerConfig, TransformerStudent
    from students.base import load_teacher_weights

    torch.manual_seed(0)
    cnn = TextCNN(CNNConfig(embed_dim=8, num_filters=4), vocab_size=50, num_labels=2, pad_id=0, is_pair=False,
                  teacher_width=32).eval()
    with torch.no_grad():
        cnn.embedding.weight[0].fill_(1.0)  # a teacher's [PAD] vector is not zero: it must not leak in
    ids = torch.tensor([[5, 6, 7, 0, 0, 0, 0], [5, 6, 7, 8, 9, 10, 11], [5, 6, 0, 0, 0, 0, 0]])
    mask = (ids != 0).long()
    full = cnn(ids, mask).logits
    torch.testing.assert_close(full[:1], cnn(ids[:1, :3], mask[:1, :3]).logits)
    torch.testing.assert_close(full[2:], cnn(ids[2:, :2], mask[2:, :2]).logits)
    # BiLSTM: the per-row reversal equals a bidirectional LSTM over the packed sequence
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    from students import BiLSTM, BiLSTMConfig
    from distill.hf_modeling import masked_max

    lstm = BiLSTM(BiLSTMConfig(embed_dim=8, hidden=6), vocab_size=50, num_labels=2, pad_id=0, is_pair=False,
                  teacher_width=32).eval()
    ref = torch.nn.LSTM(8, 6, batch_first=True, bidirectional=True)
    ref.load_state_dict({**{k: v for k, v in lstm.lstm_fwd.state_dict().items()},
                         **{k + "_reverse": v for k, v in lstm.lstm_bwd.state_dict().items()}})
    with torch.no_grad():
        packed = pack_padded_sequence(lstm.embedding(ids), mask.sum(1), batch_first=True, enforce_sorted=False)
        h, _ = pad_packed_sequence(ref(packed)[0], batch_first=True, total_length=ids.shape[1])
        torch.testing.assert_close(lstm.encode(ids, mask), masked_max(h, mask))
        torch.testing.assert_close(lstm(ids, mask).logits[:1], lstm(ids[:1, :3], mask[:1, :3]).logits)
    state, conf = load_teacher_weights(tiny_bert)
    st = TransformerStudent(TransformerConfig(layers=1), vocab_size=conf["vocab_size"], num_labels=2, pad_id=0,
                            is_pair=False, teacher_width=32)
    st.init_from_teacher(state, conf)
    torch.testing.assert_close(st.bert.encoder.layer[0].attention.self.query.weight,
                               state["bert.encoder.layer.0.attention.self.query.weight"])
    torch.testing.assert_close(st.embedding.weight, state["bert.embeddings.word_embeddings.weight"])


def test_no_kd_ignores_the_teacher(sst2_run, tmp_path):
    """--no-kd never reads the teacher's outputs: with the teacher's logits scrambled it trains the
    same model, while KD (alpha = 1) learns something else."""
    import shutil

    from safetensors.torch import load_file

    scrambled = tmp_path / "teacher"
    shutil.copytree(sst2_run["run_dir"], scrambled)
    f = scrambled / "materials/train/logits.npy"
    np.save(f, -np.load(f))  # the teacher now says the opposite
    from distill.materials import file_records

    manifest = json.loads((scrambled / "materials/manifest.json").read_text())  # recorded as if dumped so
    manifest["splits"]["train"]["files"] = file_records(f.parent)
    (scrambled / "materials/manifest.json").write_text(json.dumps(manifest))
    a = run(student_cfg(sst2_run["run_dir"], tmp_path / "a", kd=False, epochs=2))
    run(student_cfg(scrambled, tmp_path / "b", kd=False, epochs=2))
    cfg = json.loads((Path(a["run_dir"]) / "config.json").read_text())
    assert cfg["alpha"] == 0 and cfg["beta"] == 0
    wa, wb = load_file(tmp_path / "a/model/model.safetensors"), load_file(tmp_path / "b/model/model.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    kd = run(student_cfg(scrambled, tmp_path / "kd", alpha=1.0, epochs=2))
    assert kd["metrics"]["dev"]["accuracy"] < 0.5 < a["metrics"]["dev"]["accuracy"]  # it learnt the inverted teacher
    nokd_log = [json.loads(x) for x in (Path(a["run_dir"]) / "log.jsonl").read_text().splitlines()]
    assert all(e["soft"] == 0 for e in nokd_log if e["event"] == "train")


def test_hidden_loss_and_seeds(sst2_run, tmp_path):
    res = run(student_cfg(sst2_run["run_dir"], tmp_path / "s", seeds=2, beta=1.0, epochs=2))
    m = res["metrics"]
    vals = [m["seeds"][s]["dev"]["accuracy"] for s in ("42", "43")]
    assert m["dev"]["accuracy"] == pytest.approx(np.mean(vals))
    assert m["dev"]["accuracy_std"] == pytest.approx(np.std(vals, ddof=1))
    log = [json.loads(x) for x in (tmp_path / "s" / "seed-43" / "log.jsonl").read_text().splitlines()]
    assert any(e.get("hidden", 0) > 0 for e in log if e["event"] == "train")
    # predict on the multi-seed folder uses the best seed
    assert predict(PredictConfig(res["run_dir"], str(_texts(tmp_path))))["n"] == 2


def _texts(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("a wonderful film\nawful script\n")
    return f


# A student run in its own process, killed by a real SIGKILL from inside its training loop after
# argv[2] optimiser steps: no Python unwinding, no finally blocks, the run lock dropped by the kernel.
_SIGKILLED_RUN = """
import contextlib, json, os, signal, sys
import students.train as d
from students.train import StudentConfig, run

steps = int(sys.argv[2])

def progress(desc, total):
    class Bar:
        def advance(self, k=1, note=None):
            global steps
            if desc.startswith("epoch"):
                steps -= k
                if steps < 0:
                    os.kill(os.getpid(), signal.SIGKILL)
    return contextlib.nullcontext(Bar())

fit = d.fit
d.fit = lambda *a, **kw: fit(*a, **{**kw, "progress": progress})
run(StudentConfig(**json.loads(sys.argv[1])))
"""


def test_resume_after_sigkill_replays_exactly(sst2_run, tmp_path):
    """SIGKILLed mid-epoch 2 and resumed from the step checkpoint: same weights as one go."""
    import dataclasses
    import signal
    import subprocess
    import sys

    from safetensors.torch import load_file

    ref = run(student_cfg(sst2_run["run_dir"], tmp_path / "ref", save_steps=4, epochs=3, patience=0))
    cut = student_cfg(sst2_run["run_dir"], tmp_path / "cut", save_steps=4, epochs=3, patience=0)
    # 10 steps/epoch: dies at step 17, after the step-16 checkpoint
    proc = subprocess.run([sys.executable, "-c", _SIGKILLED_RUN, json.dumps(dataclasses.asdict(cut)), str(10 + 6)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    state = json.loads((tmp_path / "cut" / "checkpoint" / "state.json").read_text())
    assert state["epoch"] == 1 and state["batch"] == 6
    assert not (tmp_path / "cut" / "metrics.json").exists()
    res = run(dataclasses.replace(cut, resume=True))
    # epoch 2's time holds its 6 batches before the kill as well as the 4 after it
    assert 0 < state["epoch_elapsed"] < res["summary"]["epoch_seconds"][1]
    a, b = load_file(tmp_path / "ref/model/model.safetensors"), load_file(tmp_path / "cut/model/model.safetensors")
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=1e-5)
    assert res["metrics"]["dev"] == ref["metrics"]["dev"]


def test_eval_steps_keeps_the_best_of_every_evaluation(sst2_run, tmp_path):
    """--eval-steps 4 (10 steps an epoch): dev is scored 4 and 8 steps into each epoch and at its end
    (global steps 4, 8, 10, 14, ...), never a step after an epoch end, and the best of all
    is kept, while training itself is untouched (same final weights as epoch-end evaluation only)."""
    from safetensors.torch import load_file

    ref = run(student_cfg(sst2_run["run_dir"], tmp_path / "ref", epochs=3, patience=0, lr=5e-3))
    res = run(student_cfg(sst2_run["run_dir"], tmp_path / "mid", epochs=3, patience=0, lr=5e-3, eval_steps=4))
    events = [json.loads(line) for line in (tmp_path / "mid/log.jsonl").read_text().splitlines()]
    evals = [e for e in events if e["event"] == "eval"]
    assert [e["step"] for e in evals] == [4, 8, 10, 14, 18, 20, 24, 28, 30]
    assert [e["epoch"] for e in evals][:4] == [0.4, 0.8, 1, 1.4]
    ref_evals = [json.loads(line) for line in (tmp_path / "ref/log.jsonl").read_text().splitlines()]
    ref_evals = [e for e in ref_evals if e["event"] == "eval"]
    # the epoch-end scores are the same as without mid-epoch evaluations ...
    assert [e["accuracy"] for e in evals if e["step"] % 10 == 0] == [e["accuracy"] for e in ref_evals]
    a = load_file(tmp_path / "ref/checkpoint/model.safetensors")
    b = load_file(tmp_path / "mid/checkpoint/model.safetensors")
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=0, rtol=0)
    # ... and the kept model is the best of all nine, scored again from the run directory
    best = max(e["accuracy"] for e in evals)
    assert res["metrics"]["dev"]["accuracy"] == best >= ref["metrics"]["dev"]["accuracy"]
    assert res["summary"]["best_epoch"] == next(e["epoch"] for e in evals if e["accuracy"] == best)


def test_refusals(sst2_run, mrpc_run, tmp_path, capsys):
    mat = sst2_run["run_dir"]
    # materials of another task than asked for
    assert main(["--materials", mat, "--task", "mrpc", "--output-dir", str(tmp_path / "x")]) == 2
    assert "holds materials for task 'sst2', not --task 'mrpc'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    # resuming a run with another teacher's materials
    run(student_cfg(mat, tmp_path / "r", epochs=1))
    with pytest.raises(DistillInputError, match="different teacher's materials|other"):
        run(student_cfg(mrpc_run["run_dir"], tmp_path / "r", epochs=1, resume=True))
    # materials that were dumped by another teacher than the run's model folder
    bad = tmp_path / "tampered"
    import shutil

    shutil.copytree(mat, bad)
    man = json.loads((bad / "materials/manifest.json").read_text())
    man["teacher"]["weights_sha256"] = "0" * 64
    (bad / "materials/manifest.json").write_text(json.dumps(man))
    assert main(["--materials", str(bad), "--output-dir", str(tmp_path / "y")]) == 2
    assert "dumped by a different teacher" in capsys.readouterr().err
    # unknown arch option, bad flag values, missing config file
    assert main(["--materials", mat, "--arch", "cnn", "--hidden", "3"]) == 2
    assert "--hidden is not an option of --arch cnn (it is one of --arch bilstm, transformer)" in capsys.readouterr().err
    assert main(["--materials", mat, "--alpha", "1.5"]) == 2
    assert "--alpha must be in [0, 1]" in capsys.readouterr().err
    assert main(["--materials", mat, "--arch", "bilstm", "--embedding-init", "glove", "--output-dir", str(tmp_path / "z")]) == 2
    assert "--embedding-init must be one of teacher, context, random" in capsys.readouterr().err  # was: random, silently
    assert not (tmp_path / "z").exists()
    assert main(["--config", str(tmp_path / "nope.json")]) == 2


def test_config_file_and_command_line_round_trip(sst2_run, tmp_path):
    cfg = config_from_args(["--materials", sst2_run["run_dir"], "--arch", "cnn", "--num-filters", "7",
                            "--filter-sizes", "2", "3", "--alpha", "0.9", "--no-kd"])
    assert cfg.options == {"num_filters": 7, "filter_sizes": (2, 3)} and cfg.alpha == 0.9 and not cfg.kd
    f = tmp_path / "best.json"
    f.write_text(json.dumps({"arch": "bilstm", "materials": sst2_run["run_dir"], "lr": 0.002, "hidden": 16,
                             "options": {"mlp_hidden": 8}}))
    cfg2 = config_from_args(["--config", str(f), "--lr", "0.003"])
    assert cfg2.arch == "bilstm" and cfg2.lr == 0.003 and cfg2.options == {"hidden": 16, "mlp_hidden": 8}
    line = command_line(cfg2.resolved())
    again = config_from_args(__import__("shlex").split(line)[3:])
    assert again.resolved() == cfg2.resolved()


def test_resume_from_the_command_line_needs_only_the_run(sst2_run, tmp_path):
    out = tmp_path / "r"
    first = run(student_cfg(sst2_run["run_dir"], out, epochs=2, arch="bilstm", options={"hidden": 8}))
    assert main(["--output-dir", str(out), "--resume"]) == 0  # materials, arch and options from config.json
    assert json.loads((out / "metrics.json").read_text())["dev"] == first["metrics"]["dev"]


def test_transfer_split_adds_teacher_only_rows(sst2_run, tmp_path):
    """--transfer-split: unlabelled rows the teacher labelled join train with the teacher term only;
    rows that repeat a train/dev text are dropped (no held-out text leaks in as input)."""
    from students.loop import add_transfer
    from distill.materials import open_teacher_run
    from students.train import split_data, teacher_tokenizer, with_transfer
    import shutil

    from teachers.pipeline import TeachConfig
    from teachers.pipeline import run as teach

    root = tmp_path / "teacher"
    shutil.copytree(sst2_run["run_dir"], root)  # the session's teacher run stays as it is
    dev = materials.load(root, "dev")
    extra, extra2 = tmp_path / "transfer.txt", tmp_path / "transfer2.txt"
    extra.write_text("\n".join(["an utterly new sentence", "another unseen one", dev.text_a[0], dev.text_a[1]]) + "\n")
    extra2.write_text("\n".join(["another unseen one", "a third new text", dev.text_a[2]]) + "\n")  # a grown set
    teach(TeachConfig.from_run(root, dump_only=True, splits=("dev",), extra=(f"transfer={extra}", f"transfer2={extra2}"), device="cpu"))
    teacher = open_teacher_run(root, None)
    tok = teacher_tokenizer(str(teacher.model_dir))
    train, tr, tr2, dv = (split_data(teacher, s, tok, 32, True) for s in ("train", "transfer", "transfer2", "dev"))
    merged, dropped = add_transfer(train, tr, [dv])
    assert dropped == 2 and len(merged) == len(train) + 2
    assert merged.labelled.tolist() == [True] * len(train) + [False, False]
    assert merged.ids[-2:] == ["transfer-0", "transfer-1"]
    np.testing.assert_array_equal(merged.teacher_logits[-2:], tr.teacher_logits[:2])
    # several splits (--transfer-split transfer,transfer2): the second drops the first's row and dev's
    both = with_transfer(train, teacher, ["transfer", "transfer2"], tok, 32, True)
    assert both.ids[len(train):] == ["transfer-0", "transfer-1", "transfer2-1"]
    np.testing.assert_array_equal(both.teacher_logits[-1], tr2.teacher_logits[1])
    out = run(student_cfg(root, tmp_path / "cnn", transfer_split="transfer", epochs=2, lr=5e-3))
    assert out["metrics"]["dev"]["accuracy"] >= 0.85
    with pytest.raises(DistillInputError, match="no such materials split"):
        run(student_cfg(root, tmp_path / "x", transfer_split="nope"))


def test_checkpoint_rng_round_trip_and_format(tmp_path):
    """Every RNG state in use comes back from a checkpoint; a newer checkpoint format is refused."""
    import random

    from distill.resume import CHECKPOINT_FORMAT, Checkpointer, restore_rng, rng_states

    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    saved = rng_states("cpu")
    first = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    torch.manual_seed(9), np.random.seed(9), random.seed(9)
    blob_path = tmp_path / "rng.pt"
    torch.save(saved, blob_path)
    restore_rng(torch.load(blob_path, weights_only=True))  # through the same weights-only load as a checkpoint
    again = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    assert torch.equal(first[0], again[0]) and np.array_equal(first[1], again[1]) and first[2] == again[2]

    model = torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW(model.parameters())
    ck = Checkpointer(tmp_path / "checkpoint", model, {}, [opt], [], scaler=torch.amp.GradScaler("cpu", enabled=True))
    ck.save({"epoch": 1})
    assert json.loads((tmp_path / "checkpoint" / "state.json").read_text())["checkpoint_format"] == CHECKPOINT_FORMAT
    assert ck.load() == {"epoch": 1}
    (tmp_path / "checkpoint" / "state.json").write_text(json.dumps({"epoch": 1, "checkpoint_format": CHECKPOINT_FORMAT + 1}))
    with pytest.raises(DistillInputError, match="newer distill"):
        ck.load()


def test_fp16_steps_through_the_gradient_scaler(sst2_run, tmp_path, monkeypatch):
    """fp16 (CUDA in real use; the device check mocked so CPU autocast stands in): every step goes
    through the GradScaler, and its state and every RNG state are checkpointed."""
    import students.train as train_mod

    monkeypatch.setattr(train_mod, "resolve_device", lambda device, precision: "cpu")
    calls = {"scale": 0}
    real = torch.amp.GradScaler.scale

    def counting_scale(self, outputs):
        calls["scale"] += int(self.is_enabled())
        return real(self, outputs)

    monkeypatch.setattr(torch.amp.GradScaler, "scale", counting_scale)
    res = run(student_cfg(sst2_run["run_dir"], tmp_path / "fp16", epochs=2, precision="fp16", save_steps=4))
    assert calls["scale"] == res["summary"]["global_step"] == 20  # 160 rows / 16, two epochs
    blob = torch.load(tmp_path / "fp16" / "checkpoint" / "optim.pt", weights_only=True)
    assert blob["scaler"]["scale"] > 0 and "numpy_rng" in blob and "python_rng" in blob
    assert 0.5 <= res["metrics"]["dev"]["accuracy"] <= 1.0


def test_model_card_header_parses_as_a_hub_card(cnn_run, sst2_run):
    """The student's README.md opens with the Hub's metadata (huggingface_hub reads it back)."""
    from huggingface_hub import ModelCard

    card = ModelCard((Path(cnn_run["run_dir"]) / "README.md").read_text())
    d = card.data
    assert d.library_name == "distill" and d.pipeline_tag == "text-classification" and d.datasets == ["glue"]
    (res,) = d.eval_results
    assert (res.dataset_name, res.dataset_split, res.metric_type) == ("sst2", "dev", "accuracy")
    assert res.metric_value == pytest.approx(cnn_run["metrics"]["dev"]["accuracy"])
    assert "knowledge-distillation" in d.tags and "python -m distill.student" in card.text
