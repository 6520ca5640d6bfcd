"""``distill push RUN REPO_ID``: upload a run's model to the Hugging Face Hub (needs the network and a
token: ``huggingface-cli login`` or ``HF_TOKEN``).

A teacher run uploads ``RUN/best`` (a transformers folder; a mean-pooled one with its own model
type and code, so ``trust_remote_code=True`` loads it right); a student run uploads ``RUN/model``
with the run's model card (``README.md``, the Hub's metadata header first). ``--dry-run`` lists what
would go up and stops before any network call.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from distill.cli import dataclass_main, field_docs
from distill.errors import DistillInputError
from distill.rundir import read_json, resolve_run


@field_docs
@dataclass
class PushConfig:
    __positional__ = ("run_dir", "repo_id")

    run_dir: str  # a teacher or student run directory (for --seeds: its best seed)
    repo_id: str  # the Hub repository, user/name (created if missing)
    private: bool = False  # create the repository private
    dry_run: bool = False  # list the files that would be uploaded and stop (no network)


def upload_plan(run_dir: Path) -> tuple[Path, list[str]]:
    """(the folder to upload, its files) of a run; refuses runs without a model of their own."""
    run_dir = resolve_run(run_dir)
    kind = read_json(run_dir / "config.json").get("kind")
    folder = {"teacher": run_dir / "best", "student": run_dir / "model"}.get(kind)
    if folder is None or not folder.is_dir():
        raise DistillInputError(f"{run_dir} has no model to push ({kind!r} run); push a finished teacher or student run")
    if kind == "student" and (run_dir / "README.md").is_file() and not (folder / "README.md").is_file():
        import shutil

        shutil.copyfile(run_dir / "README.md", folder / "README.md")  # the card travels with the model
    return folder, sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def run(cfg: PushConfig) -> dict:
    if cfg.repo_id.count("/") != 1:
        raise DistillInputError(f"repo_id {cfg.repo_id!r} must be user/name (or org/name)")
    folder, files = upload_plan(Path(cfg.run_dir))
    if cfg.dry_run:
        return {"folder": str(folder), "files": files, "repo_id": cfg.repo_id, "uploaded": False}
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(cfg.repo_id, private=cfg.private, exist_ok=True)
    info = api.upload_folder(folder_path=str(folder), repo_id=cfg.repo_id, commit_message=f"distill push {cfg.run_dir}")
    return {"folder": str(folder), "files": files, "repo_id": cfg.repo_id, "uploaded": True, "commit": str(info)}


def main(argv: list[str] | None = None) -> int:
    return dataclass_main(PushConfig, "python -m distill.push", __doc__, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
