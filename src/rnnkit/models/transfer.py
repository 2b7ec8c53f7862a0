"""Transfer into a task model: pre-trained word vectors, a language model's encoder, and the
ULMFiT training schedule (discriminative learning rates, gradual unfreezing).

Used alike by ``classify``, ``tag`` and (embeddings only) ``translate``; see ``docs/transfer.md``.

- :func:`init_embeddings`: rows of an ``nn.Embedding`` from a word2vec / GloVe / binary vectors
  file (read by :func:`rnnkit.data.wordvec.read_vectors`). Each vocabulary word is looked up as
  it is, else case-insensitively (the first such word of the file, the most frequent one in a
  frequency-sorted file): a ``--lowercase`` vocabulary finds ``London`` of a cased file, a cased
  vocabulary finds ``the`` for ``The`` when the file has no ``The``. Specials (``<pad>``,
  ``<unk>``) and words not found keep their initialisation; the log line says how many of the
  vocabulary's words were found.
- :func:`init_from_lm`: a word-level :class:`~rnnkit.models.lm.LanguageModel`'s embedding rows
  (mapped word by word, the same rule; ``<unk>`` to ``<unk>``) and its first recurrent layers
  into the task model's ``embedding`` and ``rnn``: the forward LM's into the forward direction,
  a bidirectional LM's backward LM into the reverse direction (both read from a zero state, the
  reverse one from the right). Layers are copied from the bottom up while their names and
  shapes match the LM's (a bidirectional model's layer 1 reads 2H inputs, the LM's H: only
  layer 0 then); the cell, the embedding size and the hidden size must equal the LM's (an error
  names both otherwise).
- :func:`init_lm_features`: ``--lm-features``, a frozen word LM (its embedding and recurrent
  stacks, and each task word's row in its vocabulary) into the task model's ``lm_features``
  (:mod:`rnnkit.models.lm_features`), whose states join each word's input, ELMo-style.
- :func:`layer_groups`, :class:`LayerSchedule`, :func:`with_schedule`: the model's parameters in
  depth order (input embeddings, recurrent layer 0, 1, …, the rest = the head), a learning-rate
  scale per group (the head at the full rate, each group below ``1 / decay`` of the one above:
  Howard & Ruder 2018 use 2.6) and gradual unfreezing (epoch 0 trains the head only, each later
  epoch one more group, top down). The Trainer asks its task for ``param_groups(model)`` and
  calls ``begin_epoch(model, epoch)`` before each epoch; :func:`with_schedule` adds both to a
  task.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rnnkit._options import option
from rnnkit.errors import RnnkitError

__all__ = ["TransferOptions", "initialise", "init_embeddings", "init_from_lm", "word_matcher",
           "init_lm_features", "lm_feature_config", "layer_groups", "LayerSchedule",
           "with_schedule", "LM_CELLS"]

# the task models' cell names → the language model's
LM_CELLS = {"lstm": "lstm", "gru": "gru", "rnn": "rnn_tanh"}
_LAYER = re.compile(r"^rnn\.\w+?_l(\d+)(_reverse)?$")


@dataclass
class TransferOptions:
    """The transfer options of ``classify`` and ``tag`` (their ``transfer`` section: fixed on
    resume, like the model options)."""

    init_embeddings: str | None = option(
        None, "word vectors (word2vec/GloVe text or word2vec binary) that start the embedding "
        "rows of the words they hold; the others keep their random start (docs/transfer.md)")
    init_from: str | None = option(
        None, "a word-level LM checkpoint (rnnkit lm train --tokenizer word): its embedding and "
        "first recurrent layers start the encoder, ULMFiT-style (docs/transfer.md)")
    layer_lr_decay: float = option(
        1.0, "discriminative learning rates: each layer group (embedding, recurrent layer 0, "
        "1, ..., head) trains at 1/FACTOR of the rate of the group above it (ULMFiT: 2.6; "
        "1: one rate)", bounds="[1, inf)")
    gradual_unfreezing: bool = option(
        False, "gradual unfreezing: train only the head in the first epoch, one more layer "
        "group (top down) in each later epoch")
    lm_features: str | None = option(
        None, "a word-level LM checkpoint (best: rnnkit lm train --tokenizer word "
        "--bidirectional): its frozen states join each word's input, ELMo-style; the model "
        "keeps a copy of the LM (docs/transfer.md)")


def word_matcher(words: Sequence[str]):
    """``find(word)`` → the row of ``word`` in ``words``: exact, else case-insensitive (the
    first such entry), else None."""
    exact: dict[str, int] = {}
    folded: dict[str, int] = {}
    for i, word in enumerate(words):
        exact.setdefault(word, i)
        folded.setdefault(word.lower(), i)

    def find(word: str) -> int | None:
        row = exact.get(word)
        return row if row is not None else folded.get(word.lower())

    return find


def _copy_rows(embedding: nn.Embedding, vocab_words: Sequence[str], specials: Collection[str],
               source: torch.Tensor, find) -> tuple[int, int]:
    """Copy ``source[find(w)]`` into the row of each non-special ``w``; (found, words)."""
    rows, sources = [], []
    for i, word in enumerate(vocab_words):
        if word in specials:
            continue
        j = find(word)
        if j is not None:
            rows.append(i)
            sources.append(j)
    if rows:
        with torch.no_grad():
            weight = embedding.weight
            weight[torch.tensor(rows)] = source[torch.tensor(sources)].to(weight)
    return len(rows), sum(1 for w in vocab_words if w not in specials)


def init_embeddings(embedding: nn.Embedding, words: Sequence[str], path: str | Path, *,
                    specials: Collection[str] = (), option: str = "--init-embeddings",
                    size_option: str = "--embedding-size", what: str = "") -> str:
    """Rows of ``embedding`` for ``words`` (row i is ``words[i]``; ``specials`` are left
    alone) from the vectors file ``path``; returns the log line. A file whose dimension is not
    the embedding's → ``RnnkitError`` naming both."""
    from rnnkit.data.wordvec import read_vectors

    try:
        vectors = read_vectors(path)
    except RnnkitError as err:
        raise RnnkitError(f"{option} {path}: {err}") from None
    size = embedding.weight.shape[1]
    if vectors.dim != size:
        raise RnnkitError(f"{option} {path}: the vectors have {vectors.dim} dimensions, but "
                          f"{size_option} is {size}; give {size_option} {vectors.dim}")
    found, total = _copy_rows(embedding, words, specials, torch.from_numpy(vectors.matrix),
                              word_matcher(vectors.words))
    return f"{option}: {found} of {total} {what}words found in {path}"


