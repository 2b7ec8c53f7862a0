"""The models' fixed inference graphs, built of exportable ``torch`` modules (``rnnkit export``).

Each wrapper takes a trained rnnkit model and re-expresses its inference with the same weights:
rnnkit recurrent layers become ``torch.nn`` layers (:func:`~rnnkit.nn.exportable.to_torch`) or,
over padded batches, :class:`~rnnkit.nn.exportable.PaddedRNN` (no ``lengths=`` inside the graph).
Everything else (embeddings, linear layers, attention) is the model's own module, shared. The
graphs take and return plain tensors only, so ``torch.jit.trace`` and ``torch.onnx.export`` see
one fixed graph with dynamic batch and length axes.

Axes: B batch, T steps (tokens or words), C characters per word, S source steps, L layers,
D directions, H hidden units, E embedding, V vocabulary, K classes or tags.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from rnnkit.models.lm_features import lm_states
from rnnkit.models.seq2seq import Memory
from rnnkit.nn.exportable import PaddedRNN, to_torch

__all__ = ["LMStep", "ClassifierGraph", "TaggerGraph", "EncoderGraph", "DecoderStep",
           "CharGraph", "MethodGraph", "CaptionEncoderGraph", "CaptionStep", "RecommenderGraph",
           "RollStep", "RollHead", "with_layers", "padded_example", "outputs_of"]


def padded_example(vocab_size: int, pad_id: int, lengths: list[int], char_vocab_size: int = 0,
                   char_pad: int = 0, width: int = 4, seed: int = 0) -> tuple[Tensor, ...]:
    """Example inputs of a padded batch: ids ``(B, T)`` (never ``pad_id`` at real steps,
    ``pad_id`` past them), lengths ``(B,)``; with ``char_vocab_size`` also chars
    ``(B, T, width)`` and char_lengths ``(B, T)`` (0 at padding), as the data code pads them."""
    generator = torch.Generator().manual_seed(seed)
    steps = max(lengths)

    def ids(shape, size, pad):
        drawn = torch.randint(0, size - 1, shape, generator=generator)
        return drawn + (drawn >= pad).long()  # every id but pad

    tokens = ids((len(lengths), steps), vocab_size, pad_id)
    real = torch.arange(steps).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)  # (B, T)
    tokens = tokens.masked_fill(~real, pad_id)
    result = (tokens, torch.tensor(lengths, dtype=torch.long))
    if char_vocab_size:
        char_lengths = torch.randint(1, width + 1, (len(lengths), steps),
                                     generator=generator) * real  # (B, T)
        chars = ids((len(lengths), steps, width), char_vocab_size, char_pad)
        keep = torch.arange(width).view(1, 1, -1) < char_lengths.unsqueeze(-1)
        result += (chars.masked_fill(~keep, char_pad), char_lengths)
    return result


def outputs_of(value) -> tuple[Tensor, ...]:
    """A model's return value as a flat tuple of tensors (states unpacked)."""
    if isinstance(value, Tensor):
        return (value,)
    flat: list[Tensor] = []
    for item in value:
        flat += list(outputs_of(item)) if item is not None else []
    return tuple(flat)


class LMStep(nn.Module):
    """A language model's step: ``tokens`` ``(T, B)`` (T = 1 for one step; more to read a
    prompt), ``h`` ``(L, B, H)`` [``c`` for an LSTM] → ``logits`` ``(T, B, V)``, new ``h``
    [``c``]. Start from zeros; feed the state back."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.embedding, self.bridge, self.decoder = model.embedding, model.bridge, model.decoder
        self.rnn = to_torch(model.rnn)
        self.lstm = model.config.cell == "lstm"

    def forward(self, tokens: Tensor, h: Tensor, c: Tensor | None = None):
        state = (h, c) if self.lstm else h
        output, state = self.rnn(self.embedding(tokens), state)  # (T, B, H)
        if self.bridge is not None:
            output = self.bridge(output)
        logits = self.decoder(output)  # (T, B, V)
        return (logits, *state) if self.lstm else (logits, state)


class CharGraph(nn.Module):
    """The character RNN over every word slot: chars ``(B, T, C)``, char_lengths ``(B, T)``
    (0 at padding) → ``(B, T, 2·H_c)``, zeros at padding."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.embedding = encoder.embedding
        self.rnn = PaddedRNN(encoder.rnn, cell_state=False)

    def forward(self, chars: Tensor, char_lengths: Tensor) -> Tensor:
        batch, steps, width = chars.shape
        flat = self.embedding(chars.reshape(batch * steps, width))  # (B·T, C, E_c)
        _, final = self.rnn(flat, char_lengths.reshape(batch * steps))
        hidden = final[0] if isinstance(final, tuple) else final  # (2, B·T, H_c)
        return torch.cat([hidden[0], hidden[1]], dim=-1).reshape(batch, steps, -1)


