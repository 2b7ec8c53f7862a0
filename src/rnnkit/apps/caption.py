"""``rnnkit caption``: describe images in words (Show, Attend and Tell).

Data: a directory of images (``--images``), a captions file (``--captions``, Flickr8k's
``IMAGE#N<TAB>caption`` lines) and split files naming the training, validation and test images
(``--train``, ``--valid``, ``--test``; one file name a line). Images are
decoded once into memory (``--image-size`` square, ``uint8``); training crops a random
``--crop`` window and flips it left–right, evaluation takes the central window. The model
(:mod:`rnnkit.models.captioner`): a small ResNet encoder, trained jointly, gives a grid of region
features; an LSTM decoder attends over them word by word (gating scalar, doubly stochastic
regulariser ``--attention-penalty``), teacher-forced in training. ``--blind`` trains the same
decoder without the image: the blind language-model baseline. ``eval`` decodes with beam search
(``--beam-size``, ``--length-penalty``) and scores corpus BLEU-1…4 with sacrebleu against every
reference of each image; with ``--baselines`` nearest-neighbour caption retrieval on the
encoder's features (and a ``--blind-checkpoint``) are scored in the same table. ``predict``
captions any images Pillow reads; ``report`` (and ``rnnkit inspect``) draws one attention heat
map per generated word.
"""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as nnf

from rnnkit.apps import Application, Checkpoint, PrepareContext, Verb, register
from rnnkit.data.images import (
    ImageSet,
    augment,
    center_crop,
    load_images,
    normalise,
    read_captions,
    read_image,
)
from rnnkit.data.vocab import Vocabulary
from rnnkit.errors import RnnkitError
from rnnkit.models.captioner import (
    STEMS,
    CaptionEnsemble,
    Captioner,
    CaptionerConfig,
    attention_penalty,
    load_encoder_weights,
)
from rnnkit.models.decoding import beam_search, greedy
from rnnkit.train import StepOutput
from rnnkit.train.config import option, section

__all__ = ["Caption", "CaptionConfig", "CaptionModelOptions", "CaptionEvalOptions",
           "CaptionPredictOptions", "Loaded", "caption_pixels", "bleu_scores",
           "nearest_captions", "image_paths"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")


@dataclass
class CaptionModelOptions:
    encoder_channels: str = option("32,64,128,256", "channels of the encoder's stages, "
                                   "comma-separated (the first is also the stem's)")
    encoder_blocks: str = option("1,1,1,1", "basic blocks in each stage")
    encoder_stem: str = option("small", "small: 3x3 stride-2 conv; imagenet: torchvision's "
                               "7x7 conv + max-pool", STEMS)
    encoder_weights: str = option("", "a state_dict file (torch.save or safetensors, e.g. "
                                  "torchvision ResNet weights) loaded into the encoder before "
                                  "training")
    embedding_size: int = option(256, "word embedding size")
    hidden_size: int = option(512, "LSTM hidden units")
    attention_size: int = option(256, "attention layer size")
    dropout: float = option(0.5, "dropout before the output layer", bounds="[0, 1)")
    blind: bool = option(False, "no image: the blind language-model baseline")


@dataclass
class CaptionConfig:
    images: str = option("", "directory of the images")
    captions: str = option("", "captions file: IMAGE#N<TAB>caption per line")
    train: str = option("", "split file of the training images, one file name a line "
                        "(default: every captioned image)", aliases=("split_train",))
    valid: str = option("", "split file of the validation images (default: 5% of the "
                        "training images)", aliases=("split_valid",))
    test: str = option("", "split file of the test images (for eval --split test)",
                       aliases=("split_test",))
    image_size: int = option(128, "images are resized to this square side when read")
    crop: int = option(112, "side of the random (training) or central (evaluation) crop")
    flip: bool = option(True, "random left-right flips in training")
    min_freq: int = option(5, "rarer words become <unk>")
    max_length: int = option(30, "training captions are cut to this many words; decoding "
                             "stops after it")
    batch_size: int = option(32, "images per batch (each with its captions)")
    captions_per_image: int = option(5, "captions of each image in its batch (0: all)")
    attention_penalty: float = option(1.0, "weight of the doubly stochastic attention "
                                      "regulariser", bounds="[0, inf)")
    eval_images: int = option(500, "greedy BLEU-4 on this many validation images at each "
                              "evaluation (0: validation loss only)")
    beam_size: int = option(3, "default beam size of eval and predict (1: greedy)")
    length_penalty: float = option(0.6, "default length penalty alpha: score / ((5 + n) / "
                                   "6)^alpha", bounds="[0, inf)")
    skip_bad: bool = option(False, "report and skip unreadable training images instead of "
                            "stopping")
    model: CaptionModelOptions = section(CaptionModelOptions, "model")

    def __post_init__(self) -> None:
        for name in ("image_size", "crop", "min_freq", "max_length", "batch_size", "beam_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')}: expected an integer >= 1, got "
                                 f"{getattr(self, name)}")
        for name in ("captions_per_image", "eval_images"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name.replace('_', '-')}: expected an integer >= 0, got "
                                 f"{getattr(self, name)}")
        if self.crop > self.image_size:
            raise ValueError(f"--crop {self.crop}: larger than --image-size {self.image_size}")
        _ints(self.model.encoder_channels, "--encoder-channels")
        _ints(self.model.encoder_blocks, "--encoder-blocks")


