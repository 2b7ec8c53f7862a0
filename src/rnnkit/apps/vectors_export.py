"""Word vectors out of any rnnkit checkpoint that has a vocabulary (``rnnkit vectors export``).

Where a checkpoint keeps its words and their embedding matrix, each application says itself
(``Application.word_embeddings``: ``{side: (vocabulary file, weight names)}``): a language
model its ``tokenizer.json`` (word, char or BPE) and ``embedding.weight``, a classifier
``vocab.json``, a tagger ``words.json``, a translation model one per side.

A language model with tied weights stores the shared matrix once (as ``decoder.weight`` when
safetensors kept that name). Special tokens (``<pad>``, ``<unk>``, ``<bos>``, ``<eos>``) and tokens
with white space (the newline token) are left out: no vector file format can hold the latter.

``layer="hidden-mean"`` (language models only): each word's vector is the mean of the LM's
top-layer state (both directions of a bidirectional LM) over its occurrences in a text: static
vectors from contextual ones (ELMo's idea, averaged).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from rnnkit.data.tokenizers import tokenizer_from_json
from rnnkit.data.vocab import Vocabulary
from rnnkit.data.wordvec import WordVectors
from rnnkit.errors import RnnkitError
from rnnkit.train import checkpoint as ckpt

__all__ = ["LAYERS", "SIDES", "checkpoint_vectors", "contextual_means"]

LAYERS = ("embedding", "hidden-mean")
SIDES = ("source", "target")


def _vocab_tokens(data: Any, source: str) -> tuple[list[str], set[str]]:
    """(token of every id, specials) of a saved tokenizer or vocabulary."""
    if isinstance(data, dict) and "kind" in data:
        tokenizer = tokenizer_from_json(data, source=source)
        if hasattr(tokenizer, "vocab"):
            return list(tokenizer.vocab.tokens), set(tokenizer.vocab.specials)
        backend = tokenizer.backend  # BPE: the Hugging Face tokenizer
        vocab = backend.get_vocab()
        tokens = [""] * len(vocab)
        for token, index in vocab.items():
            tokens[index] = token
        return tokens, {t for t in tokens if t.startswith("<") and t.endswith(">")}
    vocab = Vocabulary.from_json(data, source=source)
    return list(vocab.tokens), set(vocab.specials)


def _open(path: str | Path) -> tuple[Path, Any]:
    """The checkpoint directory and the application that made it (None: not installed)."""
    from rnnkit.apps import registry

    directory = ckpt.resolve_checkpoint(path)
    saved = ckpt.read_json(directory / ckpt.CONFIG)
    task = saved.get("task") if isinstance(saved, dict) else None
    return directory, registry.get(task) if task in registry.names() else None


def _keep(tokens: list[str], specials: set[str], matrix: np.ndarray) -> WordVectors:
    rows = [i for i, t in enumerate(tokens)
            if t and t not in specials and not any(ch.isspace() for ch in t)]
    if not rows:
        raise RnnkitError("no exportable words (only special tokens or white space)")
    return WordVectors([tokens[i] for i in rows], matrix[rows])


def checkpoint_vectors(path: str | Path, layer: str = "embedding", side: str = "source",
                       data: str | None = None, max_tokens: int | None = None) -> WordVectors:
    """The word vectors of the checkpoint at ``path`` (a run directory: its ``best/``)."""
    if layer not in LAYERS:
        raise RnnkitError(f"--layer {layer}: expected one of {', '.join(LAYERS)}")
    directory, app = _open(path)
    task = app.name if app is not None else None
    where = app.word_embeddings if app is not None else {}
    vocab_file, weight_names = where.get(side, where.get("source", ("", ())))
    if not vocab_file or not (directory / vocab_file).exists():
        looked = f"{vocab_file} not there" if vocab_file else "it keeps no word embeddings"
        raise RnnkitError(f"--checkpoint {path}: checkpoint {directory} (task {task!r}) has no "
                          f"vocabulary ({looked}): no words to export vectors for")
    if layer == "hidden-mean":
        if not _is_language_model(app):
            raise RnnkitError(f"--layer hidden-mean: only for language-model checkpoints (lm, "
                              f"vectors), got a {task!r} checkpoint; use --layer embedding")
        if not data:
            raise RnnkitError("--layer hidden-mean: --data TEXT required (the text whose "
                              "contexts are averaged)")
        return contextual_means(path, task, data, max_tokens)
    tokens, specials = _vocab_tokens(ckpt.read_json(directory / vocab_file),
                                     str(directory / vocab_file))
    matrix = _weight(directory, weight_names)
    if matrix.shape[0] != len(tokens):
        raise RnnkitError(f"checkpoint {directory}: {vocab_file} holds {len(tokens)} tokens but "
                          f"{weight_names[0]} has {matrix.shape[0]} rows")
    return _keep(tokens, specials, matrix)


def _is_language_model(app: Any) -> bool:
    from rnnkit.apps.lm import LM
    from rnnkit.apps.vectors import Vectors

    return isinstance(app, LM | Vectors)


def _weight(directory: Path, names: tuple[str, ...]) -> np.ndarray:
    from safetensors import SafetensorError, safe_open

    file = directory / ckpt.WEIGHTS
    if not file.exists():
        raise RnnkitError(f"checkpoint {directory}: {ckpt.WEIGHTS} is missing")
    try:
        with safe_open(str(file), framework="pt") as weights:
            keys = set(weights.keys())
            for name in names:
                if name in keys:
                    return weights.get_tensor(name).float().numpy()
    except SafetensorError as err:
        raise RnnkitError(f"{file}: damaged weights file: {err}") from None
    raise RnnkitError(f"{file}: no {names[0]} (the embedding matrix) in the weights")


def contextual_means(path: str | Path, task: str, data: str,
                     max_tokens: int | None = None, window: int = 64,
                     batch: int = 32) -> WordVectors:
    """Mean top-layer LM state of every vocabulary word over its occurrences in ``data``
    (windows of ``window`` tokens, each from zero states); words absent from the text are
    left out."""
    from rnnkit.apps import registry, runner
    from rnnkit.data.corpus import find_files, read_chunks

    app = registry.get(task)
    loaded = app.load(runner.open_checkpoint(app, path, "cpu"))
    model, tokenizer = loaded.model, loaded.tokenizer
    ids = np.concatenate([np.asarray(tokenizer.encode(chunk), dtype=np.int64)
                          for chunk in read_chunks(find_files(data, "*.txt"), "strict")] or
                         [np.zeros(0, np.int64)])
    if max_tokens is not None:
        ids = ids[:max_tokens]
    usable = len(ids) // window * window
    if usable == 0:
        raise RnnkitError(f"--data {data}: fewer than {window} tokens")
    windows = torch.from_numpy(ids[:usable].reshape(-1, window).T.copy())  # (T, N)
    vocab = model.config.vocab_size
    sums, counts = None, np.zeros(vocab)
    with torch.no_grad():
        for start in range(0, windows.shape[1], batch):
            x = windows[:, start:start + batch]
            top = model.contextual(x)[-1].float().numpy()  # (T, b, H')
            flat_ids = x.numpy().reshape(-1)
            if sums is None:
                sums = np.zeros((vocab, top.shape[-1]))
            np.add.at(sums, flat_ids, top.reshape(-1, top.shape[-1]))
            np.add.at(counts, flat_ids, 1)
    tokens, specials = _vocab_tokens(tokenizer.to_json(), "tokenizer")
    seen = counts > 0
    means = np.zeros_like(sums)
    means[seen] = sums[seen] / counts[seen, None]
    unseen = {tokens[i] for i in np.flatnonzero(~seen)}
    return _keep(tokens, specials | unseen, means.astype(np.float32))
