r"""Image captioning: a small ResNet encoder and an LSTM decoder with soft attention (Show,
Attend and Tell; Xu et al. 2015).

**Encoder.** A ResNet in torchvision's layout and parameter names (``conv1``, ``bn1``,
``layer1.0.conv1``, …, basic blocks): a stem, then ``len(channels)`` stages of ``blocks[i]``
basic blocks, the first stage at stride 1 and each later one at stride 2. ``stem="small"`` is a
3×3 stride-2 convolution (for 96–128 px images); ``stem="imagenet"`` is torchvision's 7×7
stride-2 convolution and 3×3 max-pool, so ``channels=(64, 128, 256, 512)``, ``blocks=(2, 2, 2,
2)`` is exactly ResNet-18 without its classifier and loads its ``state_dict``
(:func:`load_encoder_weights`). Its last feature map, ``G × G`` cells of ``C`` channels, is the
grid of region features ``a_1 … a_S`` (``S = G²``).

**Decoder** (one step, from the previous state ``h_{t-1}``, as in the paper):

.. math::
    e_{t,i} = v^\top \tanh(W_q h_{t-1} + W_k a_i + b_k),\quad
    \alpha_{t,i} = \mathrm{softmax}_i(e_{t,i}),\quad
    \beta_t = \sigma(w_\beta^\top h_{t-1} + b_\beta),\quad
    z_t = \beta_t \sum_i \alpha_{t,i} a_i

    (h_t, c_t) = \mathrm{LSTM}([E y_{t-1}; z_t], (h_{t-1}, c_{t-1})),\quad
    \mathrm{logits}_t = L_o\,\mathrm{dropout}(E y_{t-1} + L_h h_t + L_z z_t)

with ``h_0 = \tanh(W_h \bar a)``, ``c_0 = \tanh(W_c \bar a)`` from the mean region ``\bar a``.
The additive attention is the translation decoder's (:meth:`rnnkit.models.seq2seq.Seq2Seq.attend`,
the same parameters ``query``, ``key``, ``score``), the LSTM cell is :class:`rnnkit.nn.LSTMCell`.
Training adds the doubly stochastic regulariser ``λ mean_i (1 − Σ_t α_{t,i})²`` (every region
attended about equally over the caption; :func:`attention_penalty`).

``image=False`` is the **blind** baseline: the same decoder without the image (no encoder, no
attention, a learned first state): a language model of captions.

Decoding (greedy, beam search with length penalty) is :mod:`rnnkit.models.decoding`'s, on the
region features: :meth:`Captioner.encode` and :meth:`Captioner.decode` are the interface it
drives (``src`` = the grid ``(B, S, C)``, ``lengths`` = ``S`` for every image).

:class:`CaptionEnsemble` decodes with several captioners at once (trained with other seeds): at
each step the mean of the members' word distributions (fairseq's ensemble), through the same
:meth:`~Captioner.encode` / :meth:`~Captioner.decode` interface.

Axes: B images, N captions, T steps, S regions, C feature channels, A attention size,
E embedding, H hidden units, V vocabulary.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from rnnkit.errors import RnnkitError
from rnnkit.models.seq2seq import Memory, Seq2Seq
from rnnkit.nn import LSTMCell

__all__ = ["CaptionerConfig", "Captioner", "CaptionEnsemble", "ImageEncoder",
           "attention_penalty", "load_encoder_weights", "STEMS"]

STEMS = ("small", "imagenet")


@dataclass
class CaptionerConfig:
    """Sizes and options of a :class:`Captioner`."""

    vocab_size: int
    channels: list[int] = field(default_factory=lambda: [32, 64, 128, 256])
    blocks: list[int] = field(default_factory=lambda: [1, 1, 1, 1])
    stem: str = "small"
    embedding_size: int = 256
    hidden_size: int = 512
    attention_size: int = 256
    dropout: float = 0.5
    image: bool = True
    pad_id: int = 0
    bos_id: int = 2
    eos_id: int = 3

    def __post_init__(self) -> None:
        for name in ("vocab_size", "embedding_size", "hidden_size", "attention_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected an integer >= 1, got {getattr(self, name)}")
        if not self.channels or len(self.channels) != len(self.blocks):
            raise ValueError(f"channels {self.channels} and blocks {self.blocks}: expected "
                             "lists of the same non-zero length (one entry per stage)")
        if min(self.channels) < 1 or min(self.blocks) < 1:
            raise ValueError("channels and blocks: expected integers >= 1")
        if self.stem not in STEMS:
            raise ValueError(f"stem: expected one of {', '.join(STEMS)}, got {self.stem!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout: expected a value in [0, 1), got {self.dropout}")

    @property
    def attention(self) -> str:
        """What :mod:`rnnkit.models.decoding` and ``Seq2Seq.attend`` read."""
        return "additive" if self.image else "none"

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------- encoder


class BasicBlock(nn.Module):
    """torchvision's ResNet basic block: two 3×3 convolutions and a shortcut."""

    def __init__(self, inputs: int, outputs: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inputs, outputs, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(outputs)
        self.conv2 = nn.Conv2d(outputs, outputs, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(outputs)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or inputs != outputs:
            self.downsample = nn.Sequential(nn.Conv2d(inputs, outputs, 1, stride, bias=False),
                                            nn.BatchNorm2d(outputs))

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(y)) + shortcut)