@dataclass
class CaptionEvalOptions:
    split: str = option("test", "which split file of the run to score", ("valid", "test",
                                                                         "train"))
    split_file: str = option("", "score the images of this split file instead")
    images: str = option("", "image directory (default: the run's)")
    captions: str = option("", "captions file with the references (default: the run's)")
    beam_size: int = option(0, "beam size; 1 = greedy (default: the run's)")
    length_penalty: float = option(-1.0, "length penalty alpha (default: the run's)")
    baselines: bool = option(False, "also score nearest-neighbour caption retrieval on the "
                             "encoder's features (training images as the pool)")
    blind_checkpoint: str = option("", "also score this blind (--blind) model in the table")
    limit: int = option(0, "score only the first N images (0: all)")
    threads: int = option(0, "CPU threads for torch (0: torch's default)")


@dataclass
class CaptionPredictOptions:
    files: tuple[str, ...] = option((), "image files, or directories of them", positional=True)
    images: str = option("", "more image files or directories, comma-separated")
    beam_size: int = option(0, "beam size; 1 = greedy (default: the run's)")
    length_penalty: float = option(-1.0, "length penalty alpha (default: the run's)")


@dataclass
class CaptionReportOptions:
    image: str = option("", "the image to caption and show")
    beam_size: int = option(0, "beam size; 1 = greedy (default: the run's)")
    length_penalty: float = option(-1.0, "length penalty alpha (default: the run's)")


