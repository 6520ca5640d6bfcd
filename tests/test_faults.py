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
    from teachers.pipeline import run

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


# --- one error boundary: input and I/O errors are one sentence and exit 2, bugs keep their traceback


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


LATIN1 = "un film très émouvant\n".encode("latin-1")


def test_non_utf8_inputs_are_one_sentence(sst2_run, glue_dir, tiny_bert, tmp_path, capsys):
    from distill.predict import main as predict
    from distill.teach import main as teach

    for name, blob in (("latin1.txt", LATIN1), ("binary.txt", bytes(range(256)) * 4)):
        (tmp_path / name).write_bytes(blob)
        assert predict([sst2_run["run_dir"], "--input", str(tmp_path / name)]) == 2
        assert f"{tmp_path / name} is not UTF-8 text" in _one_line(capsys)
    bad = tmp_path / "glue" / "SST-2"
    shutil.copytree(glue_dir / "SST-2", bad)
    (bad / "train.tsv").write_bytes((bad / "train.tsv").read_bytes() + LATIN1)
    out = tmp_path / "t"
    assert teach(["--task", "sst2", "--teacher", str(tiny_bert), "--data-dir", str(tmp_path / "glue"),
                  "--output-dir", str(out)]) == 2
    assert "train.tsv is not UTF-8 text" in _one_line(capsys) and not out.exists()
    assert teach(["--output-dir", str(tmp_path / "x"), "--task", "sst2", "--teacher", sst2_run["run_dir"], "--dump-only",
                  "--data-dir", str(glue_dir), "--extra", f"more={tmp_path / 'latin1.txt'}"]) == 2
    assert "latin1.txt is not UTF-8 text" in _one_line(capsys) and not (tmp_path / "x").exists()


def test_damaged_weights_and_wrong_paths_are_one_sentence(sst2_run, tmp_path, capsys):
    from distill.predict import main as predict
    from distill.student import main as student
    from distill.teach import main as teach

    run_dir = tmp_path / "t"
    shutil.copytree(sst2_run["run_dir"], run_dir)
    w = run_dir / "best" / "model.safetensors"
    w.write_bytes(w.read_bytes()[:1000])
    (tmp_path / "in.txt").write_text("a fine film\n")
    assert predict([str(run_dir), "--input", str(tmp_path / "in.txt")]) == 2
    assert "could not be loaded" in _one_line(capsys)
    assert student(["--arch", "cnn", "--materials", str(run_dir), "--output-dir", str(tmp_path / "s")]) == 2
    assert "dumped by a different teacher" in _one_line(capsys)  # the weights no longer hash as the dump's
    from students.base import load_teacher_weights

    with pytest.raises(DistillInputError, match=r"best/model\.safetensors is not a readable safetensors file"):
        load_teacher_weights(run_dir / "best")
    (tmp_path / "afile").write_text("x")
    assert teach(["--output-dir", str(tmp_path / "afile"), "--teacher", sst2_run["run_dir"], "--dump-only"]) == 2
    assert "is an existing file, not a folder" in _one_line(capsys)
    assert (tmp_path / "afile").read_text() == "x"


def test_os_errors_map_to_their_fix_and_bugs_keep_the_traceback(capsys):
    import errno

    from distill.cli import input_error, run_cli

    def raising(exc):
        def body():
            raise exc
        return body

    assert run_cli(raising(OSError(errno.ENOSPC, "No space left on device", "/data/run/x.npy"))) == 2
    assert _one_line(capsys) == "error: /data/run/x.npy: No space left on device; the disk is full: free space or choose a path on another disk"
    assert run_cli(raising(PermissionError(errno.EACCES, "Permission denied", "/ro/run"))) == 2
    assert "fix its permissions" in _one_line(capsys)
    assert "read-only" in input_error(OSError(errno.EROFS, "Read-only file system", "/ro/x"))
    # no catch-all: a bug is not turned into a sentence
    with pytest.raises(ZeroDivisionError):
        run_cli(lambda: 1 / 0)
    with pytest.raises(FileNotFoundError):  # ENOENT is the code's job to check first, with the flag named
        run_cli(raising(FileNotFoundError(errno.ENOENT, "No such file or directory", "/x")))


