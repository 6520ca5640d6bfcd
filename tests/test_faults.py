"""Fault injection: what a run does after a kill, a second writer, damaged materials and file modes.

Each case is what a user hit (issue 21): every one must end in the documented state or in one
sentence with exit code 2, never in silently wrong materials."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest

from conftest import teach_cfg
from distill.errors import DistillInputError
from distill.rundir import run_lock


def _manifest(run_dir) -> dict:
    return json.loads((Path(run_dir) / "materials" / "manifest.json").read_text())


@pytest.fixture(scope="module")
def limited_run(tmp_path_factory, tiny_bert, glue_dir) -> Path:
    """A teacher trained on the first 60 of 160 train rows."""
    from distill.teach import run

    out = tmp_path_factory.mktemp("faults") / "limited"
    run(teach_cfg(teacher=str(tiny_bert), data_dir=str(glue_dir), output_dir=str(out), epochs=1, max_train_samples=60))
    return out


def test_resume_and_dump_only_keep_the_data_limits(limited_run, tmp_path, capsys):
    from distill.teach import main

    run_dir = tmp_path / "run"
    shutil.copytree(limited_run, run_dir)
    assert _manifest(run_dir)["splits"]["train"]["n"] == 60
    # killed during the dump: training is done, the materials are not; --resume dumps the run's 60 rows
    shutil.rmtree(run_dir / "materials")
    (run_dir / "timings.json").unlink()
    assert main(["--output-dir", str(run_dir), "--resume"]) == 0
    assert _manifest(run_dir)["splits"]["train"]["n"] == 60
    assert len(np.load(run_dir / "materials/train/logits.npy")) == 60
    # a re-dump of one split at another temperature rewrites every split at it (dev is not dropped)
    assert main(["--output-dir", str(run_dir), "--dump-only", "--splits", "train", "--temperature", "4"]) == 0
    m = _manifest(run_dir)
    assert m["temperature"] == 4 and m["splits"]["train"]["n"] == 60 and set(m["splits"]) == {"train", "dev", "test"}
    logits = np.load(run_dir / "materials/dev/logits.npy")
    z = logits / 4 - (logits / 4).max(-1, keepdims=True)
    np.testing.assert_allclose(np.load(run_dir / "materials/dev/soft.npy"), np.exp(z) / np.exp(z).sum(-1, keepdims=True),
                               rtol=1e-5)
    # a flag that would change the run's data is refused, naming it
    capsys.readouterr()
    assert main(["--output-dir", str(run_dir), "--dump-only", "--max-train-samples", "100"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--max-train-samples" in err and "new --output-dir" in err and "\n" not in err
    assert _manifest(run_dir)["splits"]["train"]["n"] == 60


def test_a_second_writer_is_refused(limited_run, sst2_run, tmp_path, capsys):
    from distill.student import main as student_main
    from distill.teach import main as teach_main

    busy = tmp_path / "busy"
    with run_lock(busy):
        assert teach_main(["--task", "sst2", "--teacher", str(limited_run), "--dump-only", "--output-dir", str(busy)]) == 2
        assert f"is being written by another distill process (pid {os.getpid()})" in capsys.readouterr().err
        assert student_main(["--arch", "cnn", "--materials", sst2_run["run_dir"], "--output-dir", str(busy)]) == 2
        assert f"(pid {os.getpid()})" in capsys.readouterr().err
        assert os.listdir(busy) == [".lock"]  # the refused writers wrote nothing
    with run_lock(busy):  # released with the holder: a dead holder never blocks the next run
        pass
    assert not busy.exists()  # a folder the lock made and nobody wrote to is not left behind


def test_crashed_run_is_replaced_with_overwrite(tiny_bert, glue_dir, tmp_path, capsys):
    from distill.teach import main

    crashed = tmp_path / "crashed"
    crashed.mkdir()
    (crashed / "config.json").write_text("{}")  # what a crash before the first checkpoint leaves
    args = ["--task", "sst2", "--teacher", str(tiny_bert), "--data-dir", str(glue_dir), "--output-dir", str(crashed),
            "--epochs", "1", "--max-length", "32", "--device", "cpu"]
    assert main(args) == 2
    assert "--overwrite to replace it" in capsys.readouterr().err
    assert main([*args, "--overwrite", "--splits", "nope"]) == 2  # bad input: the old run is left as it was
    assert sorted(os.listdir(crashed)) == [".lock", "config.json"]  # the lock file stays: removing it would race
    assert main([*args, "--overwrite", "--splits", "dev"]) == 0
    assert json.loads((crashed / "config.json").read_text())["kind"] == "teacher"
    assert (crashed / "materials/dev/logits.npy").is_file()


@pytest.mark.parametrize("damage, match", [
    (lambda d: np.save(d / "logits.npy", np.zeros((40, 3), np.float32)), r"logits\.npy has shape \[40, 3\]"),
    (lambda d: np.save(d / "logits.npy", np.random.default_rng(0).normal(size=(40, 2))), r"logits\.npy holds <f8 values"),
    (lambda d: np.save(d / "logits.npy", np.array([object()] * 40, dtype=object), allow_pickle=True),
     r"logits\.npy holds \|O values"),
    (lambda d: (d / "embeddings.npy").write_bytes((d / "embeddings.npy").read_bytes()[:-100]), r"embeddings\.npy differs"),
    (lambda d: (d / "embeddings.npy").write_bytes(b"not an array"), r"embeddings\.npy is not a readable \.npy"),
    (lambda d: np.save(d / "soft.npy", np.load(d / "soft.npy")[::-1]), r"soft\.npy differs from the file that was dumped"),
    (lambda d: (d / "labels.npy").unlink(), r"labels\.npy is missing"),
])
def test_damaged_materials_are_refused(sst2_run, tmp_path, damage, match):
    from distill.materials import load

    run_dir = tmp_path / "t"
    shutil.copytree(Path(sst2_run["run_dir"]) / "materials", run_dir / "materials")
    load(run_dir, "dev")  # intact: loads
    damage(run_dir / "materials" / "dev")
    with pytest.raises(DistillInputError, match=match) as err:
        load(run_dir, "dev")
    assert "re-dump them" in str(err.value) and "\n" not in str(err.value)


def test_materials_without_hashes_get_them_on_first_load(sst2_run, tmp_path):
    from distill.materials import load

    run_dir = tmp_path / "old"
    shutil.copytree(Path(sst2_run["run_dir"]) / "materials", run_dir / "materials")
    m = _manifest(run_dir)
    recorded = m["splits"]["dev"].pop("files")
    (run_dir / "materials/manifest.json").write_text(json.dumps(m))
    load(run_dir, "dev")
    assert _manifest(run_dir)["splits"]["dev"]["files"] == recorded  # the same hashes the dump wrote
    np.save(run_dir / "materials/dev/logits.npy", -np.load(run_dir / "materials/dev/logits.npy"))
    with pytest.raises(DistillInputError, match="differs"):
        load(run_dir, "dev")


def test_outputs_respect_the_umask(sst2_run, tmp_path):
    from distill.rundir import write_json, write_npy

    old = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
        write_npy(tmp_path / "a.npy", np.zeros(3))
        assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644
        assert stat.S_IMODE((tmp_path / "a.npy").stat().st_mode) == 0o644
    finally:
        os.umask(old)
    # the shared teacher run was written under the test process's umask like any other file
    mask = os.umask(0)
    os.umask(mask)
    run_dir = Path(sst2_run["run_dir"])
    for f in ("config.json", "metrics.json", "materials/manifest.json", "materials/train/logits.npy"):
        assert stat.S_IMODE((run_dir / f).stat().st_mode) == 0o666 & ~mask, f
