"""Sequence labelling (POS tagging, NER): the pieces of the ``tag`` application
(:mod:`rnnkit.apps.tag`): vocabularies, encoding, the Trainer's task, inference and scoring.

Words are looked up in a vocabulary of the training words seen ``min_freq`` times or more
(others are ``<unk>``, which is how the ``<unk>`` vector is learnt with the default
``min_freq = 2``). With ``min_freq = 1`` every word is in the vocabulary; then ``word_dropout``
replaces the words seen once by ``<unk>`` at that rate while training (with ``min_freq >= 2``
those words are ``<unk>`` already and ``word_dropout`` has no effect). The character RNN sees
every word's characters (case kept), so unknown words still get a representation.

A checkpoint directory holds ``model.safetensors``, ``config.json`` (the task and model configs)
and ``words.json``, ``chars.json``, ``tags.json`` (vocabularies).

The package follows the task's seams: :mod:`.encoding` (vocabularies, ids, batches),
:mod:`.inference` (scores, best tags, tagged output), :mod:`.scoring`, :mod:`.task` (the Trainer's
adapter) and :mod:`.lifecycle` (vocabularies back from a checkpoint).
"""

from rnnkit.tasks.tag.encoding import IGNORE, Encoded, TagVocabs, collate, encode, read_gold
from rnnkit.tasks.tag.inference import forward, predict_document, predict_tags
from rnnkit.tasks.tag.lifecycle import read_vocabs
from rnnkit.tasks.tag.scoring import evaluate_document, score
from rnnkit.tasks.tag.task import TagTask, loss_fn

__all__ = ["TagVocabs", "TagTask", "Encoded", "IGNORE", "read_gold", "evaluate_document",
           "predict_document", "encode", "collate", "forward", "loss_fn", "predict_tags", "score",
           "read_vocabs"]
