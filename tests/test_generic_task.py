"""A task defined by flags: GLUE SST-2 given as CSV files reproduces the built-in task's materials;
JSONL and a Hub-layout folder read through `datasets` give the same examples; kinds are inferred or
refused with one sentence; a student and predict run from the generic teacher run alone."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from distill import materials
from distill.data import GenericSpec, generic_task, load_split
from distill.errors import DistillInputError
from distill.tasks import get_task, task_from_record, task_record


def _glue_rows(glue_dir: Path, split: str) -> list[dict]:
    with open(glue_dir / "SST-2" / f"{split}.tsv", encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))


def _write_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps({k: (int(v) if k == "label" else v) for k, v in r.items()}) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def sst2_files(glue_dir, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("own-data")
    return {s: _write_csv(root / f"{s}.csv", _glue_rows(glue_dir, s)) for s in ("train", "dev", "test")}


def _spec(files, **kw) -> GenericSpec:
    base = dict(name="sst2-csv", train_file=str(files["train"]), dev_file=str(files["dev"]), text_columns=("sentence",),
                label_column="label", kind="classification")
    base.update(kw)
    return GenericSpec(**base)


def test_glue_as_csv_reproduces_the_built_in_materials(sst2_run, sst2_files, tiny_bert, tmp_path):
    from conftest import teach_cfg
    from teachers.pipeline import run as teach

    res = teach(teach_cfg(task="sst2-csv", teacher=str(tiny_bert), output_dir=str(tmp_path / "own"),
                          train_file=str(sst2_files["train"]), dev_file=str(sst2_files["dev"]),
                          test_file=str(sst2_files["test"]), text_columns=("sentence",), label_column="label",
                          task_kind="classification"))
    for split in ("train", "dev", "test"):
        ours, theirs = materials.load(res["run_dir"], split), materials.load(sst2_run["run_dir"], split)
        assert ours.ids == theirs.ids and ours.text_a == theirs.text_a, split  # identical ids (hash below) and texts
        np.testing.assert_allclose(ours.logits, theirs.logits, atol=1e-6)
        if split != "test":
            np.testing.assert_array_equal(ours.labels, theirs.labels)
    mine = json.loads((Path(res["run_dir"]) / "materials" / "manifest.json").read_text())
    built_in = json.loads((Path(sst2_run["run_dir"]) / "materials" / "manifest.json").read_text())
    assert mine["splits"]["train"]["ids_sha256"] == built_in["splits"]["train"]["ids_sha256"]
    assert res["metrics"]["dev"] == pytest.approx(sst2_run["metrics"]["dev"], abs=1e-9)  # the same metric, the same value
    assert mine["task_spec"]["label_names"] == ["0", "1"] and "task_spec" not in built_in

    # a student and predict need nothing but the run directory (the task travels in its records)
    from distill.predict import PredictConfig
    from distill.predict import run as predict
    from students.train import StudentConfig, run as distil

    student = distil(StudentConfig(materials=res["run_dir"], output_dir=str(tmp_path / "cnn"), epochs=1, batch_size=16,
                                   save_steps=0, device="cpu"))
    assert set(student["metrics"]["dev"]) == {"accuracy", "teacher_agreement"}
    texts = tmp_path / "in.txt"
    texts.write_text("a wonderful film\nawful\n")
    assert predict(PredictConfig(student["run_dir"], str(texts)))["logits"].shape == (2, 2)


def test_jsonl_and_a_hub_layout_folder_read_the_same_examples(glue_dir, sst2_files, tmp_path):
    csv_task = generic_task(_spec(sst2_files))
    want = {s: load_split(csv_task, s, None) for s in ("train", "dev")}
    jsonl = {s: _write_jsonl(tmp_path / f"{s}.jsonl", _glue_rows(glue_dir, s)) for s in ("train", "dev")}
    folder = tmp_path / "hub-layout"  # what load_dataset(folder) reads: train / validation files by name
    folder.mkdir()
    _write_csv(folder / "train.csv", _glue_rows(glue_dir, "train"))
    _write_csv(folder / "validation.csv", _glue_rows(glue_dir, "dev"))
    for task in (generic_task(_spec(jsonl, name="sst2-jsonl")),
                 generic_task(GenericSpec("sst2-folder", dataset=str(folder), text_columns=("sentence",), label_column="label",
                                          kind="classification"))):
        assert set(task.splits) == {"train", "dev"} and task.eval_splits == ("dev",)
        for s, ex in want.items():
            got = load_split(task, s, None)
            assert got.ids == ex.ids and got.text_a == ex.text_a and (got.labels == ex.labels).all()
        assert task_from_record(json.loads(json.dumps(task_record(task)))) == task  # what a run records rebuilds it


def test_kinds_are_inferred_or_refused_with_one_sentence(sst2_files, tmp_path):
    with pytest.raises(DistillInputError, match=r"holds integers \(0..1\), which could be classes or scores; pass --task-kind"):
        generic_task(_spec(sst2_files, kind=""))
    rows = [{"text": f"sentence {i}", "mood": m, "score": s} for i, (m, s) in enumerate([("happy", 0.5), ("sad", 1.25)] * 4)]
    f = _write_csv(tmp_path / "t.csv", rows)
    words = generic_task(GenericSpec("moods", train_file=str(f), dev_file=str(f), text_columns=("text",), label_column="mood"))
    assert (words.kind, words.label_names, words.metrics) == ("classification", ("happy", "sad"), ("accuracy",))
    scores = generic_task(GenericSpec("scores", train_file=str(f), dev_file=str(f), text_columns=("text",), label_column="score"))
    assert (scores.kind, scores.metrics) == ("regression", ("pearson", "spearman"))
    np.testing.assert_allclose(load_split(scores, "dev", None).labels, [0.5, 1.25] * 4)
    many = _write_csv(tmp_path / "m.csv", [{"text": f"s {i}", "rude": i % 2, "long": i % 3 == 0} for i in range(6)])
    tags = generic_task(GenericSpec("tags", train_file=str(many), dev_file=str(many), text_columns=("text",),
                                    label_column="rude,long"))
    assert (tags.kind, tags.label_names, tags.metrics) == ("multilabel", ("rude", "long"), ("auc",))
    np.testing.assert_array_equal(load_split(tags, "dev", None).labels[:3], [[0, 1], [1, 0], [0, 0]])
    with pytest.raises(DistillInputError, match=r"has no column 'txt' \(--text-columns\); its columns are: text, mood, score"):
        load_split(generic_task(GenericSpec("bad", train_file=str(f), dev_file=str(f), text_columns=("txt",),
                                            label_column="mood")), "dev", None)
    with pytest.raises(DistillInputError, match="names a built-in task"):
        generic_task(GenericSpec("sst2", train_file=str(f), dev_file=str(f), text_columns=("text",), label_column="mood"))
    with pytest.raises(DistillInputError, match="--metrics pearson does not fit a classification task"):
        generic_task(GenericSpec("m", train_file=str(f), dev_file=str(f), text_columns=("text",), label_column="mood",
                                 metrics=("pearson",)))
    assert get_task("sst2").name == "sst2" and task_record(get_task("sst2")) == {"task": "sst2"}


def test_the_command_line_defines_a_task(sst2_files, tmp_path, capsys):
    from distill.teach import main

    assert main(["--task", "x", "--train-file", str(sst2_files["train"]), "--dev-file", str(sst2_files["dev"]),
                 "--text-columns", "sentence", "--label-column", "label", "--output-dir", str(tmp_path / "r")]) == 2
    assert "could be classes or scores; pass --task-kind classification" in capsys.readouterr().err
    assert main(["--label-column", "label", "--output-dir", str(tmp_path / "r")]) == 2
    assert "--label-column define your own task: add --train-file or --dataset" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # nothing half-written
