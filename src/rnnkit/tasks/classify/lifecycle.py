"""A trained classifier back from its checkpoint directory, alone or as an ensemble."""

from __future__ import annotations

from rnnkit.data.vocab import Vocabulary
from rnnkit.data.words import CharVocab
from rnnkit.errors import RnnkitError
from rnnkit.models._config import renamed
from rnnkit.models.classifier import Classifier, ClassifierConfig
from rnnkit.tasks.classify.encoding import DATA_KEYS
from rnnkit.train import checkpoint as ckpt

__all__ = ["load", "load_ensemble"]


def load(checkpoint: str) -> tuple[Classifier, Vocabulary, Vocabulary, dict]:
    """Model, token and label vocabularies, and the data options of a checkpoint; under
    ``data["chars"]`` the :class:`CharVocab` of a classifier with a char RNN, else None."""
    directory = ckpt.resolve_checkpoint(checkpoint)
    config = ckpt.read_config(directory, "classify")
    vocab = Vocabulary.from_json(ckpt.read_json(directory / "vocab.json"), source=str(directory))
    labels = Vocabulary.from_json(ckpt.read_json(directory / "labels.json"),
                                  source=str(directory))
    sizes = {"vocab_size": ("vocab.json", len(vocab)), "num_classes": ("labels.json", len(labels))}
    model = Classifier(ckpt.saved_model(ClassifierConfig, directory, config, sizes, renamed))
    ckpt.load_weights(directory, model)
    model.eval()
    saved = config.get("data", {})
    data = {key: saved.get(key) for key in DATA_KEYS}
    data["lowercase"] = bool(data["lowercase"])
    data["chars"] = None
    if model.chars is not None:
        if not (directory / "chars.json").exists():
            raise RnnkitError(f"checkpoint {directory}: the model reads characters but "
                              "chars.json is missing")
        data["chars"] = CharVocab(
            Vocabulary.from_json(ckpt.read_json(directory / "chars.json"), source=str(directory)),
            int(saved.get("max_word_length") or 30))
    return model, vocab, labels, data


def load_ensemble(checkpoints: list[str]) -> tuple[
        list[tuple[Classifier, Vocabulary, CharVocab | None]], Vocabulary, dict]:
    """Members ``(model, vocab, chars)`` (each its own vocabularies; ``chars`` None without a
    char RNN), the shared label vocabulary and the first checkpoint's data options; the
    checkpoints must have the same labels, in the same order."""
    members, labels, data = [], None, None
    for checkpoint in checkpoints:
        model, vocab, its_labels, its_data = load(checkpoint)
        if labels is None:
            labels, data = its_labels, its_data
        elif its_labels.tokens != labels.tokens:
            raise RnnkitError(f"--checkpoint {checkpoint}: its labels "
                              f"({', '.join(its_labels.tokens)}) differ from those of "
                              f"{checkpoints[0]} ({', '.join(labels.tokens)}); an ensemble "
                              "needs the same labels")
        members.append((model, vocab, its_data["chars"]))
    if labels is None:
        raise RnnkitError("--checkpoint: at least one checkpoint is required")
    return members, labels, data
