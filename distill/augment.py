"""``python -m distill.augment``: a transfer set for distillation — perturbed copies of the training
sentences, to be labelled by the teacher (Tang et al. 2019, "Distilling Task-Specific Knowledge
from BERT into Simple Neural Networks", section 3.2).

    python -m distill.augment --task sst2 --data-dir ../shared/data/glue_data --output runs/sst2-aug.tsv --factor 20
    python -m distill.teach --output-dir runs/sst2 --dump-only --splits dev --extra transfer=runs/sst2-aug.tsv
    python -m distill.student --arch cnn --materials runs/sst2 --transfer-split transfer --output-dir runs/cnn-aug

For each training example, ``--factor`` draws; in each draw every word independently is
* masked (replaced by the teacher tokenizer's mask token) with ``--p-mask`` 0.1, or else
* replaced with ``--p-replace`` 0.1 by one of its ``--neighbours`` nearest words in the teacher's
  word-embedding space (cosine). Tang et al. replace a word with another of the same POS tag; no
  POS tagger is available offline, and embedding neighbours keep the word's role and register
  about as well (neighbours of "film": movie, films, ...);
then with ``--p-ngram`` 0.25 the draw is cut to a random n-gram, n uniform in 1..5. Draws equal to
an original or to an earlier draw are dropped, so the file holds distinct new texts only. Pair
tasks perturb both sentences. Output: a TSV with the task's text column(s) as header.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from dataclasses import dataclass

import numpy as np

from distill.cli import config_from, dataclass_parser, field_docs, print_result, run_cli
from distill.errors import DistillInputError

log = logging.getLogger(__name__)


@field_docs
@dataclass
class AugmentConfig:
    task: str = "sst2"  # task whose train split is perturbed
    data_dir: str | None = None  # as for distill.teach (glue_data folder or Kaggle files)
    output: str = ""  # TSV to write (atomically)
    factor: int = 20  # draws per training example (Tang et al.: 20 for SST-2)
    seed: int = 42  # every draw is a function of (seed, example, draw)
    teacher: str = "minilm"  # whose tokenizer (mask token) and word embeddings (neighbours) to use
    p_mask: float = 0.1  # per-word probability of the mask token (Tang et al. 0.1)
    p_replace: float = 0.1  # per-word probability of a nearest-neighbour word (Tang et al. 0.1, POS-guided)
    p_ngram: float = 0.25  # per-draw probability of keeping only a random n-gram (Tang et al. 0.25)
    max_ngram: int = 5  # n of the n-gram is uniform in 1..max_ngram (Tang et al. 5)
    neighbours: int = 10  # candidates per word for the replacement, nearest first
    max_train_samples: int | None = None  # perturb only the first K training examples
    exclude: str = ""  # comma-separated TSVs this command wrote before: their rows are not written again (grow a set, label only the new rows)

    def validate(self) -> None:
        checks = [
            (bool(self.output), "--output is required: the TSV file to write"),
            (not Path(self.output or ".").is_dir() or not self.output,
             f"--output {self.output} is a folder; name the TSV file to write, e.g. --output {self.output}/transfer.tsv"),
            (self.factor >= 1, "--factor must be >= 1"),
            (0 <= self.p_mask and 0 <= self.p_replace and self.p_mask + self.p_replace <= 1,
             "--p-mask and --p-replace must be >= 0 with a sum <= 1"),
            (0 <= self.p_ngram <= 1, "--p-ngram must be in [0, 1]"),
            (self.max_ngram >= 1 and self.neighbours >= 1, "--max-ngram and --neighbours must be >= 1"),
            *((Path(f).is_file(), f"--exclude {f}: no such file; name a TSV an earlier --output wrote") for f in self.excluded()),
        ]
        for ok, msg in checks:
            if not ok:
                raise DistillInputError(msg)

    def excluded(self) -> list[str]:
        return [f for f in self.exclude.split(",") if f]


def perturb(words: list[str], rng: random.Random, *, mask: str, neighbours: dict[str, list[str]], p_mask: float,
            p_replace: float, p_ngram: float, max_ngram: int) -> list[str]:
    """One draw of Tang et al.'s rules over a word list: per word, mask with p_mask, else replace with
    a neighbour with p_replace (words without neighbours stay); then with p_ngram keep a random n-gram."""
    out = []
    for w in words:
        x = rng.random()
        if x < p_mask:
            out.append(mask)
        elif x < p_mask + p_replace and neighbours.get(w):
            out.append(rng.choice(neighbours[w]))
        else:
            out.append(w)
    if out and rng.random() < p_ngram:
        n = rng.randint(1, max_ngram)
        if n < len(out):
            start = rng.randint(0, len(out) - n)
            out = out[start : start + n]
    return out


def embedding_neighbours(words: set[str], tokenizer, embeddings: np.ndarray, k: int) -> dict[str, list[str]]:
    """For every word that is one whole token of the teacher's vocabulary: its k nearest whole-word
    tokens by cosine of the teacher's input word embeddings [V, H] (itself, subword pieces and
    special tokens excluded). Other words get no neighbours and are never replaced."""
    vocab = tokenizer.get_vocab()
    special = set(tokenizer.all_special_ids)
    cand = np.array(sorted(i for t, i in vocab.items() if i not in special and t.isalpha()), dtype=np.int64)
    e = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-8)
    ce = e[cand]  # [M, H] whole-word candidates
    id_to_tok = {i: t for t, i in vocab.items()}
    queries = sorted(w for w in words if w in vocab and vocab[w] not in special)
    out: dict[str, list[str]] = {}
    for s in range(0, len(queries), 2048):  # [2048, M] similarities at a time
        chunk = queries[s : s + 2048]
        ids = np.array([vocab[w] for w in chunk])
        sim = e[ids] @ ce.T
        sim[cand[None, :] == ids[:, None]] = -np.inf  # not the word itself
        top = np.argpartition(-sim, k, axis=1)[:, :k]
        for row, w in enumerate(chunk):
            best = top[row][np.argsort(-sim[row, top[row]])]
            out[w] = [id_to_tok[int(cand[j])] for j in best]
    return out


def augment(texts: list[tuple[str, ...]], cfg: AugmentConfig, *, mask: str, neighbours: dict[str, list[str]],
            on_progress=None, exclude: set[tuple[str, ...]] = frozenset()) -> list[tuple[str, ...]]:
    """``factor`` draws per example (each text of a pair perturbed alike), originals, repeats and
    ``exclude`` dropped."""
    seen = {tuple(" ".join(t.split()) for t in ex) for ex in texts} | set(exclude)
    out = []
    for i, ex in enumerate(texts):
        rng = random.Random(f"{cfg.seed}-{i}")  # per example: shards or a different order give the same draws
        for _ in range(cfg.factor):
            new = tuple(" ".join(perturb(t.split(), rng, mask=mask, neighbours=neighbours, p_mask=cfg.p_mask,
                                         p_replace=cfg.p_replace, p_ngram=cfg.p_ngram, max_ngram=cfg.max_ngram))
                        for t in ex)
            if all(new) and new not in seen:
                seen.add(new)
                out.append(new)
        if on_progress is not None:
            on_progress(1)
    return out


def run(cfg: AugmentConfig, *, show_progress: bool = False) -> dict:
    """Write the transfer set; returns {"output", "examples", "written", "per_example", "duplicates_dropped"}."""
    import contextlib

    from distill.data import load_split
    from distill.rundir import write_text
    from distill.tasks import get_task
    from students.base import load_teacher_weights, word_embeddings
    from teachers.hf import resolve_teacher
    from distill.hf_modeling import load_tokenizer

    cfg.validate()
    task = get_task(cfg.task)
    ex = load_split(task, "train", cfg.data_dir)
    if cfg.max_train_samples:
        ex = ex.select(cfg.max_train_samples)
    texts = list(zip(ex.text_a, ex.text_b)) if ex.text_b is not None else [(t,) for t in ex.text_a]
    path = resolve_teacher(cfg.teacher)
    tokenizer = load_tokenizer(path)
    mask = tokenizer.mask_token or tokenizer.unk_token
    state, _ = load_teacher_weights(path)
    words = {w for t in texts for s in t for w in s.split()}
    if getattr(tokenizer, "do_lower_case", False):
        log.info("uncased teacher: neighbours are looked up for lower-cased words")
    columns = task.splits["train"].text_columns if task.loader == "glue" else ("text",)
    exclude = {tuple(row) for f in cfg.excluded() for row in read_rows(Path(f), columns)}
    neighbours = embedding_neighbours(words, tokenizer, word_embeddings(state).numpy(), cfg.neighbours)
    log.info("%d of %d distinct words have embedding neighbours", len(neighbours), len(words))
    bar = contextlib.nullcontext(None)
    if show_progress:
        from distill.progress import bar as make_bar

        bar = make_bar(f"augment x{cfg.factor}", len(texts))
    with bar as b:
        new = augment(texts, cfg, mask=mask, neighbours=neighbours, on_progress=b.advance if b else None, exclude=exclude)
    lines = ["\t".join(columns)] + ["\t".join(s.replace("\t", " ") for s in t) for t in new]
    write_text(cfg.output, "\n".join(lines) + "\n")
    return {"output": cfg.output, "examples": len(texts), "written": len(new), "per_example": len(new) / len(texts),
            "excluded": len(exclude), "duplicates_dropped": len(texts) * cfg.factor - len(new)}


def read_rows(path: Path, columns: tuple[str, ...]) -> list[list[str]]:
    """The text rows of a TSV this command wrote (header = ``columns``), whitespace-normalised."""
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or tuple(lines[0].split("\t")) != tuple(columns):
        raise DistillInputError(f"--exclude {path}: its header is not {chr(9).join(columns)!r}; name a TSV distill.augment wrote for this task")
    return [[" ".join(t.split()) for t in line.split("\t")] for line in lines[1:]]


def main(argv: list[str] | None = None) -> int:
    p = dataclass_parser(AugmentConfig, "python -m distill.augment", __doc__)

    def body():
        a = p.parse_args(argv)
        res = run(config_from(AugmentConfig, a), show_progress=True)
        print_result(res)

    return run_cli(body)


if __name__ == "__main__":
    raise SystemExit(main())
