import numpy as np
import pytest

from conftest import write_tsv
from distill import metrics
from distill.data import load_split, read_text_file
from distill.errors import DistillInputError
from distill.tasks import TASKS, get_task


def test_task_table_covers_glue():
    assert set(TASKS) == {"cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli",
                          "jigsaw-toxic", "jigsaw-severity", "jigsaw-multilingual", "xnli"}
    assert {t.kind for t in TASKS.values()} == {"classification", "regression", "multilabel", "ranking"}
    assert get_task("jigsaw-toxic").num_labels == 6 and not get_task("jigsaw-toxic").is_pair
    assert get_task("cola").primary_metric == "mcc"
    assert get_task("mrpc").metrics == ("f1", "accuracy") and get_task("qqp").metrics == ("f1", "accuracy")
    assert get_task("stsb").kind == "regression" and get_task("stsb").metrics == ("pearson", "spearman")
    assert get_task("mnli").eval_splits == ("dev_matched", "dev_mismatched")
    assert get_task("mnli").num_labels == 3 and get_task("mnli").is_pair
    assert get_task("xnli").is_pair and get_task("xnli").label_names == ("entailment", "neutral", "contradiction")
    assert not get_task("sst2").is_pair and get_task("rte").is_pair
    with pytest.raises(DistillInputError, match="unknown task 'sst3'.*sst2"):
        get_task("sst3")


def test_reads_classic_layouts(glue_dir):
    sst = load_split(get_task("sst2"), "train", glue_dir)
    assert len(sst) == 160 and sst.text_b is None and sst.labels.dtype == np.int64
    assert sst.ids[:2] == ["train-0", "train-1"] and set(sst.labels) == {0, 1}
    cola = load_split(get_task("cola"), "dev", glue_dir)  # header-less file
    assert len(cola) == 40 and cola.text_a[0] == load_split(get_task("sst2"), "dev", glue_dir).text_a[0]
    mrpc = load_split(get_task("mrpc"), "train", glue_dir)  # BOM before "Quality"
    assert mrpc.text_b is not None and mrpc.labels[:2].tolist() == [0, 1]
    stsb = load_split(get_task("stsb"), "dev", glue_dir)
    assert stsb.labels.dtype == np.float32 and stsb.labels[1] == 5.0
    test = load_split(get_task("sst2"), "test", glue_dir)
    assert test.labels is None and test.ids[3] == "test-3"


def test_gzip_and_quotes_kept(tmp_path):
    import gzip

    d = tmp_path / "SST-2"
    d.mkdir()
    with gzip.open(d / "train.tsv.gz", "wt", encoding="utf-8") as f:
        f.write('sentence\tlabel\n"a quoted start\t1\nit \'s fine "\t0\n')
    ex = load_split(get_task("sst2"), "train", tmp_path)
    assert ex.text_a == ['"a quoted start', 'it \'s fine "'] and ex.labels.tolist() == [1, 0]


@pytest.mark.parametrize("rows, match", [
    ([("good", "1"), ("bad",)], r"train.tsv:3 has 1 columns, expected 2"),
    ([("good", "1"), ("  ", "0")], r"train.tsv:3 has an empty text"),
    ([("good", "7")], r"train.tsv:2: label '7' is outside the label set of sst2"),
])
def test_bad_rows_are_named(tmp_path, rows, match):
    write_tsv(tmp_path / "SST-2" / "train.tsv", ["sentence", "label"], rows)
    with pytest.raises(DistillInputError, match=match):
        load_split(get_task("sst2"), "train", tmp_path)


def test_skip_bad_rows(tmp_path):
    write_tsv(tmp_path / "SST-2" / "train.tsv", ["sentence", "label"], [("good", "1"), ("bad",), ("fine", "0")])
    ex = load_split(get_task("sst2"), "train", tmp_path, skip_bad_rows=True)
    assert ex.text_a == ["good", "fine"]


def test_missing_sources_name_both_options(tmp_path, monkeypatch):
    with pytest.raises(DistillInputError, match="does not exist.*Hub"):
        load_split(get_task("sst2"), "train", tmp_path / "nope")
    with pytest.raises(DistillInputError, match=r"SST-2/train.tsv not found.*Hub"):
        load_split(get_task("sst2"), "train", tmp_path)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DistillInputError, match="--data-dir was not given.*nyu-mll/glue.*pass --data-dir"):
        load_split(get_task("rte"), "dev", None)


def test_wrong_columns(tmp_path):
    write_tsv(tmp_path / "SST-2" / "train.tsv", ["text", "label"], [("good", "1")])
    with pytest.raises(DistillInputError, match="no column.*'sentence'.*not a classic GLUE SST-2 file"):
        load_split(get_task("sst2"), "train", tmp_path)


def test_read_text_file(tmp_path):
    (tmp_path / "a.txt").write_text("one\ntwo\n")
    assert read_text_file(tmp_path / "a.txt", split="x").text_a == ["one", "two"]
    (tmp_path / "b.csv").write_text('id,comment_text\n7,"multi\nline"\n9,plain\n')
    ex = read_text_file(tmp_path / "b.csv", split="x")
    assert ex.ids == ["x-7", "x-9"] and ex.text_a == ["multi\nline", "plain"]
    write_tsv(tmp_path / "p.tsv", ["sentence1", "sentence2"], [("a", "b")])
    assert read_text_file(tmp_path / "p.tsv", split="x", pair=True).text_b == ["b"]
    (tmp_path / "e.txt").write_text("one\n\nthree\n")
    with pytest.raises(DistillInputError, match="e.txt:2 is an empty line"):
        read_text_file(tmp_path / "e.txt", split="x")
    write_tsv(tmp_path / "n.tsv", ["foo"], [("a",)])
    with pytest.raises(DistillInputError, match="no text column"):
        read_text_file(tmp_path / "n.tsv", split="x")
    with pytest.raises(DistillInputError, match="not found"):
        read_text_file(tmp_path / "missing.txt", split="x")


def test_metrics_golden():
    sst, cola, mrpc, stsb = (get_task(t) for t in ("sst2", "cola", "mrpc", "stsb"))
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [0.0, 3.0], [1.0, 0.0]])
    labels = np.array([0, 1, 0, 0])
    assert metrics.compute(sst, logits, labels) == {"accuracy": 0.75}
    # preds 0,1,1,0 vs 0,1,0,0: TP=1 FP=1 FN=0 TN=2 -> F1 = 2/3, MCC = (1*2 - 1*0)/sqrt(2*1*3*2) = 2/sqrt(12)
    assert metrics.compute(mrpc, logits, labels) == pytest.approx({"f1": 2 / 3, "accuracy": 0.75})
    assert metrics.compute(cola, logits, labels)["mcc"] == pytest.approx(2 / np.sqrt(12))
    scores = np.array([[1.0], [2.0], [3.0], [5.0]])
    m = metrics.compute(stsb, scores, np.array([1.0, 2.0, 3.0, 4.0]))
    assert m["spearman"] == pytest.approx(1.0) and m["pearson"] == pytest.approx(0.9827076298239908)