def init_from_lm(model: nn.Module, lm: nn.Module, lm_tokenizer: Any, vocab, *,
                 source: str, cell: str, option: str = "--init-from") -> str:
    """The LM's embedding rows (word by word) and its first recurrent layers into
    ``model.embedding`` and ``model.rnn`` (the forward LM into the forward direction, a
    bidirectional LM's backward LM into the reverse direction); returns the log line.

    ``lm`` is a :class:`~rnnkit.models.lm.LanguageModel`, ``lm_tokenizer`` its tokenizer (it
    must be a word tokenizer), ``cell`` the task model's cell name."""
    where = f"{option} {source}"
    _check_word_lm(lm_tokenizer, where)
    lm_cfg, embedding, rnn = lm.config, model.embedding, model.rnn
    if LM_CELLS.get(cell) != lm_cfg.cell:
        raise RnnkitError(f"{where}: the LM's cell is {lm_cfg.cell}, the model's --cell is "
                          f"{cell}; give --cell {_task_cell(lm_cfg.cell)}")
    for name, mine, theirs in (("--embedding-size", embedding.weight.shape[1],
                                lm_cfg.embedding_size),
                               ("--hidden-size", rnn.hidden_size, lm_cfg.hidden_size)):
        if mine != theirs:
            raise RnnkitError(f"{where}: the LM's {name.removeprefix('--')} is {theirs}, "
                              f"{name} is {mine}; give {name} {theirs}")
    lm_vocab = lm_tokenizer.vocab
    lm_words = lm_vocab.tokens
    lm_find = word_matcher([w if w not in lm_vocab.specials else "" for w in lm_words])
    found, total = _copy_rows(embedding, vocab.tokens, vocab.specials,
                              lm.embedding.weight.detach(), lm_find)
    unk = vocab.unk_id if hasattr(vocab, "unk_id") else None
    lm_unk = lm_vocab.unk_id if hasattr(lm_vocab, "unk_id") else None
    if unk is not None and lm_unk is not None:
        with torch.no_grad():
            embedding.weight[unk] = lm.embedding.weight[lm_unk].detach()
    sources = [("", lm.rnn)]
    backward = getattr(lm, "rnn_backward", None)
    if getattr(rnn, "bidirectional", False):
        if backward is not None:
            sources.append(("_reverse", backward))
            directions = "forward LM → forward direction, backward LM → reverse direction"
        else:
            directions = ("forward direction; the reverse direction keeps its random "
                          "initialisation: train the LM with --bidirectional to fill it")
    else:
        directions = "forward LM → forward direction"
    copied, why = _copy_layers(rnn, sources, min(rnn.num_layers, lm.rnn.num_layers))
    if copied == 0:
        chars = " (with --chars it is the embedding and the character RNN's states: give " \
                "--no-chars)" if getattr(model, "chars", None) is not None else ""
        raise RnnkitError(f"{where}: the first recurrent layer does not fit the LM's: "
                          f"{why.removeprefix('layer 0 and up ')}{chars}")
    layers = ", ".join(str(k) for k in range(copied)) or "none"
    note = f"; not copied: {why}" if why else ""
    return (f"{option}: {found} of {total} words found in the vocabulary of {source}; "
            f"recurrent layers copied: {layers} ({directions}){note}")