def _ints(text: str, flag: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{flag} {text!r}: expected integers like 32,64,128,256") from None
    if not values or min(values) < 1:
        raise ValueError(f"{flag} {text!r}: expected integers >= 1")
    return values


def model_config(config: CaptionConfig, vocab_size: int) -> CaptionerConfig:
    m = config.model
    return CaptionerConfig(vocab_size=vocab_size,
                           channels=_ints(m.encoder_channels, "--encoder-channels"),
                           blocks=_ints(m.encoder_blocks, "--encoder-blocks"),
                           stem=m.encoder_stem, embedding_size=m.embedding_size,
                           hidden_size=m.hidden_size, attention_size=m.attention_size,
                           dropout=m.dropout, image=not m.blind)


# ---------------------------------------------------------------------- data


@dataclass
class Prepared:
    vocab: Vocabulary
    train: ImageSet
    valid: ImageSet


def _check_inputs(config: CaptionConfig) -> None:
    if not config.images:
        raise RnnkitError("--images: required (the directory of the images)")
    if not config.captions:
        raise RnnkitError("--captions: required (IMAGE#N<TAB>caption lines)")


def _hold_out(images: ImageSet) -> tuple[ImageSet, ImageSet]:
    """5 % of the images (at least 1, fixed seed) for validation."""
    if len(images) < 2:
        raise RnnkitError("--split-valid: required when training has fewer than 2 images")
    order = list(range(len(images)))
    random.Random(0).shuffle(order)
    held = sorted(order[:max(1, len(images) // 20)])
    kept = sorted(order[max(1, len(images) // 20):])
    return _subset(images, kept), _subset(images, held)


def _subset(images: ImageSet, rows: list[int]) -> ImageSet:
    return ImageSet([images.names[k] for k in rows], images.pixels[rows],
                    [images.captions[k] for k in rows])


def encode_captions(vocab: Vocabulary, images: ImageSet, max_length: int) -> list[list[list[int]]]:
    """Per image, per caption: word ids (at most ``max_length``), no ``<bos>``/``<eos>``."""
    return [[vocab.encode(words[:max_length]) for words in captions]
            for captions in images.captions]


# ---------------------------------------------------------------------- training


class CaptionTask:
    """Images with their captions in, cross-entropy + attention regulariser out; validated by
    the loss and greedy BLEU-4 on the validation images."""

    unit = "img"

    def __init__(self, config: CaptionConfig, data: Prepared, seed: int) -> None:
        self.config, self.data, self.seed = config, data, seed
        self.train_ids = encode_captions(data.vocab, data.train, config.max_length)
        self.valid_ids = encode_captions(data.vocab, data.valid, config.max_length)
        bleu = config.eval_images > 0 and not config.model.blind
        self.monitor, self.monitor_mode = ("valid_bleu4", "max") if bleu else ("valid_loss",
                                                                               "min")

    def train_batches(self, epoch: int, shard):
        order = list(range(shard.rank, len(self.data.train), shard.world_size))
        random.Random(self.seed * 1_000_003 + epoch).shuffle(order)
        size = self.config.batch_size
        return [(order[k:k + size], self.seed * 1_000_003 + epoch * 10_007 + k)
                for k in range(0, len(order), size)]

    def _batch(self, images: ImageSet, ids, rows: list[int], generator: torch.Generator | None,
               device) -> tuple:
        pixels = images.pixels[rows]
        if generator is None:
            pixels = center_crop(pixels, self.config.crop)
        else:
            pixels = augment(pixels, self.config.crop, generator, self.config.flip)
        per_image = self.config.captions_per_image
        pairs = []
        for slot, row in enumerate(rows):
            captions = ids[row]
            if per_image and len(captions) > per_image:
                if generator is None:
                    captions = captions[:per_image]
                else:
                    pick = torch.randperm(len(captions), generator=generator)[:per_image]
                    captions = [captions[k] for k in sorted(pick.tolist())]
            pairs += [(slot, c) for c in captions]
        return (normalise(pixels).to(device), *caption_tensors(pairs, self.data.vocab, device))

    def _loss(self, model, batch, penalty: bool = True):
        """Cross-entropy per word (+ the attention regulariser with ``penalty``)."""
        images, owner, tokens_in, targets, lengths = batch
        logits, attention = model(images, owner, tokens_in, lengths)
        loss = nnf.cross_entropy(logits.flatten(0, 1), targets.flatten(),
                                 ignore_index=self.data.vocab.pad_id)
        if penalty and attention is not None and self.config.attention_penalty > 0:
            loss = loss + self.config.attention_penalty * attention_penalty(attention)
        return loss

    def step(self, model, batch) -> StepOutput:
        rows, aug_seed = batch
        device = next(model.parameters()).device
        generator = torch.Generator().manual_seed(aug_seed)
        tensors = self._batch(self.data.train, self.train_ids, rows, generator, device)
        return StepOutput(self._loss(model, tensors), len(rows))

    def evaluate(self, model) -> dict[str, float]:
        device = next(model.parameters()).device
        valid = self.data.valid
        total, count = 0.0, 0
        for k in range(0, len(valid), 64):
            rows = list(range(k, min(k + 64, len(valid))))
            batch = self._batch(valid, self.valid_ids, rows, None, device)
            total += float(self._loss(model, batch, penalty=False)) * len(rows)
            count += len(rows)
        metrics = {"valid_loss": total / max(count, 1)}
        if self.monitor == "valid_bleu4":
            part = _subset(valid, list(range(min(self.config.eval_images, len(valid)))))
            hypotheses = caption_pixels(model, self.data.vocab, part.pixels, self.config,
                                        beam_size=1)[0]
            scores = bleu_scores(hypotheses, part.captions)
            metrics.update(valid_bleu4=scores["bleu4"], valid_bleu1=scores["bleu1"])
        return metrics

    def checkpoint_files(self) -> dict:
        return {"config.json": {"model": model_config(self.config, len(self.data.vocab))
                                .to_dict()},
                "vocab.json": self.data.vocab.to_json()}


def caption_tensors(pairs: list[tuple[int, list[int]]], vocab: Vocabulary, device):
    """(owner, tokens_in, targets, lengths) of ``(image slot, word ids)`` pairs, sorted by
    length, longest first: ``tokens_in`` = ``<bos> w…``, ``targets`` = ``w… <eos>``."""
    pairs = sorted(pairs, key=lambda p: -len(p[1]))
    steps = len(pairs[0][1]) + 1
    tokens_in = torch.full((len(pairs), steps), vocab.pad_id, dtype=torch.long)
    targets = torch.full((len(pairs), steps), vocab.pad_id, dtype=torch.long)
    for n, (_, words) in enumerate(pairs):
        tokens_in[n, : len(words) + 1] = torch.tensor([vocab.bos_id, *words])
        targets[n, : len(words) + 1] = torch.tensor([*words, vocab.eos_id])
    owner = torch.tensor([slot for slot, _ in pairs])
    lengths = torch.tensor([len(words) + 1 for _, words in pairs])
    return owner.to(device), tokens_in.to(device), targets.to(device), lengths


# ---------------------------------------------------------------------- decoding and scores


@torch.no_grad()
def caption_pixels(model: Captioner, vocab: Vocabulary, pixels: torch.Tensor,
                   config: CaptionConfig, beam_size: int, alpha: float | None = None,
                   attention: bool = False, batch: int = 64
                   ) -> tuple[list[list[str]], list[Any]]:
    """Captions (word lists) of ``uint8`` images ``(N, 3, S, S)`` (central crop), by greedy
    decoding (``beam_size`` 1) or beam search; with ``attention``, also per image the weights
    ``(words, S)`` of each word (and the ``<eos>`` step, if reached)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    alpha = config.length_penalty if alpha is None else alpha
    words, weights = [], []
    try:
        for k in range(0, len(pixels), batch):
            images = normalise(center_crop(pixels[k:k + batch], config.crop)).to(device)
            regions = model.features(images)
            lengths = torch.full((len(images),), regions.shape[1], dtype=torch.long)
            limits = {"max_len_a": 0.0, "max_len_b": config.max_length + 1, "alpha": alpha,
                      "return_attention": attention}
            if beam_size <= 1:
                found = greedy(model, regions, lengths, **limits)
            else:
                found = beam_search(model, regions, lengths, beam_size=beam_size, **limits)
            words += [vocab.decode(ids, skip_specials=True) for ids in found.tokens]
            weights += found.attention if found.attention is not None else [None] * len(images)
    finally:
        model.train(was_training)
    return words, weights


def bleu_scores(hypotheses: list[list[str]], references: list[list[list[str]]]) -> dict:
    """Corpus BLEU-1…4 (sacrebleu, 0–100) of word lists against all references of each image:
    ``tokenize="none"`` (the words are already lower-cased and split), default ``exp``
    smoothing, brevity penalty from the closest reference length."""
    try:
        from sacrebleu.metrics import BLEU
    except ImportError:
        raise RnnkitError("BLEU needs sacrebleu: pip install 'rnnkit[apps]' (or pip install "
                          "sacrebleu)") from None
    hyps = [" ".join(h) for h in hypotheses]
    most = max(len(r) for r in references)
    streams = [[" ".join(r[k]) if k < len(r) else None for r in references]
               for k in range(most)]
    return {f"bleu{n}": BLEU(max_ngram_order=n, tokenize="none").corpus_score(hyps,
                                                                              streams).score
            for n in range(1, 5)}


@torch.no_grad()
def pooled_features(model: Captioner, pixels: torch.Tensor, crop: int,
                    batch: int = 128) -> torch.Tensor:
    """The encoder's region features averaged over the grid, L2-normalised: ``(N, C)``."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for k in range(0, len(pixels), batch):
        images = normalise(center_crop(pixels[k:k + batch], crop)).to(device)
        out.append(nnf.normalize(model.features(images).mean(1), dim=-1).cpu())
    return torch.cat(out)


def consensus(captions: list[list[str]]) -> list[str]:
    """The caption most like the others of its image (sentence BLEU against them)."""
    if len(captions) == 1:
        return captions[0]
    from sacrebleu.metrics import BLEU

    scorer = BLEU(tokenize="none", effective_order=True)
    texts = [" ".join(c) for c in captions]
    scores = [scorer.sentence_score(t, texts[:k] + texts[k + 1:]).score
              for k, t in enumerate(texts)]
    return captions[max(range(len(texts)), key=lambda k: (scores[k], -k))]


def nearest_captions(model: Captioner, pool: ImageSet, pixels: torch.Tensor,
                     crop: int) -> list[list[str]]:
    """Nearest-neighbour retrieval: for each image, the consensus caption of the pool image
    whose pooled encoder features are closest (cosine)."""
    keys = pooled_features(model, pool.pixels, crop)
    queries = pooled_features(model, pixels, crop)
    nearest = (queries @ keys.T).argmax(1).tolist()
    chosen: dict[int, list[str]] = {}
    return [chosen.setdefault(k, consensus(pool.captions[k])) for k in nearest]


# ---------------------------------------------------------------------- the application


@dataclass
class Loaded:
    """A trained captioner, or an ensemble of several (``--checkpoint`` repeated); ``config``
    is the (first) run's."""

    model: Captioner | CaptionEnsemble
    vocab: Vocabulary
    config: CaptionConfig
    device: torch.device

    @property
    def first(self) -> Captioner:
        """The model, or the ensemble's first member."""
        return self.model.members[0] if isinstance(self.model, CaptionEnsemble) else self.model


def image_paths(text: str, flag: str = "--images", files: tuple[str, ...] = ()) -> list[Path]:
    """Image files named by the bare arguments ``files`` and by ``text`` (files or directories,
    comma-separated)."""
    paths: list[Path] = []
    for part in [*files, *(p.strip() for p in text.split(","))]:
        if not part:
            continue
        path = Path(part)
        if path.is_dir():
            paths += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            paths.append(path)
    if not paths:
        raise RnnkitError(f"no image given: name image files or directories (or {flag} "
                          "a.jpg,b.png)")
    return paths


def _decoding(loaded: Loaded, options) -> tuple[int, float]:
    beam = options.beam_size or loaded.config.beam_size
    alpha = loaded.config.length_penalty if options.length_penalty < 0 else options.length_penalty
    if beam < 1:
        raise RnnkitError(f"--beam-size: expected an integer >= 1, got {beam}")
    return beam, alpha


def read_files(loaded: Loaded, paths: list[Path]) -> torch.Tensor:
    """``uint8`` ``(N, 3, S, S)`` of image files (any size and format Pillow reads)."""
    import numpy as np

    size = loaded.config.image_size
    return torch.from_numpy(np.stack([read_image(p, size) for p in paths])).permute(0, 3, 1, 2)


@register("caption")
class Caption(Application):
    summary = "describe images in words (CNN encoder, attentive LSTM decoder)"
    description = __doc__.split("\n\n", 1)[1]
    examples = """\
rnnkit caption train --images flickr8k/images --captions flickr8k/Flickr8k.token.txt \\
    --train flickr8k/Flickr_8k.trainImages.txt --valid flickr8k/Flickr_8k.devImages.txt \\
    --test flickr8k/Flickr_8k.testImages.txt --max-minutes 30 --out runs/caption
rnnkit caption eval --checkpoint runs/caption --split test --baselines --json
rnnkit caption predict --checkpoint runs/caption --images photo.jpg,drawing.png
rnnkit caption report --checkpoint runs/caption --image photo.jpg --output photo.html
"""
    Config = CaptionConfig
    EvalOptions = CaptionEvalOptions
    PredictOptions = CaptionPredictOptions
    # rnnkit serve: an uploaded image goes to a temporary file (Pillow reads it by content)
    serve_uploads = {"predict": {"images": ".img"}, "report": {"image": ".img"}}

    def prepare(self, config: CaptionConfig, context: PrepareContext) -> Prepared:
        _check_inputs(config)
        captions = read_captions(config.captions)
        train = load_images(config.images, config.captions, config.train or None,
                            config.image_size, skip_bad=config.skip_bad, captions=captions)
        if config.valid:
            valid = load_images(config.images, config.captions, config.valid,
                                config.image_size, skip_bad=config.skip_bad, captions=captions)
        else:
            train, valid = _hold_out(train)
        if context.resume is not None:
            vocab = Vocabulary.from_json(context.resume.read_json("vocab.json"))
        else:
            vocab = Vocabulary.build((w[:config.max_length] for c in train.captions for w in c),
                                     min_freq=config.min_freq)
        return Prepared(vocab, train, valid)

    def build_model(self, config: CaptionConfig, data: Prepared) -> Captioner:
        model = Captioner(model_config(config, len(data.vocab)))
        if config.model.encoder_weights:
            if config.model.blind:
                raise RnnkitError("--encoder-weights: a --blind model has no encoder")
            count = load_encoder_weights(model.encoder, config.model.encoder_weights)
            print(f"rnnkit caption: loaded {count} encoder tensors from "
                  f"{config.model.encoder_weights}", file=sys.stderr)
        return model

    def task(self, config: CaptionConfig, data: Prepared, seed: int) -> CaptionTask:
        return CaptionTask(config, data, seed)

    def load(self, checkpoint: Checkpoint) -> Loaded:
        saved = checkpoint.saved["model"]
        model = Captioner(CaptionerConfig(**saved))
        vocab = Vocabulary.from_json(checkpoint.read_json("vocab.json"),
                                     source=str(checkpoint.directory / "vocab.json"))
        return Loaded(checkpoint.load_weights(model), vocab, checkpoint.options,
                      checkpoint.device)

    def load_ensemble(self, checkpoints: list[Checkpoint]) -> Loaded:
        """Captioners of the same vocabulary and crop (e.g. trained with other seeds): beam
        search on the mean of their word distributions; ``--baselines`` retrieves with the
        first member's encoder."""
        first, *others = self.load_members(checkpoints, {
            "its vocabulary (vocab.json)": lambda m: m.vocab.to_json(),
            "its --crop or --blind": lambda m: (m.config.crop, m.config.model.blind)})
        members = [first.model, *(m.model.to(first.device) for m in others)]
        return Loaded(CaptionEnsemble(members), first.vocab, first.config, first.device)

    def evaluate(self, loaded: Loaded, options: CaptionEvalOptions) -> dict:
        if options.threads:
            torch.set_num_threads(options.threads)
        beam, alpha = _decoding(loaded, options)
        config = loaded.config
        images = options.images or config.images
        captions_path = options.captions or config.captions
        split = options.split_file or {"train": config.train, "valid": config.valid,
                                       "test": config.test}[options.split]
        if not split:
            raise RnnkitError(f"--split {options.split}: the run has no --{options.split} split "
                              "file; give --split-file")
        captions = read_captions(captions_path)
        part = load_images(images, captions_path, split, config.image_size, captions=captions)
        if options.limit:
            part = _subset(part, list(range(min(options.limit, len(part)))))
        hypotheses = caption_pixels(loaded.model, loaded.vocab, part.pixels, config, beam,
                                    alpha)[0]
        metrics: dict[str, Any] = {**bleu_scores(hypotheses, part.captions),
                                   "images": len(part), "beam_size": beam,
                                   "length_penalty": alpha, "split": split,
                                   "model": "blind" if config.model.blind else "attention"}
        table = {"model": {k: metrics[k] for k in ("bleu1", "bleu2", "bleu3", "bleu4")}}
        if options.baselines:
            if config.model.blind:
                raise RnnkitError("--baselines: a --blind model has no encoder to retrieve "
                                  "with")
            pool = load_images(images, captions_path, config.train or None,
                               config.image_size, captions=captions, skip_bad=True, quiet=True)
            found = nearest_captions(loaded.first, pool, part.pixels, config.crop)
            table["nearest"] = bleu_scores(found, part.captions)
        if options.blind_checkpoint:
            from rnnkit.apps.runner import open_checkpoint

            blind = self.load(open_checkpoint(self, options.blind_checkpoint, "cpu"))
            if blind.config.model.blind is False:
                raise RnnkitError(f"--blind-checkpoint {options.blind_checkpoint}: not a "
                                  "--blind model")
            found = caption_pixels(blind.model, blind.vocab, part.pixels[:1], config, beam,
                                   alpha)[0] * len(part)  # one caption fits every image
            table["blind"] = bleu_scores(found, part.captions)
        if len(table) > 1:
            metrics["table"] = table
        metrics["examples"] = [{"image": n, "caption": " ".join(h)}
                               for n, h in zip(part.names[:5], hypotheses[:5], strict=False)]
        return metrics

    def saved_values(self, saved: dict) -> dict:
        """Options of runs saved before the split files were named ``train``/``valid``/``test``
        (as the shared option names ask) rather than ``split_train``/…."""
        values = dict(saved.get("options", {}))
        for part in ("train", "valid", "test"):
            if f"split_{part}" in values:
                values.setdefault(part, values.pop(f"split_{part}"))
        return values

    def format_metrics(self, metrics: dict) -> str:
        table = metrics.get("table", {"model": metrics})
        lines = [f"{metrics['images']} images of {metrics['split']}, beam {metrics['beam_size']}"
                 f", length penalty {metrics['length_penalty']:g} (corpus BLEU, sacrebleu, "
                 "all references)", f"{'':<10}{'BLEU-1':>8}{'BLEU-2':>8}{'BLEU-3':>8}"
                 f"{'BLEU-4':>8}"]
        for name, row in table.items():
            lines.append(f"{name:<10}" + "".join(f"{row[f'bleu{n}']:8.2f}" for n in range(1, 5)))
        lines += [f"  {e['image']}: {e['caption']}" for e in metrics.get("examples", [])]
        return "\n".join(lines)

    def export_graphs(self, loaded: Loaded):
        """The image encoder (normalised central crops → regions, keys, first state) and one
        decoder step (previous word, state, regions, keys → logits, new state, attention);
        greedy or beam search drives the step from outside."""
        from rnnkit.apps.base import ExportGraph
        from rnnkit.models.exportable import CaptionEncoderGraph, CaptionStep, outputs_of
        from rnnkit.models.seq2seq import Memory

        model = loaded.model.cpu().eval()
        if not model.config.image:
            raise RnnkitError("a blind captioner (trained without images) has no image graph "
                              "to export")
        crop = loaded.config.crop
        images = torch.randn(2, 3, crop, crop, generator=torch.Generator().manual_seed(0))

        def encoder_reference(images):
            regions = model.features(images)
            memory, (h, c) = model.encode(regions)
            return regions, memory.keys, h, c

        regions, keys, h, c = encoder_reference(images)
        token = torch.full((2,), loaded.vocab.bos_id, dtype=torch.long)

        def step_reference(token, h, c, regions, keys):
            mask = torch.ones(regions.shape[:2], dtype=torch.bool)
            logits, (h, c), weights = model.step(token, (h, c), Memory(regions, keys, mask))
            return outputs_of((logits, h, c, weights))

        batch = {0: "batch"}
        state_axes = {1: "batch"}
        return [
            ExportGraph("encoder", CaptionEncoderGraph(model).eval(), (images,), ["images"],
                        ["regions", "keys", "h", "c"],
                        {"images": batch, "regions": batch, "keys": batch, "h": state_axes,
                         "c": state_axes}, encoder_reference,
                        f"images: float (B, 3, {crop}, {crop}), the central crop of each image "
                        f"resized to {loaded.config.image_size}, scaled to [0, 1] and "
                        "normalised with ImageNet's mean and std (rnnkit.data.images.normalise)"),
            ExportGraph("decoder_step", CaptionStep(model).eval(), (token, h, c, regions, keys),
                        ["token", "h", "c", "regions", "keys"],
                        ["logits", "h_next", "c_next", "attention"],
                        {"token": batch, "h": state_axes, "c": state_axes, "regions": batch,
                         "keys": batch, "logits": batch, "h_next": state_axes,
                         "c_next": state_axes, "attention": batch}, step_reference,
                        "token: the previous word's id in vocab.json (<bos> first); feed h_next, "
                        "c_next back; stop at <eos>"),
        ]

    def predict(self, loaded: Loaded, options: CaptionPredictOptions):
        beam, alpha = _decoding(loaded, options)
        for path in image_paths(options.images, files=options.files):
            pixels = read_files(loaded, [path])
            words = caption_pixels(loaded.model, loaded.vocab, pixels, loaded.config, beam,
                                   alpha)[0][0]
            yield f"{path}\t{' '.join(words)}\n"

    def verbs(self) -> list[Verb]:
        return [Verb("report", "an HTML page for one image: its caption and one attention "
                     "heat map per generated word", CaptionReportOptions, _report,
                     examples="rnnkit caption report --checkpoint runs/caption --image x.jpg "
                              "--output x.html")]

    def inspect(self, loaded: Loaded, config):
        """``rnnkit inspect --text IMAGE``: the page of the ``report`` verb for that image."""
        from rnnkit.apps.caption_report import fill_report
        from rnnkit.diagnostics.report import Report

        _one_model(loaded)
        paths = image_paths(config.text.strip(), "--text")
        if len(paths) != 1:
            raise RnnkitError(f"--text: the caption report shows one image, got {len(paths)}")
        report = Report(title=f"rnnkit caption: {paths[0].name}", symbols=[], units=[])
        fill_report(loaded, paths[0], report, loaded.config.beam_size,
                    loaded.config.length_penalty)
        return report


def _report(loaded: Loaded, options: CaptionReportOptions):
    from rnnkit.apps.caption_report import caption_report

    _one_model(loaded)
    beam, alpha = _decoding(loaded, options)
    paths = image_paths(options.image, "--image")
    if len(paths) != 1:
        raise RnnkitError(f"--image: the report shows one image, got {len(paths)}")
    yield caption_report(loaded, paths[0], beam, alpha)


def _one_model(loaded: Loaded) -> None:
    if isinstance(loaded.model, CaptionEnsemble):
        raise RnnkitError("--checkpoint: the report shows one model's attention; give one "
                          "--checkpoint")
