"""XNLI: both official layouts (XNLI-1.0's 15-language dev/test, XNLI-MT-1.0's translated training files
with their `contradictory` spelling), the Hub path (datasets mocked), and a tiny teacher -> student run
that reports accuracy per language."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from distill.data import load_split
from distill.data.xnli import LANGUAGES, train_languages
from distill.errors import DistillInputError
from distill.tasks import get_task

XNLI_HEADER = ["language", "gold_label", "sentence1_binary_parse", "sentence2_binary_parse", "sentence1_parse",
               "sentence2_parse", "sentence1", "sentence2", "promptID", "pairID", "genre", "label1", "label2", "label3",
               "label4", "label5"]
PAIRS = [("a wonderful film", "the film is good", "entailment"), ("a dull film", "the film is good", "contradiction"),
         ("a film about cats", "the film is long", "neutral"), ("loved it", "it was great", "entailment")]


def _tsv(path: Path, header: list[str], rows: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join("\t".join(map(str, r)) for r in [header, *rows]) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def xnli_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("xnli")
    for split in ("dev", "test"):
        rows = [[lang, gold, "(", "(", "(", "(", f"{a} {lang}", b, k, k, "fiction", gold, gold, gold, gold, gold]
                for k, (lang, (a, b, gold)) in enumerate((lang, p) for lang in LANGUAGES for p in PAIRS)]
        _tsv(root / "XNLI-1.0" / f"xnli.{split}.tsv", XNLI_HEADER, rows)
    for lang in ("en", "fr"):  # the MT files spell contradiction "contradictory"
        rows = [[a, b, "contradictory" if gold == "contradiction" else gold] for a, b, gold in PAIRS * 10]
        _tsv(root / "XNLI-MT-1.0" / "multinli" / f"multinli.train.{lang}.tsv", ["premise", "hypo", "label"], rows)
    return root


def test_both_layouts_read_with_languages_and_labels(xnli_dir):
    task = get_task("xnli")
    dev = load_split(task, "dev", xnli_dir)
    assert len(dev) == 15 * 4 and sorted(set(dev.groups)) == sorted(LANGUAGES) and dev.text_b[0] == "the film is good"
    np.testing.assert_array_equal(dev.labels[:4], [0, 2, 1, 0])  # entailment, contradiction, neutral: the Hub's order
    train = load_split(task, "train", xnli_dir)  # --train-languages en (zero-shot transfer) by default
    assert len(train) == 40 and set(train.groups) == {"en"} and (train.labels == np.tile([0, 2, 1, 0], 10)).all()
    both = load_split(task, "train", xnli_dir, languages=train_languages("en,fr"))
    assert len(both) == 80 and both.ids[40] == "train-fr-0"
    assert train_languages("all") == LANGUAGES
    with pytest.raises(DistillInputError, match="--train-languages xx: use en"):
        train_languages("xx")
    with pytest.raises(DistillInputError, match="multinli.train.de.tsv"):
        load_split(task, "train", xnli_dir, languages=("de",))


def test_the_hub_path_reads_one_config_per_language(monkeypatch):
    import datasets

    calls = []

    def fake(path, lang, split):
        calls.append((path, lang, split))
        return datasets.Dataset.from_dict({"premise": [f"p {lang}"], "hypothesis": ["h"], "label": [2]})

    monkeypatch.setattr(datasets, "load_dataset", fake)
    dev = load_split(get_task("xnli"), "dev", None)
    assert len(dev) == 15 and calls[0] == ("facebook/xnli", "ar", "validation") and dev.groups[-1] == "zh"
    assert load_split(get_task("xnli"), "train", None, languages=("en",)).ids == ["train-en-0"]


def test_tiny_teacher_and_student_report_accuracy_per_language(xnli_dir, tiny_bert, tmp_path):
    from conftest import teach_cfg

    from students.train import StudentConfig, run as distil
    from teachers.pipeline import run as teach

    res = teach(teach_cfg(task="xnli", teacher=str(tiny_bert), data_dir=str(xnli_dir), output_dir=str(tmp_path / "t"),
                          epochs=2, train_languages=("en", "fr")))
    dev = res["metrics"]["dev"]
    assert {f"accuracy_{lang}" for lang in LANGUAGES} <= set(dev)
    assert dev["accuracy"] == pytest.approx(np.mean([dev[f"accuracy_{lang}"] for lang in LANGUAGES]))  # equal-sized groups
    student = distil(StudentConfig(materials=res["run_dir"], output_dir=str(tmp_path / "s"), arch="bilstm", epochs=1,
                                   batch_size=16, save_steps=0, device="cpu", options={"hidden": 8}))
    assert {f"accuracy_{lang}" for lang in LANGUAGES} <= set(student["metrics"]["dev"])
    from distill import materials

    mat = materials.load(res["run_dir"], "dev")  # the language travels in the materials, row by row
    assert mat.groups[:4] == ["ar"] * 4 and mat.groups[-1] == "zh" and mat.ids[0] == "dev-0"