class LMFeaturesGraph(nn.Module):
    """A frozen LM's features (:class:`~rnnkit.models.lm_features.LMFeatures`): tokens
    ``(B, T)``, lengths ``(B,)`` → ``(B, T, F)``, its stacks as ``torch.nn`` layers."""

    def __init__(self, features: nn.Module) -> None:
        super().__init__()
        self.features = features
        self.rnn = to_torch(features.rnn)
        back = features.rnn_backward
        self.rnn_backward = to_torch(back) if back is not None else None

    def forward(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        return lm_states(self.features, self.rnn, self.rnn_backward, tokens, lengths)


class _WordCharGraph(nn.Module):
    """What the classifier's and the tagger's graphs read alike: ``[E w_t ; c_t]`` (and a
    frozen LM's features) through the recurrent stack
    (:class:`~rnnkit.models._chars.WordCharRNN`)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.chars = CharGraph(model.chars) if model.chars is not None else None
        self.lm_features = (LMFeaturesGraph(model.lm_features)
                            if model.lm_features is not None else None)
        self.rnn = PaddedRNN(model.rnn, cell_state=False)

    def states(self, tokens: Tensor, lengths: Tensor, chars: Tensor | None,
               char_lengths: Tensor | None):
        """The stack's outputs ``(B, T, D·H)`` and final state over ``[E w_t ; c_t]``."""
        inputs = self.model.embedding(tokens)  # (B, T, E)
        if self.chars is not None:
            inputs = torch.cat([inputs, self.chars(chars, char_lengths)], dim=-1)
        if self.lm_features is not None:
            inputs = torch.cat([inputs, self.lm_features(tokens, lengths)], dim=-1)
        return self.rnn(inputs, lengths)


class ClassifierGraph(_WordCharGraph):
    """tokens ``(B, T)``, lengths ``(B,)`` [chars ``(B, T, C)``, char_lengths ``(B, T)``] →
    class probabilities ``(B, K)``."""

    def forward(self, tokens: Tensor, lengths: Tensor, chars: Tensor | None = None,
                char_lengths: Tensor | None = None) -> Tensor:
        model = self.model
        outputs, final = self.states(tokens, lengths, chars, char_lengths)  # (B, T, D·H)
        pooling = model.config.pooling
        if pooling == "last":
            h_n = final[0] if isinstance(final, tuple) else final  # (L·D, B, H)
            pooled = torch.cat(list(h_n[-model.directions :]), dim=-1)
        else:
            mask = torch.arange(outputs.shape[1]).unsqueeze(0) < lengths.unsqueeze(1)  # (B, T)
            if pooling == "mean":
                pooled = outputs.sum(1) / lengths.to(outputs.dtype).unsqueeze(1)
            elif pooling == "max":
                pooled = outputs.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(1)
            else:
                scores = model.attention(outputs).squeeze(-1).masked_fill(~mask, float("-inf"))
                pooled = (torch.softmax(scores, dim=1).unsqueeze(-1) * outputs).sum(1)
        return torch.softmax(model.output(pooled), dim=-1)


class TaggerGraph(_WordCharGraph):
    """words ``(B, T)``, lengths ``(B,)`` [chars ``(B, T, C)``, char_lengths ``(B, T)``] → tag
    scores ``(B, T, K)`` (rows past a sentence's end: the output bias alone; mask them)."""

    def forward(self, words: Tensor, lengths: Tensor, chars: Tensor | None = None,
                char_lengths: Tensor | None = None) -> Tensor:
        hidden, _ = self.states(words, lengths, chars, char_lengths)  # (B, T, 2H)
        return self.model.output(hidden)


class EncoderGraph(nn.Module):
    """The encoder of an encoder–decoder: src ``(B, S)``, src_lengths ``(B,)`` → memory
    ``(B, S, D·H)``, [keys ``(B, S, H)`` with attention], the decoder's first ``h``
    ``(L, B, H)`` [and ``c``]."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.rnn = PaddedRNN(model.encoder)

    def forward(self, src: Tensor, src_lengths: Tensor):
        model = self.model
        outputs, final = self.rnn(model.src_embedding(src), src_lengths)
        result = [outputs]
        if model.config.attention != "none":
            result.append(model.key(outputs))
        if isinstance(final, tuple):
            result += [torch.tanh(model.bridge(model._join(final[0]))),
                       model.bridge_cell(model._join(final[1]))]
        else:
            result.append(torch.tanh(model.bridge(model._join(final))))
        return tuple(result)


class DecoderStep(nn.Module):
    """One decoder step: token ``(B,)``, ``h`` [``c``], [memory, keys, src_lengths with
    attention] → logits ``(B, V)``, new ``h`` [``c``], [attention weights ``(B, S)``]."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.rnn = to_torch(model.decoder)
        self.lstm = model.config.cell == "lstm"
        self.attention = model.config.attention != "none"

    def forward(self, token: Tensor, *rest: Tensor):
        model = self.model
        count = 2 if self.lstm else 1
        state = tuple(rest[:count]) if self.lstm else rest[0]
        hidden, state = self.rnn(model.tgt_embedding(token.unsqueeze(1)), state)  # (B, 1, H)
        outputs = list(state) if self.lstm else [state]
        if not self.attention:
            return (model.project(hidden, None)[0][:, 0], *outputs)
        memory, keys, src_lengths = rest[count:]
        mask = torch.arange(memory.shape[1]).unsqueeze(0) < src_lengths.unsqueeze(1)
        logits, weights = model.project(hidden, Memory(memory, keys, mask))
        return (logits[:, 0], *outputs, weights[:, 0])


def with_layers(model: nn.Module, **layers: nn.Module) -> nn.Module:
    """A shallow twin of ``model`` whose named child modules are replaced by ``layers`` (its
    own methods then run on them); parameters and the other children are shared, ``model``
    itself is left as it is."""
    for name in layers:
        if name not in model._modules:
            raise ValueError(f"{type(model).__name__} has no child module {name!r}")
    twin = copy.copy(model)
    twin._modules = {**model._modules, **layers}
    return twin


class MethodGraph(nn.Module):
    """``model.method(*inputs)`` as a graph: the model's own code, run with its recurrent
    layers swapped for exportable ones (:func:`with_layers`), outputs flattened to a tuple."""

    def __init__(self, model: nn.Module, method: str = "forward", **layers: nn.Module) -> None:
        super().__init__()
        self.model = with_layers(model, **layers)
        self.method = method

    def forward(self, *inputs: Tensor):
        return outputs_of(getattr(self.model, self.method)(*inputs))


class RollStep(nn.Module):
    """A piano-roll model's recurrent step: ``previous`` ``(B, T, P)`` (the step before each
    one: zeros at the start, then each sampled step; T = 1 per step, more to read a primer),
    ``h`` ``(L, B, H)`` [``c``] → ``hidden`` ``(B, T, H)`` (the state the head reads) and the
    new ``h`` [``c``]."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.rnn = to_torch(model.rnn)
        self.lstm = model.rnn.mode == "LSTM"

    def forward(self, previous: Tensor, h: Tensor, c: Tensor | None = None):
        hidden, state = self.rnn(previous, (h, c) if self.lstm else h)
        return (hidden, *state) if self.lstm else (hidden, state)


class RollHead(nn.Module):
    """A piano-roll model's output layer: ``hidden`` ``(B, T, H)`` [and, for an RNN-NADE,
    ``chosen`` ``(B, T, P)``, the pitches chosen so far] → ``logits`` ``(B, T, P)``: Bernoulli
    logits of each pitch; RNN-NADE: logit of p(x_k = 1 | x_<k) (only pitches below k of
    ``chosen`` are read, so sampling walks k upwards and calls the head once per pitch)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.head = model.head
        self.nade = hasattr(model.head, "weight_in")

    def forward(self, hidden: Tensor, chosen: Tensor | None = None) -> Tensor:
        if self.nade:
            return self.head.logits(hidden, chosen)
        return self.head.linear(hidden)


