"""Data: tokenizers and vocabularies, readers for each file format, batching.

Knows nothing of models or training. Modules: :mod:`~rnnkit.data.vocab` (``Vocabulary``),
:mod:`~rnnkit.data.tokenizers`, :mod:`~rnnkit.data.corpus`, :mod:`~rnnkit.data.streams`, and one
reader per task format.
"""

from rnnkit.data.vocab import Vocabulary

__all__ = ["Vocabulary"]