class ImageEncoder(nn.Module):
    """Images ``(B, 3, K, K)`` → region features ``(B, S, C)`` (see the module docstring)."""

    def __init__(self, channels: list[int], blocks: list[int], stem: str = "small") -> None:
        super().__init__()
        width = channels[0]
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
        else:
            self.conv1 = nn.Conv2d(3, width, 3, 2, 1, bias=False)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.stages = len(channels)
        for k, (out, count) in enumerate(zip(channels, blocks, strict=True)):
            stride = 1 if k == 0 else 2
            layer = [BasicBlock(width, out, stride)] + [BasicBlock(out, out, 1)
                                                        for _ in range(count - 1)]
            setattr(self, f"layer{k + 1}", nn.Sequential(*layer))
            width = out
        self.out_channels = width
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def grid(self, images: Tensor) -> Tensor:
        """The last feature map ``(B, C, G, G)``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(images))))
        for k in range(self.stages):
            x = getattr(self, f"layer{k + 1}")(x)
        return x

    def forward(self, images: Tensor) -> Tensor:
        return self.grid(images).flatten(2).transpose(1, 2)  # (B, S, C)


def load_encoder_weights(encoder: ImageEncoder, path: str | Path) -> int:
    """Load a ``state_dict`` file (``torch.save`` of a dict of tensors, e.g. torchvision's
    ResNet-18 weights, or safetensors) into ``encoder``; keys it does not have (``fc.*``, later
    stages) are ignored. Every parameter and buffer of the encoder must be in the file with the
    same shape, else an ``RnnkitError`` names the file and key. Returns how many tensors were
    loaded."""
    path = Path(path)
    if not path.is_file():
        raise RnnkitError(f"--encoder-weights {path}: file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            tensors = load_file(str(path))
        else:
            tensors = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the user's input problem
        raise RnnkitError(f"--encoder-weights {path}: not a state_dict file ({err})") from None
    if isinstance(tensors, dict) and isinstance(tensors.get("state_dict"), dict):
        tensors = tensors["state_dict"]
    if not isinstance(tensors, dict) or not all(isinstance(v, Tensor) for v in tensors.values()):
        raise RnnkitError(f"--encoder-weights {path}: expected a dict of tensors (a state_dict)")
    tensors = {k.removeprefix("module."): v for k, v in tensors.items()}
    own = encoder.state_dict()
    missing = [k for k in own if k not in tensors]
    if missing:
        raise RnnkitError(f"--encoder-weights {path}: no tensor {missing[0]!r} "
                          f"({len(missing)} of the encoder's {len(own)} missing; see "
                          "--encoder-channels, --encoder-blocks, --encoder-stem)")
    for key, value in own.items():
        if tensors[key].shape != value.shape:
            raise RnnkitError(f"--encoder-weights {path}: {key} has shape "
                              f"{tuple(tensors[key].shape)}, the encoder's is {tuple(value.shape)}")
    encoder.load_state_dict({k: tensors[k] for k in own})
    return len(own)


# ---------------------------------------------------------------------- the captioner


State = tuple[Tensor, Tensor]  # (h, c), each (1, B, H): decoding selects along dim 1


class Captioner(nn.Module):
    """CNN encoder → region grid → attentive LSTM decoder → word logits."""

    def __init__(self, config: CaptionerConfig) -> None:
        super().__init__()
        self.config = cfg = config
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.embedding_size, padding_idx=cfg.pad_id)
        if cfg.image:
            self.encoder = ImageEncoder(cfg.channels, cfg.blocks, cfg.stem)
            regions = self.encoder.out_channels
            self.key = nn.Linear(regions, cfg.attention_size)
            self.query = nn.Linear(cfg.hidden_size, cfg.attention_size, bias=False)
            self.score = nn.Linear(cfg.attention_size, 1, bias=False)
            self.gate = nn.Linear(cfg.hidden_size, 1)
            self.init_h = nn.Linear(regions, cfg.hidden_size)
            self.init_c = nn.Linear(regions, cfg.hidden_size)
            self.out_z = nn.Linear(regions, cfg.embedding_size, bias=False)
        else:
            regions = 0
            self.h0 = nn.Parameter(torch.zeros(cfg.hidden_size))
            self.c0 = nn.Parameter(torch.zeros(cfg.hidden_size))
        self.cell = LSTMCell(cfg.embedding_size + regions, cfg.hidden_size)
        self.out_h = nn.Linear(cfg.hidden_size, cfg.embedding_size)
        self.dropout = nn.Dropout(cfg.dropout)
        self.output = nn.Linear(cfg.embedding_size, cfg.vocab_size)

    # ------------------------------------------------------------------ encoder

    def features(self, images: Tensor) -> Tensor:
        """Normalised images ``(B, 3, K, K)`` → region features ``(B, S, C)`` (blind: a
        ``(B, 1, 1)`` placeholder)."""
        if not self.config.image:
            return images.new_zeros(images.shape[0], 1, 1)
        return self.encoder(images)

    def encode(self, src: Tensor, lengths: Tensor | None = None) -> tuple[Memory, State]:
        """Region features ``(B, S, C)`` → the attention memory and the first state. (The
        ``lengths`` of :mod:`rnnkit.models.decoding`'s interface: all ``S``, unused.)"""
        batch = src.shape[0]
        mask = torch.ones(batch, src.shape[1], dtype=torch.bool, device=src.device)
        if not self.config.image:
            size = self.config.hidden_size
            state = (self.h0.expand(1, batch, size).contiguous(),
                     self.c0.expand(1, batch, size).contiguous())
            return Memory(src, None, mask), state
        mean = src.mean(1)  # (B, C)
        state = (torch.tanh(self.init_h(mean))[None], torch.tanh(self.init_c(mean))[None])
        return Memory(src, self.key(src), mask), state

    # ------------------------------------------------------------------ decoder

    def step(self, token: Tensor, state: State, memory: Memory
             ) -> tuple[Tensor, State, Tensor | None]:
        """One word: ``token`` ``(B,)`` = y_{t-1} → logits ``(B, V)``, the new state, the
        attention ``(B, S)`` (None when blind)."""
        h, c = state[0][0], state[1][0]  # (B, H)
        embedded = self.embedding(token)  # (B, E)
        if self.config.image:
            context, weights = Seq2Seq.attend(self, h[:, None], memory)  # (B, 1, C), (B, 1, S)
            context, weights = context[:, 0], weights[:, 0]
            context = torch.sigmoid(self.gate(h)) * context  # the gating scalar β_t
            h, c = self.cell(torch.cat([embedded, context], -1), (h, c))
            deep = embedded + self.out_h(h) + self.out_z(context)
        else:
            weights = None
            h, c = self.cell(embedded, (h, c))
            deep = embedded + self.out_h(h)
        return self.output(self.dropout(deep)), (h[None], c[None]), weights

    def decode(self, tokens: Tensor, state: State, memory: Memory
               ) -> tuple[Tensor, State, Tensor | None]:
        """Teacher-forced over ``tokens`` ``(B, T)`` → logits ``(B, T, V)``, the last state,
        attention ``(B, T, S)``; one step of decoding with ``T = 1``."""
        logits, weights = [], []
        for t in range(tokens.shape[1]):
            step_logits, state, step_weights = self.step(tokens[:, t], state, memory)
            logits.append(step_logits)
            weights.append(step_weights)
        attention = torch.stack(weights, 1) if self.config.image else None
        return torch.stack(logits, 1), state, attention

    def forward(self, images: Tensor, owner: Tensor, tokens: Tensor, lengths: Tensor
                ) -> tuple[Tensor, Tensor | None]:
        """Teacher forcing. ``images`` ``(B, 3, K, K)``, each encoded once; caption ``n`` of
        ``tokens`` ``(N, T)`` (``<bos> y_1 … y_{T-1}``) describes image ``owner[n]``; its
        ``lengths[n]`` steps count, ``lengths`` sorted in descending order (the batch shrinks
        as captions end). → logits ``(N, T, V)`` and attention ``(N, T, S)`` (zero after a
        caption's end; None when blind)."""
        regions = self.features(images).index_select(0, owner)  # (N, S, C)
        memory, state = self.encode(regions)
        count, steps = tokens.shape
        logits = regions.new_zeros(count, steps, self.config.vocab_size)
        attention = regions.new_zeros(count, steps, regions.shape[1]) if self.config.image \
            else None
        active = [int((lengths > t).sum()) for t in range(steps)]
        for t, n in enumerate(active):
            if n == 0:
                break
            if n < state[0].shape[1]:
                state = (state[0][:, :n], state[1][:, :n])
                memory = Memory(memory.outputs[:n], memory.keys[:n] if memory.keys is not None
                                else None, memory.mask[:n])
            step_logits, state, weights = self.step(tokens[:n, t], state, memory)
            logits[:n, t] = step_logits
            if attention is not None:
                attention[:n, t] = weights
        return logits, attention


class _PerMember(list):
    """The members' states or memories, side by side; beam search reorders each alike."""

    def index_select(self, dim: int, index: Tensor) -> _PerMember:  # states: (h, c) pairs
        return _PerMember(tuple(part.index_select(dim, index) for part in state)
                          for state in self)

    def select(self, index: Tensor) -> _PerMember:  # memories
        return _PerMember(memory.select(index) for memory in self)


class CaptionEnsemble(nn.Module):
    """Captioners of the same vocabulary and grid used as one: their region features side by
    side (``(B, S, ΣC)``), each member decoding from its own, and per step the log of the mean
    of their word probabilities (log-probabilities, a valid ``logits`` for decoding) and the
    mean of their attention."""

    def __init__(self, members: list[Captioner]) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"an ensemble needs 2 or more captioners, got {len(members)}")
        self.members = nn.ModuleList(members)
        self.config = members[0].config
        if len({m.config.image for m in members}) > 1:
            raise RnnkitError("an ensemble cannot mix --blind captioners and image captioners")
        self.widths = [m.encoder.out_channels if m.config.image else 1 for m in members]

    def features(self, images: Tensor) -> Tensor:
        grids = [m.features(images) for m in self.members]
        if len({g.shape[1] for g in grids}) > 1:
            raise RnnkitError("the ensemble's encoders give grids of different sizes ("
                              + ", ".join(str(g.shape[1]) for g in grids) + " regions): its "
                              "members need the same --crop and encoder strides")
        return torch.cat(grids, -1)

    def encode(self, src: Tensor, lengths: Tensor | None = None
               ) -> tuple[_PerMember, _PerMember]:
        parts = src.split(self.widths, -1)
        encoded = [m.encode(part) for m, part in zip(self.members, parts, strict=True)]
        return _PerMember(e[0] for e in encoded), _PerMember(e[1] for e in encoded)

    def decode(self, tokens: Tensor, state: _PerMember, memory: _PerMember
               ) -> tuple[Tensor, _PerMember, Tensor | None]:
        outputs = [m.decode(tokens, s, mem)
                   for m, s, mem in zip(self.members, state, memory, strict=True)]
        log_probs = torch.stack([torch.log_softmax(o[0].float(), -1) for o in outputs])
        mean = torch.logsumexp(log_probs, 0) - math.log(len(outputs))
        attention = None
        if self.config.image:
            attention = torch.stack([o[2] for o in outputs]).mean(0)
        return mean, _PerMember(o[1] for o in outputs), attention


def attention_penalty(attention: Tensor) -> Tensor:
    """The doubly stochastic regulariser ``mean_{n,i} (1 − Σ_t α_{n,t,i})²`` of attention
    ``(N, T, S)`` (zero after each caption's end). The paper sums over the regions ``i``; the
    mean (as in the common PyTorch re-implementations) keeps the weight ``λ`` independent of
    the grid size."""
    return (1.0 - attention.sum(1)).pow(2).mean()
