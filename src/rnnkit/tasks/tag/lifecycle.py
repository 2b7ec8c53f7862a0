"""A trained tagger's vocabularies back from its checkpoint directory."""

from __future__ import annotations

from rnnkit.data.vocab import Vocabulary
from rnnkit.data.words import CharVocab
from rnnkit.tasks.tag.encoding import TagVocabs

__all__ = ["read_vocabs"]


def read_vocabs(checkpoint, data: dict) -> TagVocabs:
    """The vocabularies saved in ``checkpoint`` (an :class:`~rnnkit.apps.base.Checkpoint`:
    ``read_json``, ``has``, ``directory``); ``data`` is the saved data options."""
    source = str(checkpoint.directory)
    words = Vocabulary.from_json(checkpoint.read_json("words.json"), source=source)
    tags = Vocabulary.from_json(checkpoint.read_json("tags.json"), source=source)
    chars = (CharVocab(Vocabulary.from_json(checkpoint.read_json("chars.json"), source=source),
                       data.get("max_word_length", 30)) if checkpoint.has("chars.json") else None)
    return TagVocabs(words, chars, tags, data.get("lowercase", True))
