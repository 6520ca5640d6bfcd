"""XNLI (Conneau et al. 2018): NLI in 15 languages, from the official zips or the Hub (``facebook/xnli``).

Local layout (``--data-dir`` holding the two unzipped folders)::

    XNLI-1.0/xnli.dev.tsv, xnli.test.tsv          language, gold_label, sentence1, sentence2, ... (15 languages)
    XNLI-MT-1.0/multinli/multinli.train.<lang>.tsv premise, hypo, label (machine-translated MultiNLI)

Training reads the languages of ``--train-languages`` (``en``: zero-shot transfer, the XNLI
paper's main setting; ``all``: every machine-translated language); dev and test keep all 15, the
language of every row carried as its group, so accuracy is reported overall and per language
(``accuracy_<lang>``). Labels follow the Hub's order; the MT files' ``contradictory`` is
``contradiction``. Files are read through ``distill.data.generic.read_table`` (``datasets``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from distill.data.examples import Examples
from distill.data.generic import read_table
from distill.errors import DistillInputError
from distill.tasks import Task

LANGUAGES = ("ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi", "zh")
SPELLINGS = {"contradictory": "contradiction"}  # XNLI-MT-1.0's training files spell it so
HUB = "facebook/xnli"


def train_languages(value: str | tuple[str, ...]) -> tuple[str, ...]:
    """``en`` | ``all`` | a list of XNLI language codes -> the codes (checked)."""
    langs = [v.strip() for part in ([value] if isinstance(value, str) else value) for v in part.split(",") if v.strip()]
    if langs == ["all"]:
        return LANGUAGES
    bad = [x for x in langs if x not in LANGUAGES]
    if bad or not langs:
        raise DistillInputError(f"--train-languages {','.join(langs) or '(none)'}: use en (zero-shot), all, or codes of "
                                f"{', '.join(LANGUAGES)}")
    return tuple(dict.fromkeys(langs))


def _label_ids(task: Task, raw: list, where: str) -> np.ndarray:
    index = {name: i for i, name in enumerate(task.label_names)}
    out = []
    for v in raw:
        name = SPELLINGS.get(str(v).strip(), str(v).strip())
        if name not in index:
            raise DistillInputError(f"{where}: label {v!r} is not one of {', '.join(task.label_names)} (or contradictory)")
        out.append(index[name])
    return np.asarray(out, dtype=np.int64)


def _examples(split: str, ids: list[str], a: list, b: list, labels, groups: list[str], source: str,
              skip_bad_rows: bool) -> Examples:
    empty = [i for i in range(len(ids)) if not (str(a[i] or "").strip() and str(b[i] or "").strip())]
    if empty and not skip_bad_rows:
        raise DistillInputError(f"{source}: row {empty[0]} has an empty sentence; fix it or pass --skip-bad-rows")
    keep = sorted(set(range(len(ids))) - set(empty))
    return Examples([ids[i] for i in keep], [a[i].strip() for i in keep], [b[i].strip() for i in keep],
                    None if labels is None else labels[keep], source, groups=[groups[i] for i in keep])


def load_xnli(task: Task, split: str, data_dir, languages: tuple[str, ...], skip_bad_rows: bool = False) -> Examples:
    """One XNLI split: local files when ``data_dir`` is given, else the Hub (one config per language)."""
    if data_dir is None:
        return _load_hub(task, split, languages, skip_bad_rows)
    root = Path(data_dir)
    if split == "train":
        parts = []
        for lang in languages:
            path = root / "XNLI-MT-1.0" / "multinli" / f"multinli.train.{lang}.tsv"
            ds = read_table(path, f"--data-dir, --train-languages {lang}")
            _need(ds, ("premise", "hypo", "label"), path)
            parts.append((lang, ds, str(path)))
        ids = [f"train-{lang}-{i}" for lang, ds, _ in parts for i in range(len(ds))]
        a = [t for _, ds, _ in parts for t in ds["premise"]]
        b = [t for _, ds, _ in parts for t in ds["hypo"]]
        labels = np.concatenate([_label_ids(task, ds["label"], src) for _, ds, src in parts])
        groups = [lang for lang, ds, _ in parts for _ in range(len(ds))]
        return _examples(split, ids, a, b, labels, groups, ", ".join(src for *_, src in parts), skip_bad_rows)
    path = root / "XNLI-1.0" / task.splits[split].file
    ds = read_table(path, "--data-dir")
    _need(ds, ("language", "gold_label", "sentence1", "sentence2"), path)
    return _examples(split, [f"{split}-{i}" for i in range(len(ds))], list(ds["sentence1"]), list(ds["sentence2"]),
                     _label_ids(task, ds["gold_label"], str(path)), [str(x) for x in ds["language"]], str(path), skip_bad_rows)


def _need(ds, columns, path: Path) -> None:
    missing = [c for c in columns if c not in ds.column_names]
    if missing:
        raise DistillInputError(f"{path} has no column {missing[0]!r}; its columns are: {', '.join(ds.column_names)} "
                                f"(the official XNLI-1.0 / XNLI-MT-1.0 layout)")


def _load_hub(task: Task, split: str, languages: tuple[str, ...], skip_bad_rows: bool) -> Examples:
    import datasets

    hub_split = task.splits[split].hub_split
    langs = languages if split == "train" else LANGUAGES
    try:
        parts = [(lang, datasets.load_dataset(HUB, lang, split=hub_split)) for lang in langs]
    except Exception as exc:  # offline, ...
        raise DistillInputError(f"no data for xnli: --data-dir was not given and {HUB} could not be loaded "
                                f"({type(exc).__name__}); pass --data-dir with XNLI-1.0/ and XNLI-MT-1.0/") from exc
    prefix = "train-{lang}-{i}" if split == "train" else "{split}-{lang}-{i}"
    ids = [prefix.format(split=split, lang=lang, i=i) for lang, ds in parts for i in range(len(ds))]
    labels = np.concatenate([np.asarray(ds["label"], dtype=np.int64) for _, ds in parts])
    return _examples(split, ids, [t for _, ds in parts for t in ds["premise"]], [t for _, ds in parts for t in ds["hypothesis"]],
                     labels, [lang for lang, ds in parts for _ in range(len(ds))], f"{HUB}:{hub_split}", skip_bad_rows)