def test_sigterm_unwinds_and_removes_temp_files(tmp_path):
    """SIGTERM mid-write: the temp file is removed, the old file stays whole (kill -9 leaves only a
    dot-temp behind, which no reader looks at)."""
    import signal
    import subprocess
    import sys

    target = tmp_path / "big.npy"
    target.write_bytes(b"old")
    code = f"""
import numpy as np
from distill.cli import run_cli
from distill.rundir import write_npy
def body():
    arr = np.zeros(20_000_000, dtype=np.float32)  # 80 MB a write, written over and over until the signal
    print("writing", flush=True)
    while True:
        write_npy({str(target)!r}, arr)
run_cli(body)
"""
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, cwd=Path(__file__).parents[1])
    assert proc.stdout.readline().strip() == b"writing"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM  # unwound by SystemExit, not killed outright
    assert [p.name for p in tmp_path.iterdir()] == ["big.npy"]  # the temp file of the cut-off write is gone
    assert target.read_bytes() == b"old" or np.load(target).shape == (20_000_000,)  # old or whole, never half


def test_signal_right_after_the_temp_file_is_created_leaves_nothing(tmp_path, monkeypatch):
    """The SIGTERM that CI caught between mkstemp's create and its return (a leftover .tmp): a
    SystemExit the moment the temp file exists still removes it and leaves the old file whole."""
    import builtins

    import distill.rundir as rundir

    def create_then_exit(file, mode="r", *args, **kwargs):
        builtins.open(file, mode, *args, **kwargs).close()
        raise SystemExit(143)

    target = tmp_path / "a.json"
    target.write_text("old")
    monkeypatch.setattr(rundir, "open", create_then_exit, raising=False)
    with pytest.raises(SystemExit):
        rundir.write_json(target, {"new": 1})
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"] and target.read_text() == "old"


def test_bad_search_space_and_output_paths(sst2_run, tmp_path, capsys):
    from distill.augment import main as augment
    from distill.tune import main as tune

    for spec in ('{"lr": {"low": 1e-2, "high": 1e-4}}', '{"dropout": {"choices": []}}', '[1, 2]',
                 '{"lr": {"low": 0, "high": 1e-2, "log": true}}'):
        (tmp_path / "space.json").write_text(spec)
        out = tmp_path / "tune"
        assert tune(["--materials", sst2_run["run_dir"], "--space", str(tmp_path / "space.json"),
                     "--output-dir", str(out)]) == 2
        assert "--space" in _one_line(capsys) and not out.exists()
    (tmp_path / "adir").mkdir()
    assert augment(["--task", "sst2", "--output", str(tmp_path / "adir")]) == 2
    assert "is a folder" in _one_line(capsys)
    pytest.importorskip("onnxruntime")
    from distill.export import main as export

    assert export([sst2_run["run_dir"], "--output", str(tmp_path / "adir")]) == 2
    assert "must name a file" in _one_line(capsys)
    assert list((tmp_path / "adir").iterdir()) == []


# --- the small things a user trips on


def test_one_class_teacher_is_warned_about(caplog):
    import logging

    from distill.tasks import get_task
    from teachers.pipeline import _warn_if_one_class

    events = []
    jlog = lambda event, **kw: events.append((event, kw))  # noqa: E731
    with caplog.at_level(logging.WARNING, logger="distill.teach"):
        _warn_if_one_class(get_task("sst2"), "dev", np.array([[2.0, -1.0], [0.5, 0.1], [3.0, 0.0]]), jlog)
    assert "predicts 'negative' for every dev row" in caplog.text
    assert events == [("warning", {"split": "dev", "message": "teacher predicts one class (negative) on every row"})]
    events.clear()
    _warn_if_one_class(get_task("sst2"), "dev", np.array([[2.0, -1.0], [0.0, 1.0]]), jlog)
    _warn_if_one_class(get_task("stsb"), "dev", np.array([[2.0], [3.0]]), jlog)  # a score has no classes
    assert events == []


def test_result_json_on_stdout_and_quiet_third_party(sst2_run, glue_dir, tmp_path, capsys):
    import logging

    from distill.teach import main

    assert main(["--output-dir", str(tmp_path / "d"), "--teacher", sst2_run["run_dir"], "--dump-only",
                 "--splits", "dev", "--data-dir", str(glue_dir)]) == 0
    out = json.loads(capsys.readouterr().out)  # stdout is the result alone
    assert out["run_dir"] == str(tmp_path / "d") and "accuracy" in out["metrics"]["dev"]
    for name in ("torchao", "torch.utils._pytree", "transformers"):
        assert logging.getLogger(name).getEffectiveLevel() >= logging.ERROR, name


def test_plain_progress_lines(monkeypatch, capsys):
    from distill import progress

    now = [100.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    bar = progress._PlainBar("dump", 10, every=5)
    bar.advance(1, note="loss 0.5")  # the first batch, at once: no rate from 0 s
    now[0] += 6
    bar.advance(2)
    now[0] += 6
    bar.advance(7)
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["dump: 1/10 (0s) loss 0.5", "dump: 3/10 (0.5/s, 6s)", "dump: 10/10 (0.8/s, 12s)"]
