"""Jigsaw tasks: Kaggle-schema loaders (2018, 2022, 2020), their metrics against hand-computed
values, the multi-label and ranking losses, and tiny teachers/students end to end."""

import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from conftest import SHARED_DATA, teach_cfg
from distill import losses, materials
from distill.data import load_split
from distill.errors import DistillInputError
from distill.data.holdout import Holdout
from distill.data.jigsaw import LABELS_2018, read_pairs
from distill.metrics import auc_metrics, compute, concordance, pair_agreement
from distill.tasks import get_task

TOXIC = ["you are an idiot", "shut up you moron", "i will hurt you", "stupid worthless troll", "go away loser"]
CLEAN = ["thanks for the edit", "see the talk page", "i added a source", "good point about the dates", "welcome to wikipedia"]


def write_csv(path: Path, header, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


def toxic_rows(n: int, seed: int, prefix: str):
    """2018-schema rows: toxic comments (toxic=1, some obscene/insult/threat) and clean ones."""
    rng = random.Random(seed)
    for i in range(n):
        y = i % 2
        text = rng.choice(TOXIC if y else CLEAN) + ("\nsecond line, with a comma" if i % 7 == 0 else "")
        threat = int(y and "hurt" in text)
        yield [f"{prefix}{i:04x}", text, y, int(y and i % 4 == 1), int(y and "idiot" in text), threat,
               int(y and not threat), int(y and "troll" in text)]


@pytest.fixture(scope="module")
def kaggle_2018(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("jigsaw2018")
    write_csv(root / "train.csv", ["id", "comment_text", *LABELS_2018], toxic_rows(200, 0, "a"))
    test = list(toxic_rows(40, 1, "b"))
    write_csv(root / "test.csv", ["id", "comment_text"], [r[:2] for r in test])
    # Kaggle marks rows that were never scored with -1 in every label
    write_csv(root / "test_labels.csv", ["id", *LABELS_2018],
              [[r[0], *([-1] * 6 if k % 5 == 0 else r[2:])] for k, r in enumerate(test)])
    return root


@pytest.fixture(scope="module")
def severity_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("jigsaw2022")
    comments = [(1000 + i, t) for i, t in enumerate(TOXIC + CLEAN + [c + " indeed" for c in TOXIC + CLEAN])]
    write_csv(root / "comments_to_score.csv", ["comment_id", "text"], comments)
    return root


def test_holdout_fraction_folds_and_strata():
    strata = np.array([1] * 20 + [0] * 80)
    dev = Holdout(0.25).dev_mask(100, strata)
    assert dev.sum() == 25 and dev[:20].sum() == 5  # stratified: a quarter of the positives
    assert (Holdout(0.25).dev_mask(100, strata) == dev).all()  # a pure function of its arguments
    folds = np.stack([Holdout(folds=4, fold=k).dev_mask(100, strata) for k in range(4)])
    assert (folds.sum(0) == 1).all()  # every row is dev in exactly one fold
    with pytest.raises(DistillInputError, match="--fold"):
        Holdout(folds=3, fold=3).validate()


def test_2018_kaggle_layout(kaggle_2018):
    task = get_task("jigsaw-toxic")
    train, dev, test = (load_split(task, s, kaggle_2018) for s in ("train", "dev", "test"))
    assert len(train) + len(dev) == 200 and len(dev) == 20
    assert not set(train.ids) & set(dev.ids)
    assert train.labels.shape == (180, 6) and train.labels.dtype == np.float32
    assert len(test) == 32  # the 8 rows labelled -1 are not scored
    assert "\nsecond line, with a comma" in train.text_a[0] or any("\n" in t for t in train.text_a)


def test_2018_single_csv_and_errors(tmp_path):
    task = get_task("jigsaw-toxic")
    rows = [r + ["test" if i % 4 == 0 else "train"] for i, r in enumerate(toxic_rows(80, 2, "c"))]
    write_csv(tmp_path / "sample.csv", ["id", "comment_text", *LABELS_2018, "dataset"], rows)
    test = load_split(task, "test", tmp_path)
    assert len(test) == 20 and test.ids[0] == "test-c0000"
    assert len(load_split(task, "train", tmp_path / "sample.csv")) == 54  # a file path works too
    write_csv(tmp_path / "bad" / "train.csv", ["id", "comment_text", "toxic"], [["x", "hi", 0]])
    with pytest.raises(DistillInputError, match=r"train.csv has no column\(s\) severe_toxic"):
        load_split(task, "train", tmp_path / "bad")
    with pytest.raises(DistillInputError, match="pass --data-dir"):
        load_split(task, "train", None)


def test_2022_comments_and_grouped_pairs(severity_dir, tmp_path):
    task = get_task("jigsaw-severity")
    comments = load_split(task, "comments", severity_dir)
    assert len(comments) == 20 and comments.ids[0] == "comments-1000" and comments.gold is None
    train, dev = (load_split(task, s, severity_dir, holdout=Holdout(0.25)) for s in ("train", "dev"))
    assert len(train) == 15 and len(dev) == 5 and not {i[4:] for i in train.ids} & {i[4:] for i in dev.ids}

    pairs = [("w1", c, t) for c, t in zip(CLEAN, TOXIC)] + [("w2", c + " indeed", t) for c, t in zip(CLEAN, TOXIC)] \
        + [("w3", CLEAN[0], TOXIC[1]), ("w3", CLEAN[2], TOXIC[0] + " indeed")]
    write_csv(severity_dir / "validation_data.csv", ["worker", "less_toxic", "more_toxic"], pairs)
    try:
        train, dev = (load_split(task, s, severity_dir, holdout=Holdout(0.3)) for s in ("train", "dev"))
    finally:
        (severity_dir / "validation_data.csv").unlink()
    assert not set(train.text_a) & set(dev.text_a)  # a comment never sits on both sides
    for ex in (train, dev):
        for less, more in ex.pairs:
            assert (ex.text_a[less], ex.text_a[more]) in {(p[1], p[2]) for p in pairs}
    assert len(train.pairs) + len(dev.pairs) == len(pairs)  # groups stay whole: no pair is lost


@pytest.mark.parametrize("header,rows,match", [
    (["worker", "less", "more"], [["w", "a", "b"]], "no column"),
    (["worker", "less_toxic", "more_toxic"], [["w", "a", ""]], "pair 1 has an empty comment"),
    (["worker", "less_toxic", "more_toxic"], [["w", "a", "b"], ["w", "same", "same"]], "pair 2 compares a comment with itself"),
    (["worker", "less_toxic", "more_toxic"], [["w", "a", "b", "extra"]], "has 4 columns, expected 3"),
])
def test_pairs_loader_rejects_malformed_files(tmp_path, header, rows, match):
    write_csv(tmp_path / "validation_data.csv", header, rows)
    with pytest.raises(DistillInputError, match=match) as e:
        read_pairs(tmp_path / "validation_data.csv")
    assert "validation_data.csv" in str(e.value)


def test_2020_multilingual_loaders_and_per_language_auc(tmp_path):
    task = get_task("jigsaw-multilingual")
    write_csv(tmp_path / "jigsaw-toxic-comment-train.csv", ["id", "comment_text", *LABELS_2018], toxic_rows(20, 3, "e"))
    write_csv(tmp_path / "validation.csv", ["id", "comment_text", "lang", "toxic"],
              [[i, f"commentaire {i}", "fr" if i < 4 else "es", i % 2] for i in range(8)])
    write_csv(tmp_path / "test.csv", ["id", "content", "lang"], [[i, f"yorum {i}", "tr"] for i in range(3)])
    train, dev, test = (load_split(task, s, tmp_path) for s in ("train", "dev", "test"))
    assert train.groups == ["en"] * 20 and train.labels.tolist() == [i % 2 for i in range(20)]
    assert dev.groups == ["fr"] * 4 + ["es"] * 4 and test.labels is None and test.groups == ["tr"] * 3
    # toxic logit margins: French rows all ranked right; Spanish (toxic 5, 7 vs clean 4, 6): 5 < 4 is the
    # one wrong pair of four -> AUC 3/4
    margin = np.array([-1, 1, -2, 2, 1, -1, -3, 3], dtype=np.float32)
    logits = np.stack([np.zeros(8), margin], 1)
    m = compute(task, logits, dev.labels, dev.groups)
    assert m["auc_fr"] == 1.0 and m["auc_es"] == 0.75
    assert m["auc"] == pytest.approx(roc_auc_score(dev.labels, margin))


def test_multilabel_auc_matches_sklearn_and_skips_single_class_columns():
    task = get_task("jigsaw-toxic")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=(50, 6)).astype(np.float32)
    y[:, 3] = 0  # threat: no positive here, AUC undefined
    z = y * 1.5 + rng.normal(size=(50, 6))
    m = auc_metrics(task, z, y)
    per = [roc_auc_score(y[:, k], z[:, k]) for k in (0, 1, 2, 4, 5)]
    assert m["auc"] == pytest.approx(np.mean(per)) and "auc_threat" not in m
    assert m["auc_toxic"] == pytest.approx(per[0])
    with pytest.raises(DistillInputError, match="AUC is undefined"):
        auc_metrics(task, z, np.zeros_like(y))


def test_pair_agreement_and_concordance_hand_computed():
    scores = np.array([0.1, 0.5, 0.5, 0.9])
    # (less, more): 0<1 yes, 1<2 tie -> miss, 3<0 no, 2<3 yes
    assert pair_agreement(scores, np.array([[0, 1], [1, 2], [3, 0], [2, 3]])) == 0.5
    t = np.array([1.0, 2.0, 3.0, 4.0])
    assert concordance(t * 10, t) == 1.0 and concordance(-t, t) == 0.0
    # 6 pairs (all of them: fewer than n_pairs): s swaps items 2 and 3 -> one discordant pair
    assert concordance(np.array([1.0, 2.0, 4.0, 3.0]), t) == pytest.approx(5 / 6)
    big = np.random.default_rng(1).normal(size=1000)
    assert concordance(big, big, n_pairs=10_000) == 1.0
    assert concordance(big + np.random.default_rng(2).normal(size=1000) * 100, big) == pytest.approx(0.5, abs=0.03)


def test_multilabel_and_ranking_kd_losses():
    s, t = torch.tensor([[0.3, -2.0]]), torch.tensor([[1.0, -1.0]])
    T = 2.0
    p = torch.sigmoid(t / T)
    q = torch.sigmoid(s / T)
    hand = -(p * q.log() + (1 - p) * (1 - q).log()).mean() * T * T
    assert losses.kd_sigmoid_bce(s, t, T).item() == pytest.approx(hand.item(), rel=1e-6)
    x = t.clone().requires_grad_()
    losses.kd_sigmoid_bce(x, t, T).backward()
    assert x.grad.abs().max() < 1e-6  # the student's optimum is the teacher's logits
    # RankNet over the teacher's ordered pairs: t orders (1>0), (2>0), (2>1)
    st, tt = torch.tensor([0.0, 1.0, 0.5]), torch.tensor([0.1, 0.2, 0.3])
    sp = torch.nn.functional.softplus
    hand = (sp(-(st[1] - st[0])) + sp(-(st[2] - st[0])) + sp(-(st[2] - st[1]))) / 3
    assert losses.rank_kd(st, tt).item() == pytest.approx(hand.item())
    assert losses.rank_kd(st, torch.ones(3)).item() == 0.0
    # the teacher's BCE: targets smoothed, label 2 auxiliary at weight 0.5, positives of label 1 weighted 3
    y = torch.tensor([[1.0, 0.0]])
    yt = y * 0.8 + 0.1
    bce = -(3 * yt * torch.nn.functional.logsigmoid(s) + (1 - yt) * torch.nn.functional.logsigmoid(-s))
    hand = (bce[0, 0] * 1.0 + bce[0, 1] * 0.5) / 1.5
    got = losses.multilabel_bce(s, y, smoothing=0.2, aux_weight=0.5, pos_weight=torch.tensor([3.0, 3.0]))
    assert got.item() == pytest.approx(hand.item(), rel=1e-6)
    assert losses.pair_margin(torch.tensor([2.0, 0.0]), torch.tensor([1.0, 0.2]), 0.5).item() == pytest.approx((0 + 0.7) / 2)
    assert losses.hard_loss("multilabel", s, torch.tensor([[1.0, 0.0]])).item() == pytest.approx(
        torch.nn.functional.binary_cross_entropy_with_logits(s, torch.tensor([[1.0, 0.0]])).item())


@pytest.fixture(scope="module")
def toxic_run(tmp_path_factory, tiny_bert, kaggle_2018) -> dict:
    from teachers.pipeline import run

    out = tmp_path_factory.mktemp("runs") / "toxic"
    return run(teach_cfg(task="jigsaw-toxic", teacher=str(tiny_bert), data_dir=str(kaggle_2018), output_dir=str(out),
                         epochs=6, valid_fraction=0.2, label_smoothing=0.1, aux_weight=0.5))


def test_multilabel_teacher_materials_and_auc(toxic_run):
    run_dir = Path(toxic_run["run_dir"])
    m = toxic_run["metrics"]
    assert set(m) == {"train", "dev", "test"} and m["test"]["auc_toxic"] > 0.95, m  # toxic vs clean is easy
    mat = materials.load(run_dir, "test")
    assert mat.logits.shape == (32, 6) and mat.labels.shape == (32, 6)
    np.testing.assert_allclose(mat.soft, 1 / (1 + np.exp(-mat.logits / 2.0)), rtol=1e-5)  # sigmoid at T
    assert auc_metrics(get_task("jigsaw-toxic"), mat.logits, mat.labels)["auc"] == pytest.approx(m["test"]["auc"])
    assert json.loads((run_dir / "config.json").read_text())["label_smoothing"] == 0.1


def test_multilabel_students_kd(toxic_run, tmp_path):
    from students.train import StudentConfig, run

    out = run(StudentConfig(materials=toxic_run["run_dir"], output_dir=str(tmp_path / "cnn"), epochs=4, lr=5e-3,
                            batch_size=16, save_steps=0, device="cpu"))
    m = out["metrics"]
    assert m["test"]["auc_toxic"] > 0.9 and "auc_obscene" in m["test"], m
    # recomputed from the student's own predictions: AUC with scikit-learn, agreement = same label set
    from distill.predict import PredictConfig
    from distill.predict import run as predict

    test = materials.load(toxic_run["run_dir"], "test")
    write_csv(tmp_path / "test.csv", ["comment_text"], [[t] for t in test.text_a])  # texts hold newlines
    z = predict(PredictConfig(out["run_dir"], str(tmp_path / "test.csv")))["logits"]
    assert roc_auc_score(np.asarray(test.labels)[:, 0], z[:, 0]) == pytest.approx(m["test"]["auc_toxic"])
    assert float(((z > 0) == (test.logits > 0)).all(axis=1).mean()) == pytest.approx(m["test"]["teacher_agreement"])
    assert m["test"]["teacher_agreement"] >= 0.5, m


def test_severity_from_multilabel_teacher_and_ranking_student(toxic_run, severity_dir, tmp_path):
    from students.train import StudentConfig
    from students.train import run as student
    from teachers.pipeline import run

    res = run(teach_cfg(task="jigsaw-severity", teacher=toxic_run["run_dir"], data_dir=str(severity_dir),
                        output_dir=str(tmp_path / "sev"), dump_only=True, valid_fraction=0.25,
                        label_weights=("severe_toxic=2",)))
    tox = materials.load(toxic_run["run_dir"], "test")
    mat = materials.load(res["run_dir"], "comments")
    assert mat.logits.shape == (20, 1) and mat.ids[0] == "comments-1000"
    # the score is sum_l w_l * sigmoid(z_l) of the toxic teacher: recompute it for one text seen by both
    k = next(k for k, t in enumerate(tox.text_a) if t in mat.text_a)
    i = mat.text_a.index(tox.text_a[k])
    w = np.array([1, 2, 1, 1, 1, 1.0])
    assert mat.logits[i, 0] == pytest.approx(float((w / (1 + np.exp(-tox.logits[k]))).sum()), rel=1e-4)
    assert materials.load(res["run_dir"], "train").logits.shape == (15, 1)
    toxic_mean = np.mean([mat.logits[mat.text_a.index(t), 0] for t in TOXIC])
    clean_mean = np.mean([mat.logits[mat.text_a.index(t), 0] for t in CLEAN])
    assert toxic_mean > clean_mean
    s = student(StudentConfig(materials=res["run_dir"], output_dir=str(tmp_path / "rank"), epochs=3, lr=5e-3,
                              batch_size=8, save_steps=0, device="cpu"))
    assert set(s["metrics"]["dev"]) == {"teacher_agreement"}
    # ranking agreement = pairwise concordance with the teacher; with no ties it is (Kendall's tau + 1) / 2
    from scipy.stats import kendalltau

    from distill.predict import PredictConfig
    from distill.predict import run as predict

    dev = materials.load(res["run_dir"], "dev")
    write_csv(tmp_path / "dev.csv", ["comment_text"], [[t] for t in dev.text_a])
    z = predict(PredictConfig(s["run_dir"], str(tmp_path / "dev.csv")))["logits"].reshape(-1)
    assert len(set(z.tolist())) == len(z) and len(set(dev.logits.reshape(-1).tolist())) == len(z)
    assert (kendalltau(z, dev.logits.reshape(-1)).statistic + 1) / 2 == pytest.approx(s["metrics"]["dev"]["teacher_agreement"])
    assert s["metrics"]["dev"]["teacher_agreement"] > 0.5
    with pytest.raises(DistillInputError, match="--no-kd"):
        student(StudentConfig(materials=res["run_dir"], output_dir=str(tmp_path / "x"), kd=False, device="cpu"))


def test_ranking_teacher_trains_on_annotator_pairs(tiny_bert, tmp_path):
    from teachers.pipeline import run

    root = tmp_path / "data"
    rng = random.Random(0)
    pairs = [("w", rng.choice(CLEAN) + f" {k}", rng.choice(TOXIC) + f" {k}") for k in range(120)]
    write_csv(root / "validation_data.csv", ["worker", "less_toxic", "more_toxic"], pairs)
    write_csv(root / "comments_to_score.csv", ["comment_id", "text"], [(i, t) for i, t in enumerate(TOXIC + CLEAN)])
    res = run(teach_cfg(task="jigsaw-severity", teacher=str(tiny_bert), data_dir=str(root), output_dir=str(tmp_path / "r"),
                        epochs=4, valid_fraction=0.25, margin=1.0))
    assert res["metrics"]["dev"]["pair_agreement"] >= 0.9, res["metrics"]
    mat = materials.load(res["run_dir"], "dev")
    assert mat.pairs is not None and mat.pairs.shape[1] == 2
    assert pair_agreement(mat.logits[:, 0], mat.pairs) == pytest.approx(res["metrics"]["dev"]["pair_agreement"])
    assert materials.load(res["run_dir"], "comments").logits.shape == (10, 1)


def test_cli_malformed_pairs_exit_2(tmp_path, capsys, tiny_bert):
    from distill.teach import main

    write_csv(tmp_path / "validation_data.csv", ["worker", "less_toxic"], [["w", "a"]])
    write_csv(tmp_path / "comments_to_score.csv", ["comment_id", "text"], [[1, "a"]])
    code = main(["--task", "jigsaw-severity", "--teacher", str(tiny_bert), "--data-dir", str(tmp_path),
                 "--output-dir", str(tmp_path / "run")])
    assert code == 2
    assert "validation_data.csv has no column(s) more_toxic" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # nothing half-written


@pytest.mark.skipif(not (SHARED_DATA / "jigsaw").is_dir(), reason="no ../shared/data/jigsaw on this machine")
def test_real_jigsaw_files_load():
    toxic = get_task("jigsaw-toxic")
    root = SHARED_DATA / "jigsaw" / "toxic-2018-sample"
    train, dev, test = (load_split(toxic, s, root) for s in ("train", "dev", "test"))
    assert (len(train), len(dev), len(test)) == (1439, 161, 400)
    # positives per label as the data README states them, train+dev = the 1,600 "train" rows
    assert (train.labels.sum(0) + dev.labels.sum(0)).tolist() == [394, 53, 212, 13, 201, 33]
    assert test.labels.sum(0).tolist() == [106, 16, 55, 3, 51, 14]
    assert dev.labels[:, 3].sum() >= 1  # stratified by the rarest label: threat is on both sides
    comments = load_split(get_task("jigsaw-severity"), "comments", SHARED_DATA / "jigsaw" / "severity-2022")
    assert len(comments) == 7537 and comments.ids[0] == "comments-114890"
