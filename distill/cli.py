"""Shared CLI plumbing: dataclass configs <-> argparse, and the bad-input exit path."""

from __future__ import annotations

import argparse
import dataclasses
import errno
import logging
import os
import signal
import sys
import threading
import typing
from collections.abc import Callable

from distill.errors import EXIT_BAD_INPUT, DistillInputError


def add_dataclass_args(parser: argparse.ArgumentParser, cls, *, skip: tuple[str, ...] = ()) -> None:
    """One ``--flag`` per dataclass field (underscores become dashes); help is the field's doc. Fields
    named in the class's ``__positional__`` are positional arguments; a field without a default is
    a required flag."""
    hints = typing.get_type_hints(cls)
    docs = getattr(cls, "__field_docs__", {})
    positional = getattr(cls, "__positional__", ())
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        typ = hints[f.name]
        origin, args = typing.get_origin(typ), typing.get_args(typ)
        base = next((a for a in args if a is not type(None)), typ) if args and origin is not tuple else typ
        doc = docs.get(f.name, "")
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:  # type: ignore[misc]
            if f.name in positional:
                parser.add_argument(f.name, type=base, help=doc.replace("%", "%%"))
            else:
                parser.add_argument("--" + f.name.replace("_", "-"), type=base, required=True, help=doc.replace("%", "%%"))
            continue
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        help_ = f"{doc} (default: {default})".replace("%", "%%")  # argparse formats help with %
        if f.name in positional:
            parser.add_argument(f.name, nargs="*" if origin is tuple else "?", type=args[0] if origin is tuple else base,
                                default=default, help=help_)
        elif typ is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=help_)
        elif origin is tuple:
            parser.add_argument(flag, nargs="*", default=default, type=args[0], help=help_)
        else:
            parser.add_argument(flag, type=base, default=default, help=help_)


def dataclass_parser(cls, prog: str, doc: str | None) -> argparse.ArgumentParser:
    """The parser of a command whose flags are all fields of ``cls``; its description is the first
    paragraph of the command module's docstring ``doc``."""
    # no abbreviations: --hidden must never silently mean --hidden-loss (an arch option another arch lacks)
    p = argparse.ArgumentParser(prog=prog, description=(doc or "").split("\n\n")[0], allow_abbrev=False)
    add_dataclass_args(p, cls)
    return p


def config_from(cls, args: argparse.Namespace):
    """``cls`` built from the parsed flags of ``add_dataclass_args``."""
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)})


def quiet_transformers() -> None:
    """transformers' warnings and weight-loading bars off (ours are in distill.progress), through the
    environment, so this does not import transformers: ``distill.devices.keep_libraries_off_xla``
    must run before it loads."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "transformers" in sys.modules:  # loaded already (a command called in-process): it read the environment then
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()


def print_result(obj) -> None:
    """A command's result as JSON on stdout (progress, tables and warnings go to stderr), for pipes."""
    import json

    print(json.dumps(obj, indent=2, default=str), flush=True)


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


# The I/O errors a user fixes (errno -> the fix); any other exception is a bug and keeps its traceback.
_OS_FIXES = {
    errno.EACCES: "fix its permissions or choose a path you can write to",
    errno.EPERM: "fix its permissions or choose a path you can write to",
    errno.EROFS: "the file system is read-only: choose a path on a writable disk",
    errno.ENOSPC: "the disk is full: free space or choose a path on another disk",
    errno.EDQUOT: "the disk quota is used up: free space or choose a path on another disk",
    errno.EISDIR: "it is a folder: name a file",
    errno.ENOTDIR: "part of the path is a file, not a folder: choose another path",
    errno.ENAMETOOLONG: "the name is too long: choose a shorter path",
}


def input_error(exc: BaseException) -> str | None:
    """The one sentence for an input or I/O error the user can fix, or None (a bug: traceback, exit 1)."""
    if isinstance(exc, DistillInputError):
        return str(exc)
    if isinstance(exc, OSError) and exc.errno in _OS_FIXES:
        where = exc.filename if exc.filename is not None else "a file this command writes"
        return f"{where}: {exc.strerror}; {_OS_FIXES[exc.errno]}"
    return None


def _terminate(signum, frame):
    # SIGTERM unwinds like Ctrl-C: temp files are removed on the way out, and what was renamed into
    # place is whole, so --resume continues as after kill -9.
    raise SystemExit(128 + signum)


def run_cli(fn: Callable[[], int | None]) -> int:
    """Run a CLI body: bad input or a fixable I/O error becomes one sentence on stderr and exit code 2."""
    # DISTILL_LOG_LEVEL=DEBUG adds e.g. torch-xla's metrics report (compile counts and times) after training
    level = os.environ.get("DISTILL_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(level=getattr(logging, level, logging.INFO), format="%(levelname)s %(name)s: %(message)s")
    # named third-party loggers whose warnings say nothing to a user of these commands: torchao's
    # optional CUDA/Triton kernels on a CPU machine, torch's pytree deprecation notes on torchao's enums,
    # transformers' load report for the pooler a mean-pooled teacher never uses
    for noisy in ("transformers", "datasets", "accelerate", "httpx", "urllib3", "torchao", "torch.utils._pytree"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
    try:
        return fn() or 0
    except (DistillInputError, OSError) as exc:
        message = input_error(exc)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


def dataclass_main(cls, prog: str, doc: str | None, fn: Callable, argv: list[str] | None) -> int:
    """The whole ``main`` of a command whose flags are the fields of ``cls`` and whose result is
    ``fn(config)``, printed as JSON."""
    quiet_transformers()

    def body():
        print_result(fn(config_from(cls, dataclass_parser(cls, prog, doc).parse_args(argv))))

    return run_cli(body)
