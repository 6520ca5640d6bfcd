"""Several teachers: the combination rule by hand, id matching and its error, a student from two runs
at once, and the ensemble run distill.teach writes (its metrics recomputed from the members' own
materials; a student from it equals the in-memory ensemble; predict refuses it)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from distill import materials
from distill.ensemble import combine_logits, member_rows, parse_weights
from distill.errors import DistillInputError
from students.train import StudentConfig, config_from_args, run


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_classification_averages_probabilities_at_t():
    z1, z2 = np.array([[np.log(3.0), 0.0]]), np.array([[0.0, 0.0]])  # p = (3/4, 1/4) and (1/2, 1/2) at T = 1
    out = combine_logits("classification", [z1, z2], [0.5, 0.5], 1.0)
    np.testing.assert_allclose(_softmax(out), [[0.625, 0.375]], rtol=1e-6)
    np.testing.assert_allclose(out.sum(-1), 0.0, atol=1e-6)  # centred like logits
    rng = np.random.default_rng(0)
    zs = [rng.normal(size=(5, 3)) * 3 for _ in range(3)]
    out = combine_logits("classification", zs, [0.2, 0.3, 0.5], 2.0)
    want = sum(w * _softmax(z / 2.0) for w, z in zip([0.2, 0.3, 0.5], zs))
    np.testing.assert_allclose(_softmax(out / 2.0), want, rtol=1e-5)


def test_regression_ranking_and_multilabel():
    a, b = np.array([[1.0], [3.0]]), np.array([[3.0], [-1.0]])
    np.testing.assert_allclose(combine_logits("regression", [a, b], [0.25, 0.75], 2.0), [[2.5], [0.0]])
    np.testing.assert_allclose(combine_logits("ranking", [a, b], [0.5, 0.5], 1.0), [[2.0], [1.0]])
    z1, z2 = np.array([[0.0, 2.0]]), np.array([[np.log(3.0), -2.0]])
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    out = combine_logits("multilabel", [z1, z2], [0.5, 0.5], 1.0)
    np.testing.assert_allclose(sig(out), [[(0.5 + 0.75) / 2, (sig(2.0) + sig(-2.0)) / 2]], rtol=1e-6)


def test_member_rows_follow_ids_and_name_the_first_difference():
    def mat(ids):
        return materials.Materials("dev", ids, ids, None, None, np.zeros((len(ids), 2)), np.zeros((len(ids), 2)), None, {})

    np.testing.assert_array_equal(member_rows(["a", "b", "c"], mat(["c", "a", "b"]), "x"), [1, 2, 0])
    with pytest.raises(DistillInputError, match="first differing id: 'b'"):
        member_rows(["a", "b"], mat(["a", "z"]), "x")
    with pytest.raises(DistillInputError, match="first differing id: 'z'"):
        member_rows(["a", "b"], mat(["a", "b", "z"]), "x")
    assert parse_weights("1,3", 2) == [0.25, 0.75] and parse_weights("", 4) == [0.25] * 4
    for bad in ("1", "1,x", "-1,2", "0,0"):
        with pytest.raises(DistillInputError, match="--teacher-weights"):
            parse_weights(bad, 2)


@pytest.fixture(scope="module")
def second_run(tmp_path_factory, tiny_bert, glue_dir):
    """Another tiny SST-2 teacher (another seed): a second member."""
    from conftest import teach_cfg
    from teachers.pipeline import run as teach

    return teach(teach_cfg(teacher=str(tiny_bert), data_dir=str(glue_dir), seed=7, epochs=2,
                           output_dir=str(tmp_path_factory.mktemp("runs") / "sst2-b")))


def _student(mat, out, **kw):
    base = dict(materials=mat, output_dir=str(out), arch="cnn", epochs=2, batch_size=16, save_steps=0, device="cpu", lr=5e-3)
    base.update(kw)
    return StudentConfig(**base)


def test_ensemble_run_and_students_from_several_runs(sst2_run, second_run, tmp_path, capsys):
    from distill.teach import main as teach_main
    from distill.predict import main as predict_main

    a, b = sst2_run["run_dir"], second_run["run_dir"]
    assert teach_main(["--ensemble", a, b, "--output-dir", str(tmp_path / "ens"), "--teacher-weights", "1,3"]) == 0
    # the ensemble's dev accuracy, recomputed from the members' own materials by hand
    ma, mb = materials.load(a, "dev"), materials.load(b, "dev")
    T = ma.manifest["temperature"]
    p = 0.25 * _softmax(ma.logits / T) + 0.75 * _softmax(mb.logits[member_rows(ma.ids, mb, "b")] / T)
    metrics = json.loads((tmp_path / "ens" / "metrics.json").read_text())
    assert metrics["dev"]["accuracy"] == pytest.approx(float((p.argmax(-1) == ma.labels).mean()))
    assert set(metrics["members"]) == {str(Path(a).resolve()), str(Path(b).resolve())}
    e = materials.load(tmp_path / "ens", "dev")
    np.testing.assert_allclose(e.soft, p, rtol=1e-5, atol=1e-6)
    assert e.embeddings is None

    # a student from the ensemble run = a student from both runs at once (same targets, same seed)
    from_run = run(_student(str(tmp_path / "ens"), tmp_path / "s-run"))
    argv = ["--arch", "cnn", "--materials", a, "--materials", b, "--teacher-weights", "1,3"]
    cfg = config_from_args(argv + ["--output-dir", str(tmp_path / "s-mem")])
    assert cfg.materials == f"{a},{b}"
    from_mem = run(_student(cfg.materials, tmp_path / "s-mem", teacher_weights="1,3"))
    assert from_mem["metrics"]["dev"] == from_run["metrics"]["dev"]
    card = json.loads((tmp_path / "s-mem" / "model" / "student.json").read_text())["teacher"]
    assert [m["weight"] for m in card["members"]] == [0.25, 0.75]
    # resuming against other weights is refused: another teacher
    with pytest.raises(DistillInputError, match="different teacher"):
        run(_student(cfg.materials, tmp_path / "s-mem", teacher_weights="1,1", resume=True))

    capsys.readouterr()
    assert predict_main([str(tmp_path / "ens"), "--input", str(tmp_path / "ens" / "config.json")]) == 2
    assert "is an ensemble of teacher runs" in capsys.readouterr().err


def test_mismatched_teacher_runs_are_refused(sst2_run, tiny_bert, glue_dir, tmp_path, capsys):
    from conftest import teach_cfg
    from distill.teach import main as teach_main
    from teachers.pipeline import run as teach

    short = teach(teach_cfg(teacher=str(tiny_bert), data_dir=str(glue_dir), max_train_samples=100, epochs=1,
                            output_dir=str(tmp_path / "short")))["run_dir"]
    with pytest.raises(DistillInputError, match=r"split 'train' holds other examples .*first differing id"):
        run(_student(f"{sst2_run['run_dir']},{short}", tmp_path / "s"))
    assert not (tmp_path / "s").exists()
    mrpc = teach(teach_cfg(task="mrpc", teacher=str(tiny_bert), data_dir=str(glue_dir), epochs=1,
                           output_dir=str(tmp_path / "mrpc")))["run_dir"]
    assert teach_main(["--ensemble", sst2_run["run_dir"], mrpc, "--output-dir", str(tmp_path / "e")]) == 2
    assert "an ensemble needs runs of one task" in capsys.readouterr().err
    with pytest.raises(DistillInputError, match="two or more"):
        __import__("teachers.ensemble").ensemble.write_ensemble([mrpc], str(tmp_path / "e1"))


def test_one_teacher_terms_are_refused_with_several(sst2_run, second_run, tmp_path):
    both = f"{sst2_run['run_dir']},{second_run['run_dir']}"
    with pytest.raises(DistillInputError, match="--beta"):
        run(_student(both, tmp_path / "s", beta=1.0))
    with pytest.raises(DistillInputError, match="given twice"):
        run(_student(f"{sst2_run['run_dir']},{sst2_run['run_dir']}", tmp_path / "s"))
    assert not (tmp_path / "s").exists()