def _open_lm(path: str, load_lm: Callable[[str], Any] | None, option: str) -> Any:
    """``load_lm(path)`` with its errors named by ``option``."""
    if load_lm is None:
        raise ValueError(f"{option}: opening an LM needs load_lm")
    try:
        return load_lm(path)
    except RnnkitError as err:
        raise RnnkitError(f"{option} {path}: {err}") from None


def _check_word_lm(lm_tokenizer: Any, where: str) -> None:
    """``RnnkitError`` unless the LM reads words (a char or BPE LM has no rows for them)."""
    kind = getattr(lm_tokenizer, "kind", None)
    if kind != "word":
        raise RnnkitError(f"{where}: the language model's tokenizer is {kind!r}; only a "
                          "word-level LM (rnnkit lm train --tokenizer word) has word rows")


def lm_feature_config(path: str | None, load_lm: Callable[[str], Any] | None,
                      option: str = "--lm-features") -> dict | None:
    """The model config's ``lm_features`` entry for ``--lm-features PATH`` (the LM's own
    config as a dict; None without a path): what sizes the task model's inputs."""
    if not path:
        return None
    loaded = _open_lm(path, load_lm, option)  # read each time: the file may have changed
    _check_word_lm(loaded.tokenizer, f"{option} {path}")
    return loaded.model.config.to_json()


