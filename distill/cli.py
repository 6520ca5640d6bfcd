"""Shared CLI plumbing: dataclass configs <-> argparse, and the bad-input exit path."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import typing
from collections.abc import Callable

from distill.errors import EXIT_BAD_INPUT, DistillInputError


def add_dataclass_args(parser: argparse.ArgumentParser, cls, *, skip: tuple[str, ...] = ()) -> None:
    """One ``--flag`` per dataclass field (underscores become dashes); help is the field's doc."""
    hints = typing.get_type_hints(cls)
    docs = getattr(cls, "__field_docs__", {})
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        typ = hints[f.name]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        help_ = f"{docs.get(f.name, '')} (default: {default})".replace("%", "%%")  # argparse formats help with %
        origin, args = typing.get_origin(typ), typing.get_args(typ)
        if typ is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=help_)
        elif origin is tuple:
            parser.add_argument(flag, nargs="*", default=default, type=args[0], help=help_)
        else:
            base = next((a for a in args if a is not type(None)), typ) if args else typ
            parser.add_argument(flag, type=base, default=default, help=help_)


def given_fields(argv: list[str], names) -> set[str]:
    """Field names whose flags appear in ``argv`` (``--foo-bar``, ``--foo-bar=x``, ``--no-foo-bar``)."""
    names = set(names)
    out = set()
    for a in argv:
        if not a.startswith("--"):
            continue
        name = a[2:].split("=")[0].replace("-", "_")
        if name in names:
            out.add(name)
        elif name.startswith("no_") and name[3:] in names:
            out.add(name[3:])
    return out


def field_docs(cls):
    """Class decorator: read ``# comment`` after each field into ``__field_docs__`` for --help."""
    import inspect
    import re

    docs = {}
    for line in inspect.getsource(cls).splitlines():
        m = re.match(r"\s+(\w+):.*?#\s*(.+)$", line)
        if m:
            docs[m[1]] = m[2].strip()
    cls.__field_docs__ = docs
    return cls


def run_cli(fn: Callable[[], int | None]) -> int:
    """Run a CLI body; a DistillInputError becomes one sentence on stderr and exit code 2."""
    # DISTILL_LOG_LEVEL=DEBUG adds e.g. torch-xla's metrics report (compile counts and times) after training
    level = os.environ.get("DISTILL_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(level=getattr(logging, level, logging.INFO), format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("transformers", "datasets", "accelerate", "httpx", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    try:
        return fn() or 0
    except DistillInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
