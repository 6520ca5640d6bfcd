"""distill on a Kaggle kernel (written by ``distill kaggle``; stdlib only, so it runs before distill is installed).

Installs distill and the wheels Kaggle's image lacks from the attached wheelhouse dataset (``--no-index``:
kernels run without internet), checks the torch and transformers the image has against what distill
needs, runs the command, and leaves its run directory in /kaggle/working (the kernel's output).
KAGGLE_INPUT / KAGGLE_WORKING move the two folders (a local run of the bundle).
"""

import os
import shlex
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

SETTINGS = {}  # filled in by distill kaggle
INPUT = Path(os.environ.get("KAGGLE_INPUT", "/kaggle/input"))
WORKING = Path(os.environ.get("KAGGLE_WORKING", "/kaggle/working"))


def mounted(slug: str) -> Path:
    """Where Kaggle mounted an attached dataset: /kaggle/input/<slug> (or deeper, by its slug)."""
    direct = INPUT / slug
    if direct.is_dir():
        return direct
    found = sorted(p for p in INPUT.rglob(slug) if p.is_dir())
    if not found:
        sys.exit(f"dataset {slug} is not attached under {INPUT}; add it to the kernel's data sources")
    return found[0]


def check_versions() -> None:
    """Stop with one line per package when the image's packages (torch, transformers, ...) do not fit distill."""
    from packaging.specifiers import SpecifierSet  # in Kaggle's image (and pip's own dependencies)

    problems = []
    for name, spec in SETTINGS["NEEDS"].items():
        try:
            found = version(name)
        except PackageNotFoundError:
            problems.append(f"distill needs {name}{spec}; this image has no {name}")
            continue
        if not SpecifierSet(spec).contains(found.split("+")[0], prereleases=True):
            problems.append(f"distill needs {name}{spec}; this image has {name} {found}")
    if problems:
        sys.exit("\n".join(problems) + "\nput the wheels it needs in the wheelhouse dataset, or pick another image")


def main() -> None:
    wheels = mounted(SETTINGS["WHEELHOUSE"])
    files = sorted(str(w) for w in wheels.glob("*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--force-reinstall", *files], check=True)
    check_versions()
    command = [a.replace("{input}", str(INPUT)).replace("{working}", str(WORKING)) for a in SETTINGS["COMMAND"]]
    for i, a in enumerate(command):  # attached datasets may be mounted deeper than /kaggle/input/<slug>
        if a.startswith(str(INPUT) + "/"):
            slug, _, rest = a[len(str(INPUT)) + 1:].partition("/")
            command[i] = str(mounted(slug) / rest) if rest else str(mounted(slug))
    print("distill " + shlex.join(command), flush=True)
    raise SystemExit(subprocess.run([sys.executable, "-m", "distill", *command]).returncode)


if __name__ == "__main__":
    main()