def init_lm_features(model: nn.Module, lm: nn.Module, lm_tokenizer: Any, vocab, *,
                     source: str, option: str = "--lm-features") -> str:
    """Copy the LM's embedding and recurrent stacks into ``model.lm_features`` (a
    :class:`~rnnkit.models.lm_features.LMFeatures` built from the same LM config) and map each
    word of ``vocab`` to its LM row (the :func:`word_matcher` rule; ``<unk>`` otherwise);
    returns the log line."""
    where = f"{option} {source}"
    _check_word_lm(lm_tokenizer, where)
    features = getattr(model, "lm_features", None)
    if features is None:
        raise ValueError(f"{where}: the model was built without lm_features")
    lm_vocab = lm_tokenizer.vocab
    find = word_matcher([w if w not in lm_vocab.specials else "" for w in lm_vocab.tokens])
    unk = lm_vocab.unk_id
    ids, found = [], 0
    for word in vocab.tokens:
        row = None if word in vocab.specials else find(word)
        found += row is not None
        ids.append(unk if row is None else row)
    weights = {name: value for name, value in lm.state_dict().items()
               if name.split(".")[0] in ("embedding", "rnn", "rnn_backward")}
    weights["ids"] = torch.tensor(ids, dtype=torch.long)
    try:
        features.load_state_dict(weights)
    except RuntimeError as err:
        raise RnnkitError(f"{where}: the LM's weights do not fit its own config: {err}") from None
    total = sum(1 for w in vocab.tokens if w not in vocab.specials)
    sides = "forward and backward LM" if features.rnn_backward is not None else \
        "forward LM only (train the LM with --bidirectional for both sides)"
    return (f"{option}: {found} of {total} words found in the vocabulary of {source}; "
            f"{features.output_size} frozen features per word ({sides})")


def initialise(model: nn.Module, vocab, *, cell: str, vectors: str | None = None,
               lm_path: str | None = None, features_path: str | None = None,
               load_lm: Callable[[str], Any] | None = None,
               report: Callable[[str], None] = print) -> None:
    """``--init-embeddings VECTORS`` or ``--init-from LM_PATH`` (not both) into a classifier
    or tagger (``model.embedding``, ``model.rnn``) whose word vocabulary is ``vocab``, and
    ``--lm-features FEATURES_PATH`` into its ``lm_features``; ``load_lm(path)`` opens an LM
    checkpoint (what the ``lm`` application's ``load`` returns: ``.model``, ``.tokenizer``);
    the log lines go to ``report``."""
    if vectors and lm_path:
        raise RnnkitError("--init-embeddings and --init-from: give one of them (the LM brings "
                          "its own embedding)")
    if lm_path and features_path:
        raise RnnkitError("--init-from and --lm-features: give one of them (the LM's features "
                          "widen the first recurrent layer's input, so the LM's layer no longer "
                          "fits it)")
    if vectors:
        report(init_embeddings(model.embedding, vocab.tokens, vectors, specials=vocab.specials))
    if lm_path:
        loaded = _open_lm(lm_path, load_lm, "--init-from")
        report(init_from_lm(model, loaded.model, loaded.tokenizer, vocab, source=lm_path,
                            cell=cell))
    if features_path:
        loaded = _open_lm(features_path, load_lm, "--lm-features")
        report(init_lm_features(model, loaded.model, loaded.tokenizer, vocab,
                                source=features_path))


def _task_cell(lm_cell: str) -> str:
    return next((k for k, v in LM_CELLS.items() if v == lm_cell), lm_cell)


def _copy_layers(rnn: nn.Module, sources: list[tuple[str, nn.Module]],
                 layers: int) -> tuple[int, str]:
    """Copy layer k of each ``(suffix, lm_stack)`` of ``sources`` into ``rnn``'s parameters
    ``NAME_l{k}{suffix}``, for k = 0, 1, … while the names and shapes match; (layers copied,
    why the next one was not)."""
    mine = dict(rnn.named_parameters())
    for k in range(layers):
        pairs = []
        for suffix, stack in sources:
            theirs = {n: p for n, p in stack.named_parameters() if n.endswith(f"_l{k}")}
            have = {n for n in mine if n.endswith(f"_l{k}{suffix}")}
            if {n + suffix for n in theirs} != have:
                return k, (f"layer {k} and up (its parameters differ from the LM's: "
                           f"{sorted(have)} here, {sorted(theirs)} in the LM; the same "
                           "--layer-norm as the LM?)")
            for n, p in theirs.items():
                if mine[n + suffix].shape != p.shape:
                    return k, (f"layer {k} and up ({n + suffix}: {tuple(mine[n + suffix].shape)}"
                               f" here, {tuple(p.shape)} in the LM)")
                pairs.append((mine[n + suffix], p))
        with torch.no_grad():
            for target, source in pairs:
                target.copy_(source.detach())
    if layers < rnn.num_layers:
        return layers, f"layer {layers} and up (the LM has {layers})"
    return layers, ""