class RecommenderGraph(nn.Module):
    """items ``(B, T)`` (0 past each length), lengths ``(B,)`` → scores ``(B, N)`` of every item
    after each history, as the recommender's ``score_all`` (column 0, padding: -inf)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = with_layers(model, rnn=PaddedRNN(model.rnn, cell_state=False))

    def forward(self, items: Tensor, lengths: Tensor) -> Tensor:
        queries = self.model(items, lengths)  # (B, T, E)
        last = (lengths - 1).view(-1, 1, 1).expand(-1, 1, queries.shape[2])
        scores = queries.gather(1, last)[:, 0] @ self.model.item_weights().T  # (B, N)
        bias = self.model.item_bias()
        if bias is not None:
            scores = scores + bias
        return torch.cat([torch.full_like(scores[:, :1], float("-inf")), scores[:, 1:]], 1)


class CaptionEncoderGraph(nn.Module):
    """The image side of a captioner: normalised images ``(B, 3, K, K)`` → region features
    ``(B, S, C)``, their attention keys ``(B, S, A)`` and the decoder's first ``h``, ``c``
    ``(1, B, H)``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor):
        regions = self.model.features(images)
        memory, (h, c) = self.model.encode(regions)
        return regions, memory.keys, h, c


class CaptionStep(nn.Module):
    """One word of a captioner: previous token ``(B,)``, ``h``, ``c`` ``(1, B, H)``, regions
    and keys → logits ``(B, V)``, new ``h``, ``c``, attention over the regions ``(B, S)``; the
    rnnkit LSTM cell runs as ``torch.nn.LSTMCell`` with the same weights."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        cell = model.cell
        twin = nn.LSTMCell(cell.input_size, cell.hidden_size, bias=cell.bias)
        twin.load_state_dict(cell.state_dict())
        self.model = with_layers(model, cell=twin.eval())

    def forward(self, token: Tensor, h: Tensor, c: Tensor, regions: Tensor, keys: Tensor):
        mask = torch.ones_like(regions[..., 0], dtype=torch.bool)  # (B, S): every region
        logits, (h, c), weights = self.model.step(token, (h, c), Memory(regions, keys, mask))
        return logits, h, c, weights
