"""Every command line in the README and docs/ parses with its command's flags (nothing is run)."""

import re
import shlex
from pathlib import Path

import pytest

from distill.__main__ import COMMANDS

ROOT = Path(__file__).resolve().parent.parent


def _commands() -> list[tuple[str, str, list[str]]]:
    """(file, module, argv) of every ``python -m`` command in a fenced code block or an inline code span
    of the README and docs/; templates with placeholders (RUN, FILE, ``...``) are left out."""
    out = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = doc.read_text()
        blocks = re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S)
        lines = [ln for b in blocks for ln in b.replace("\\\n", " ").splitlines()]
        prose = re.sub(r"```.*?```", "", text, flags=re.S)
        spans = re.findall(r"`(python -m [^`]+)`", prose) + re.findall(r"`(distill [a-z]+ [^`]+)`", prose)
        spans = [c for c in spans if len(c.split()) > 3 - c.startswith("distill")]  # a bare `python -m X` names the command
        for cmd in [ln.split("#")[0] for ln in lines] + spans:
            # `distill teach ...` is `python -m distill.teach ...` (the console script, distill/__main__.py)
            cmd = re.sub(r"(^|&&|;)\s*distill ([a-z]+)\b", lambda m: f"{m.group(1)} python -m {COMMANDS[m.group(2)][0].removesuffix('.__main__')}",
                         cmd.strip())
            for m in re.finditer(r"python -m ([\w.]+)(.*?)(?=$|\s*(?:&&|;|\||>|python -m))", cmd.strip()):
                if m.group(1).split(".")[0] not in ("distill", "teachers", "students", "benchmarks"):
                    continue  # python -m venv / pip: not this project's flags
                argv = shlex.split(m.group(2))
                if any(a in ("...", "…") or re.fullmatch(r"[A-Z][A-Z_0-9]*(/.*)?", a) or "$" in a for a in argv):
                    continue
                out.append((doc.name, m.group(1), argv))
    return out


def _parse(module: str, argv: list[str]):
    from distill.cli import config_from, dataclass_parser

    if module == "distill.student":
        from students.train import _arch_flags, build_parser

        return build_parser(_arch_flags(argv)).parse_args(argv)
    if module == "distill.launch":
        return None  # a launcher: its own module name, then the flags of distill.teach / distill.student
    configs = {
        "distill.teach": ("teachers.pipeline", "TeachConfig"), "distill.tune": ("distill.tune", "TuneConfig"),
        "distill.augment": ("distill.augment", "AugmentConfig"), "distill.predict": ("distill.predict", "PredictConfig"),
        "distill.export": ("distill.export", "ExportConfig"), "benchmarks": ("benchmarks.__main__", "BenchConfig"),
        "distill.convert": ("distill.convert", "ConvertConfig"), "distill.kaggle_bundle": ("distill.kaggle_bundle", "KaggleConfig"),
        "distill.push": ("distill.push", "PushConfig"),
        "benchmarks.dump_speed": ("benchmarks.dump_speed", "DumpSpeedConfig"),
        "benchmarks.precision": ("benchmarks.precision", "PrecisionConfig"),
        "benchmarks.peer_textbrewer": ("benchmarks.peer_textbrewer", "PeerConfig"),
        "benchmarks.peer_layerwise": ("benchmarks.peer_layerwise", "PeerConfig"),
    }
    mod, name = configs[module]
    cls = getattr(__import__(mod, fromlist=[name]), name)
    return config_from(cls, dataclass_parser(cls, module, "").parse_args(argv))


def test_readme_has_every_command():
    assert {m for _, m, _ in _commands()} >= {"distill.teach", "distill.student", "distill.tune", "distill.augment",
                                              "distill.predict", "distill.export", "benchmarks"}


@pytest.mark.parametrize("doc,module,argv", _commands(), ids=lambda x: x if isinstance(x, str) else " ".join(x)[:60])
def test_readme_command_parses(doc, module, argv):
    try:
        _parse(module, argv)
    except SystemExit as exc:  # --help exits 0
        if exc.code != 0:
                pytest.fail(f"{doc}: python -m {module} {shlex.join(argv)} does not parse (exit {exc.code})")
