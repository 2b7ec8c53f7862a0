"""Sequence classification: the pieces of the ``classify`` application
(:mod:`rnnkit.apps.classify`): text → :class:`~rnnkit.models.classifier.Classifier` → label.

Tokens are looked up in a vocabulary of the training tokens seen ``min_freq`` times or more
(others are ``<unk>``); while training, tokens seen once are replaced by ``<unk>`` with
probability ``word_dropout``. With ``chars`` (off by default) a character RNN also reads each
token's first ``max_word_length`` characters (always the token's own, also when word dropout
made it ``<unk>``), from a character vocabulary of the training text. A checkpoint directory
holds ``model.safetensors``, ``config.json`` and ``vocab.json``, ``labels.json`` and, with
chars, ``chars.json``. Several checkpoints with the same labels make an ensemble
(:func:`load_ensemble`, :func:`ensemble_probs`: the mean of their class probabilities; each
member keeps its own vocabularies).

The package follows the task's seams: :mod:`.encoding` (reading, batches, the forward),
:mod:`.inference` (probabilities, ensembles, output), :mod:`.scoring`, :mod:`.task` (the Trainer's
adapter) and :mod:`.lifecycle` (loading checkpoints).
"""

from rnnkit.tasks.classify.encoding import DATA_KEYS, collate, logits_of, read
from rnnkit.tasks.classify.inference import ensemble_probs, format_predictions, predict_probs
from rnnkit.tasks.classify.lifecycle import load, load_ensemble
from rnnkit.tasks.classify.scoring import evaluate_examples, score, score_probs
from rnnkit.tasks.classify.task import ClassifyTask

__all__ = ["ClassifyTask", "load", "load_ensemble", "read", "collate", "logits_of",
           "predict_probs", "ensemble_probs", "score", "score_probs", "evaluate_examples",
           "format_predictions", "DATA_KEYS"]
