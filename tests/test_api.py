"""The `distill` console script and the Python API (`distill.teach`, `distill.distil`, `distill.load`)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest

import distill
from distill.__main__ import COMMANDS, main
from distill.errors import DistillInputError

ROOT = Path(__file__).resolve().parent.parent


def test_console_script_lists_every_command(capsys):
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]["distill"] == "distill.__main__:main"
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("teach", "student", "tune", "augment", "predict", "export", "bench"):
        assert f"  {name} " in out
    assert main([]) == 2 and main(["nope"]) == 2
    assert "unknown command 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_subcommand_is_its_python_m_form(name, capsys):
    with pytest.raises(SystemExit) as exc:
        main([name, "--help"])
    assert exc.value.code == 0
    mod = __import__(COMMANDS[name][0], fromlist=["main"])
    with pytest.raises(SystemExit):
        mod.main(["--help"])
    help_sub, help_mod = capsys.readouterr().out.split("usage:")[1:3]
    assert help_sub == help_mod  # the same parser, the same flags


def test_python_api_trains_and_predicts_like_the_commands(sst2_run, tmp_path):
    from distill.predict import PredictConfig
    from distill.predict import run as predict

    res = distill.distil(arch="cnn", materials=sst2_run["run_dir"], output_dir=str(tmp_path / "cnn"), epochs=2,
                         batch_size=16, device="cpu", num_filters=8)
    assert res["metrics"]["dev"]["accuracy"] >= 0.5
    model = distill.load(res["run_dir"])
    texts = ["a wonderful film", "a terrible film indeed"]
    f = tmp_path / "in.txt"
    f.write_text("\n".join(texts) + "\n")
    np.testing.assert_allclose(model.predict(texts), predict(PredictConfig(res["run_dir"], str(f)))["logits"], rtol=1e-6)
    assert model.labels(texts) == [model.task.label_names[i] for i in model.predict(texts).argmax(-1)]
    with pytest.raises(DistillInputError, match="single texts"):
        model.predict([("a", "b")])


def test_python_api_fine_tune(tiny_bert, glue_dir, tmp_path):
    res = distill.fine_tune(task="sst2", teacher=str(tiny_bert), data_dir=str(glue_dir), epochs=1, max_train_samples=32,
                        max_length=32, batch_size=16, device="cpu", splits=("train", "dev"), output_dir=str(tmp_path / "t"))
    assert set(res["metrics"]) == {"train", "dev"} and (tmp_path / "t" / "materials" / "manifest.json").is_file()
    assert distill.load(res["run_dir"]).labels(["a wonderful film"])[0] in ("negative", "positive")


def test_push_uploads_the_model_folder_with_its_card(cnn_run_for_push, monkeypatch, capsys):
    """distill push, offline: the folder and files it would upload, and the Hub calls it makes (mocked)."""
    from huggingface_hub import HfApi

    from distill.push import PushConfig, run as push

    run_dir = cnn_run_for_push
    plan = push(PushConfig(str(run_dir), "someone/cnn-sst2", dry_run=True))
    assert plan["folder"] == str(run_dir / "model") and {"model.safetensors", "student.json", "README.md"} <= set(plan["files"])
    calls = []
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: calls.append(("create", repo_id, kw)))
    monkeypatch.setattr(HfApi, "upload_folder", lambda self, **kw: calls.append(("upload", kw["repo_id"], kw["folder_path"])) or "c1")
    out = push(PushConfig(str(run_dir), "someone/cnn-sst2", private=True))
    assert out["uploaded"] and calls == [("create", "someone/cnn-sst2", {"private": True, "exist_ok": True}),
                                         ("upload", "someone/cnn-sst2", str(run_dir / "model"))]
    assert main(["push", str(run_dir), "not-a-repo-id"]) == 2
    assert "must be user/name" in capsys.readouterr().err


@pytest.fixture
def cnn_run_for_push(sst2_run, tmp_path):
    res = distill.distil(arch="cnn", materials=sst2_run["run_dir"], output_dir=str(tmp_path / "cnn"), epochs=1,
                         batch_size=16, device="cpu", num_filters=8)
    return Path(res["run_dir"])