# ---------------------------------------------------------------------- training schedule


def layer_groups(model: nn.Module) -> list[list[tuple[str, nn.Parameter]]]:
    """The parameters by depth: ``[inputs, rnn layer 0, …, rnn layer L-1, head]``.

    Inputs: the word embedding and anything under ``embedding``, ``chars`` (a character RNN);
    recurrent layer k: ``rnn.*_l{k}`` and ``rnn.*_l{k}_reverse``; the head: every other
    parameter (attention, output layer). A tied parameter appears once; a frozen LM's
    (``lm_features``) is in none."""
    inputs, head = [], []
    layers: dict[int, list] = {}
    for name, param in model.named_parameters():
        match = _LAYER.match(name)
        if name.startswith("lm_features."):
            continue  # a frozen LM (--lm-features): never trained
        if name.split(".")[0] in ("embedding", "chars"):
            inputs.append((name, param))
        elif match:
            layers.setdefault(int(match.group(1)), []).append((name, param))
        else:
            head.append((name, param))
    return [inputs, *(layers[k] for k in sorted(layers)), head]


class LayerSchedule:
    """Discriminative learning rates and gradual unfreezing over :func:`layer_groups`.

    ``lr_decay`` d ≥ 1: group g of G gets the rate scale ``d ** -(G - 1 - g)`` (the head 1).
    ``gradual``: in epoch e only groups g ≥ G - 1 - e are trained (``requires_grad``); the
    others keep their values exactly (no gradient, so AdamW leaves them, weight decay too)."""

    def __init__(self, lr_decay: float = 1.0, gradual: bool = False) -> None:
        if not lr_decay >= 1.0:
            raise ValueError(f"--layer-lr-decay: expected a factor >= 1, got {lr_decay}")
        self.lr_decay, self.gradual = float(lr_decay), bool(gradual)

    def param_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        """Optimizer groups: ``params``, ``lr_scale`` and ``names`` (for tests and logs)."""
        groups = [g for g in layer_groups(model) if g]
        top = len(groups) - 1
        return [{"params": [p for _, p in group], "names": [n for n, _ in group],
                 "lr_scale": self.lr_decay ** -(top - g)} for g, group in enumerate(groups)]

    def trainable(self, groups: int, epoch: int) -> list[bool]:
        """Which of ``groups`` groups are trained in ``epoch`` (0-based)."""
        if not self.gradual:
            return [True] * groups
        return [g >= groups - 1 - epoch for g in range(groups)]

    def begin_epoch(self, model: nn.Module, epoch: int) -> None:
        groups = [g for g in layer_groups(model) if g]
        for group, on in zip(groups, self.trainable(len(groups), epoch), strict=True):
            for _, param in group:
                param.requires_grad_(on)


class _Scheduled:
    """A task with :class:`LayerSchedule`'s ``param_groups`` and ``begin_epoch`` added."""

    def __init__(self, task: Any, schedule: LayerSchedule) -> None:
        self._task, self.schedule = task, schedule

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._task, attribute)

    def param_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        return self.schedule.param_groups(model)

    def begin_epoch(self, model: nn.Module, epoch: int) -> None:
        self.schedule.begin_epoch(model, epoch)


def with_schedule(task: Any, lr_decay: float = 1.0, gradual: bool = False) -> Any:
    """``task`` trained with discriminative rates / gradual unfreezing; ``task`` itself when
    neither is asked for (the Trainer's default optimizer then)."""
    if lr_decay == 1.0 and not gradual:
        return task
    return _Scheduled(task, LayerSchedule(lr_decay, gradual))
