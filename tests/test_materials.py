import numpy as np
import pytest

from distill.data import Examples
from distill.errors import DistillInputError
from distill.materials import base_manifest, load, soft_targets, write_split
from distill.tasks import get_task

SST2 = get_task("sst2")


def _examples(n=5, labelled=True):
    return Examples([f"train-{i}" for i in range(n)], [f"text {i}" for i in range(n)], None,
                    np.arange(n) % 2 if labelled else None, "mem")


def _write(tmp_path, teacher="abc", temperature=2.0, split="train", ex=None):
    ex = ex or _examples()
    logits = np.arange(len(ex) * 2, dtype=np.float32).reshape(-1, 2)
    pooled = np.ones((len(ex), 4), dtype=np.float32)
    base = base_manifest(SST2, teacher={"name": "t", "weights_sha256": teacher}, tokenizer={"name": "tok"},
                         max_length=32, temperature=temperature)
    write_split(tmp_path, base, split, ex, logits, pooled, SST2)
    return logits


def test_soft_targets_golden():
    z = np.array([[2.0, 0.0], [0.0, 0.0]])
    # softmax([1, 0]) at T=2: [e/(e+1), 1/(e+1)]
    np.testing.assert_allclose(soft_targets(SST2, z, 2.0), [[np.e / (np.e + 1), 1 / (np.e + 1)], [0.5, 0.5]], rtol=1e-6)
    np.testing.assert_allclose(soft_targets(get_task("stsb"), np.array([[3.5]]), 4.0), [[3.5]])
    big = soft_targets(SST2, np.array([[1000.0, 0.0]]), 1.0)  # no overflow
    np.testing.assert_allclose(big, [[1.0, 0.0]])


def test_roundtrip_and_mmap(tmp_path):
    logits = _write(tmp_path)
    mat = load(tmp_path, "train", task="sst2", teacher_sha256="abc", mmap=True)
    assert isinstance(mat.logits, np.memmap)
    np.testing.assert_array_equal(mat.logits, logits)
    np.testing.assert_allclose(mat.soft, soft_targets(SST2, logits, 2.0))
    assert mat.embeddings.shape == (5, 4) and mat.labels.tolist() == [0, 1, 0, 1, 0]
    assert mat.ids[2] == "train-2" and mat.text_a[2] == "text 2"
    assert mat.rows_for(["train-3", "train-0"]).tolist() == [3, 0]
    m = mat.manifest
    assert m["task"] == "sst2" and m["temperature"] == 2.0 and m["splits"]["train"]["n"] == 5
    assert {"torch", "transformers", "numpy"} <= set(m["versions"])


def test_refusals(tmp_path):
    _write(tmp_path)
    with pytest.raises(DistillInputError, match="task 'sst2', not 'cola'"):
        load(tmp_path, "train", task="cola")
    with pytest.raises(DistillInputError, match="different teacher"):
        load(tmp_path, "train", teacher_sha256="zzz")
    with pytest.raises(DistillInputError, match="no complete split 'dev'"):
        load(tmp_path, "dev")
    with pytest.raises(DistillInputError, match="ids differ"):
        load(tmp_path, "train", ids=["train-0"])
    with pytest.raises(DistillInputError, match="texts differ"):
        load(tmp_path, "train", text_sha256=_examples(4).text_sha256())
    mat = load(tmp_path, "train", text_sha256=_examples().text_sha256(), ids=_examples().ids)
    with pytest.raises(DistillInputError, match="no rows for 1 id"):
        mat.rows_for(["train-0", "dev-0"])
    with pytest.raises(DistillInputError, match="no manifest.json"):
        load(tmp_path / "elsewhere", "train")


def test_other_teacher_replaces_old_splits(tmp_path):
    _write(tmp_path, split="train")
    _write(tmp_path, split="dev", ex=Examples(["dev-0"], ["x"], None, None, "mem"))
    assert set(load(tmp_path, "train").manifest["splits"]) == {"train", "dev"}
    _write(tmp_path, teacher="other", split="dev", ex=Examples(["dev-0"], ["x"], None, None, "mem"))
    assert set(load(tmp_path, "dev").manifest["splits"]) == {"dev"}  # old teacher's train is gone
    assert not (tmp_path / "train").exists()
