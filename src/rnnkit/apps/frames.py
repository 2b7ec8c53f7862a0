"""``rnnkit frames``: video frames read as sequences with convolutional LSTMs.

Two tasks (``--task``). **next-frame**: read ``--input-frames`` frames and predict the next
``--future-frames`` (the ConvLSTM paper's Moving-MNIST setting: per-pixel binary cross-entropy,
an encoder–forecaster of ConvLSTM layers; ``--architecture fc-lstm`` and ``cnn`` are the
baselines). **classify**: say which digits a clip shows and which way they move.

Clips are generated (synthetic motion of the real handwritten digits that ship with
scikit-learn, seeded by ``--data-seed``; see ``docs/frames.md``) or, for next-frame, read from
``--train`` / ``--valid`` folders holding one sub-folder of images per clip. ``eval`` scores
fresh test clips (digits the training never saw) or ``--data``, with ``--baselines``
(copy-last-frame; for classify the most frequent classes). ``predict`` writes the predicted
frames beside the truth as an animated GIF (``--gif``) and a PNG strip (``--png``).
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as nnf

from rnnkit._io import atomic_write_bytes
from rnnkit.apps import Application, Checkpoint, PrepareContext, register
from rnnkit.data.frames import DIRECTIONS, Clips, moving_digits, read_clip_folders
from rnnkit.errors import RnnkitError
from rnnkit.models.frames import (
    LEGACY_DEFAULTS,
    ClipClassifier,
    FramesModelConfig,
    build_forecaster,
)
from rnnkit.train import StepOutput
from rnnkit.train.config import option, section

__all__ = ["Frames", "FramesConfig", "FramesEvalOptions", "FramesPredictOptions",
           "copy_last_bce"]


@dataclass
class FramesConfig:
    """Data and model options of ``rnnkit frames train``."""

    task: str = option("next-frame", "next-frame (predict the following frames) or classify "
                       "(which digits, which direction)", ("next-frame", "classify"))
    train: str = option("", "folder of clips, one sub-folder of images per clip (next-frame); "
                        "empty: generated moving digits")
    valid: str = option("", "validation folder (default: generated clips, or the last tenth "
                        "of the --train clips)")
    clips: int = option(2000, "generated training clips", bounds="[1, inf)")
    valid_clips: int = option(200, "generated validation clips", bounds="[1, inf)")
    input_frames: int = option(10, "frames read before the forecast (generated clips have "
                               "input + future frames)", bounds="[1, inf)")
    future_frames: int = option(10, "frames predicted", bounds="[1, inf)")
    canvas: int = option(32, "generated frame size in pixels (square)", bounds="[4, inf)")
    digit_size: int = option(16, "size of a digit on it (scaled from 8x8)", bounds="[1, inf)")
    digits: int = option(1, "digits per generated clip", bounds="[1, 10]")
    speed: int = option(2, "pixels per frame along each moving axis", bounds="[0, inf)")
    data_seed: int = option(0, "seed of the generated clips (validation: +1, eval: +2)")
    batch_size: int = option(16, "clips per batch", bounds="[1, inf)")
    digit_weight: float = option(10.0, "classify: weight of the digit loss (binary "
                                 "cross-entropy, mean over the 10 classes; 10: their sum) "
                                 "beside the direction's cross-entropy", bounds="[0, inf)")
    model: FramesModelConfig = section(FramesModelConfig, "model")

    def __post_init__(self) -> None:
        if self.digit_size > self.canvas:
            raise ValueError(f"--digit-size: expected at most --canvas ({self.canvas}), got "
                             f"{self.digit_size}")
        patch = self.model.patch_size
        if self.task == "classify" and self.model.stem and patch & (patch - 1):
            raise ValueError(f"--patch-size: the classifier's --stem halves the frame with 2x2 "
                             f"pooling, so the patch size must be a power of 2, got {patch}")


@dataclass
class FramesEvalOptions:
    data: str = option("", "folder of clips to score (default: generated test clips)")
    clips: int = option(500, "generated test clips (digits not used in training)",
                        bounds="[1, inf)")
    baselines: bool = option(False, "also score copy-last-frame (next-frame) or the most "
                             "frequent classes (classify)")
    threads: int = option(0, "CPU threads for torch (0: torch's default)")


@dataclass
class FramesPredictOptions:
    data: str = option("", "folder of clips (default: generated test clips)")
    clips: int = option(4, "generated clips to predict", bounds="[1, inf)")
    clip: int = option(0, "which clip the --gif and --png show (0 = the first)",
                       bounds="[0, inf)")
    gif: str = option("", "write an animated GIF: truth left, input then prediction right")
    png: str = option("", "write a PNG strip: truth above, prediction below")
    scale: int = option(4, "pixels per frame pixel in the images", bounds="[1, 32]")


# ---------------------------------------------------------------------- data


def generated(config: FramesConfig, count: int, seed_offset: int, split: str) -> Clips:
    return moving_digits(count, config.input_frames + config.future_frames,
                         canvas=config.canvas, digit_size=config.digit_size,
                         digits=config.digits, speed=config.speed,
                         seed=config.data_seed + seed_offset, split=split)


def windows(clips: Clips, config: FramesConfig) -> np.ndarray:
    """Next-frame examples ``(N, input + future, Y, X)``: each clip cut into consecutive
    windows of input + future frames (a generated clip is exactly one)."""
    span = config.input_frames + config.future_frames
    out = []
    for frames, length, name in zip(clips.frames, clips.lengths, clips.names, strict=True):
        if length < span:
            raise RnnkitError(f"{name}: {length} frames, fewer than --input-frames "
                              f"{config.input_frames} + --future-frames "
                              f"{config.future_frames} = {span}")
        out += [frames[s : s + span] for s in range(0, int(length) - span + 1, span)]
    return np.stack(out)


def _folder(path: str, size=None) -> Clips:
    clips = read_clip_folders(path, size)
    root = path.rstrip("/")
    clips.names = [f"{root}/{n}" for n in clips.names]
    return clips


@dataclass
class Prepared:
    train: Clips
    valid: Clips
    size: tuple[int, int]


def prepare_clips(config: FramesConfig) -> Prepared:
    if config.task == "classify" and (config.train or config.valid):
        raise RnnkitError("--train/--valid: --task classify learns the labels of generated "
                          "clips (digits, direction); image folders serve --task next-frame")
    if not config.train:
        train = generated(config, config.clips, 0, "train")
        valid = (_folder(config.valid, train.size) if config.valid
                 else generated(config, config.valid_clips, 1, "train"))
        return Prepared(train, valid, train.size)
    clips = _folder(config.train)
    if config.valid:
        valid = _folder(config.valid, clips.size)
    elif len(clips) < 2:
        raise RnnkitError(f"--valid: required when --train {config.train} holds one clip "
                          "(otherwise the last tenth of its clips is held out)")
    else:
        keep = len(clips) - max(1, len(clips) // 10)
        valid = Clips(clips.frames[keep:], clips.lengths[keep:], names=clips.names[keep:])
        clips = Clips(clips.frames[:keep], clips.lengths[:keep], names=clips.names[:keep])
    return Prepared(clips, valid, clips.size)


# ---------------------------------------------------------------------- training


def _bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return nnf.binary_cross_entropy_with_logits(logits, target)


def _classify_loss(model, frames, lengths, digits, direction, digit_weight: float = 1.0):
    digit_logits, direction_logits = model(frames, lengths)
    return (digit_weight * _bce(digit_logits, digits)
            + nnf.cross_entropy(direction_logits, direction), digit_logits, direction_logits)


def _device(model) -> torch.device:
    return next(model.parameters()).device


class FramesTask:
    """Batches of clips; per-pixel BCE of the future frames (next-frame) or BCE of the digits
    plus cross-entropy of the direction (classify)."""

    unit = "clip"

    def __init__(self, config: FramesConfig, data: Prepared, seed: int) -> None:
        self.config, self.data, self.seed = config, data, seed
        self.next_frame = config.task == "next-frame"
        self.monitor, self.monitor_mode = ("valid_bce" if self.next_frame else "valid_loss",
                                           "min")
        if self.next_frame:
            self.train_x, self.valid_x = windows(data.train, config), windows(data.valid, config)

    def _count(self) -> int:
        return len(self.train_x) if self.next_frame else len(self.data.train)

    def _batch(self, clips_or_windows, index) -> tuple:
        if self.next_frame:
            return (torch.from_numpy(clips_or_windows[index]),)
        clips: Clips = clips_or_windows
        return (torch.from_numpy(clips.frames[index]), torch.from_numpy(clips.lengths[index]),
                torch.from_numpy(clips.digits[index]), torch.from_numpy(clips.direction[index]))

    def train_batches(self, epoch: int, shard):
        order = list(range(shard.rank, self._count(), shard.world_size))
        random.Random(self.seed + epoch).shuffle(order)
        source = self.train_x if self.next_frame else self.data.train
        size = self.config.batch_size
        return [self._batch(source, np.array(order[k : k + size]))
                for k in range(0, len(order), size)]

    def _loss(self, model, batch) -> torch.Tensor:
        device = _device(model)
        batch = tuple(t.to(device) for t in batch)
        if self.next_frame:
            (clip,) = batch
            split = self.config.input_frames
            return _bce(model(clip[:, :split], clip.shape[1] - split), clip[:, split:])
        return _classify_loss(model, *batch, self.config.digit_weight)[0]

    def step(self, model, batch) -> StepOutput:
        return StepOutput(self._loss(model, batch), len(batch[0]))

    def evaluate(self, model) -> dict[str, float]:
        if self.next_frame:
            return {"valid_bce": _next_frame_metrics(model, self.valid_x, self.config)["bce"]}
        metrics = _classify_metrics(model, self.data.valid, self.config.batch_size,
                                    self.config.digit_weight)
        return {"valid_loss": metrics["loss"], "valid_clip_accuracy": metrics["clip_accuracy"]}

    def checkpoint_files(self) -> dict:
        return {"config.json": {"size": list(self.data.size)}}


def _predict_frames(model, clip: torch.Tensor, config: FramesConfig) -> torch.Tensor:
    """Probabilities of the future frames ``(B, future, Y, X)`` for windows ``clip``."""
    split = config.input_frames
    return torch.sigmoid(model(clip[:, :split], clip.shape[1] - split))


@torch.no_grad()
def _next_frame_metrics(model, examples: np.ndarray, config: FramesConfig,
                        batch: int = 64) -> dict[str, float]:
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    device = _device(model)
    for k in range(0, len(examples), batch):
        clip = torch.from_numpy(examples[k : k + batch]).to(device)
        split = config.input_frames
        logits = model(clip[:, :split], clip.shape[1] - split)
        total += float(nnf.binary_cross_entropy_with_logits(logits, clip[:, split:],
                                                            reduction="sum"))
        count += logits.numel()
    model.train(was_training)
    pixels = examples.shape[2] * examples.shape[3]
    return {"bce": total / count, "bce_per_frame": total / count * pixels}


def copy_last_bce(examples: np.ndarray, input_frames: int) -> dict[str, float]:
    """The copy-last-frame baseline: every future frame is the last input frame, its pixels
    clipped to [ε, 1 − ε]. ε is chosen among a few values on the *input* frames alone (each
    predicted by the one before), so the future frames play no part in the choice."""
    x = torch.from_numpy(examples).double()

    def bce(pred, target, eps):
        p = pred.clamp(eps, 1 - eps)
        return float(-(target * p.log() + (1 - target) * (1 - p).log()).mean())

    candidates = (1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.2)
    if input_frames >= 2:
        inputs = x[:, :input_frames]
        eps = min(candidates, key=lambda e: bce(inputs[:, :-1], inputs[:, 1:], e))
    else:
        eps = 0.1
    last = x[:, input_frames - 1 : input_frames].expand_as(x[:, input_frames:])
    value = bce(last, x[:, input_frames:], eps)
    return {"copy_last_bce": value, "copy_last_bce_per_frame": value * x.shape[2] * x.shape[3],
            "copy_last_epsilon": eps}


def _top_digits(logits: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """Multi-hot of the ``count[b]`` highest digit logits of each clip."""
    ranks = logits.argsort(dim=1, descending=True).argsort(dim=1)
    return (ranks < count.unsqueeze(1)).float()


@torch.no_grad()
def _classify_metrics(model, clips: Clips, batch: int = 64, digit_weight: float = 1.0
                      ) -> dict[str, float]:
    """Accuracies, and ``loss``: the training objective (the digit loss weighted by
    ``digit_weight``) per clip."""
    was_training = model.training
    model.eval()
    device = _device(model)
    loss = 0.0
    digit_ok = direction_ok = both_ok = 0
    for k in range(0, len(clips), batch):
        part = slice(k, k + batch)
        frames, lengths, digits, direction = (
            torch.from_numpy(a[part]) for a in (clips.frames, clips.lengths, clips.digits,
                                               clips.direction))
        value, d_logits, r_logits = _classify_loss(model, frames.to(device), lengths,
                                                   digits.to(device), direction.to(device),
                                                   digit_weight)
        loss += float(value) * len(frames)
        shown = _top_digits(d_logits.cpu(), digits.sum(1))
        digits_right = (shown == digits).all(1)
        direction_right = r_logits.argmax(1).cpu() == direction
        digit_ok += int(digits_right.sum())
        direction_ok += int(direction_right.sum())
        both_ok += int((digits_right & direction_right).sum())
    model.train(was_training)
    n = len(clips)
    return {"loss": loss / n, "digit_accuracy": digit_ok / n,
            "direction_accuracy": direction_ok / n, "clip_accuracy": both_ok / n}


def _majority(train: Clips, test: Clips) -> dict[str, float]:
    """Most frequent classes of the training clips, scored on ``test``."""
    ranked = np.argsort(-train.digits.sum(0), kind="stable")
    guess = np.zeros_like(test.digits)
    for k, count in enumerate(test.digits.sum(1).astype(int)):  # as many as the clip shows
        guess[k, ranked[:count]] = 1
    direction = np.bincount(train.direction, minlength=len(DIRECTIONS)).argmax()
    digits_right = (test.digits == guess).all(1)
    direction_right = test.direction == direction
    return {"majority_digit_accuracy": float(digits_right.mean()),
            "majority_direction_accuracy": float(direction_right.mean()),
            "majority_clip_accuracy": float((digits_right & direction_right).mean())}


# ---------------------------------------------------------------------- pictures


def _picture(frames: np.ndarray, scale: int):
    from PIL import Image

    image = Image.fromarray((np.clip(frames, 0, 1) * 255).round().astype(np.uint8), mode="L")
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    return image


def _side_by_side(*frames: np.ndarray, gap: int = 1) -> np.ndarray:
    height = frames[0].shape[0]
    sep = np.full((height, gap), 0.5, dtype=np.float32)
    parts = []
    for k, f in enumerate(frames):
        parts += ([sep] if k else []) + [f]
    return np.concatenate(parts, axis=1)


def _save(flag: str, path: str, image, **kwargs) -> None:
    buffer = io.BytesIO()
    image.save(buffer, format="GIF" if flag == "--gif" else "PNG", **kwargs)
    try:
        atomic_write_bytes(path, buffer.getvalue())
    except OSError as err:
        raise RnnkitError(f"{flag} {path}: cannot write: {err.strerror}") from None


def write_pictures(truth: np.ndarray, predicted: np.ndarray, input_frames: int,
                   options: FramesPredictOptions) -> None:
    """truth ``(T, Y, X)``, predicted ``(future, Y, X)``."""
    shown = np.concatenate([truth[:input_frames], predicted])
    if options.gif:
        images = [_picture(_side_by_side(a, b), options.scale) for a, b in zip(truth, shown)]
        _save("--gif", options.gif, images[0], save_all=True, append_images=images[1:],
              duration=200, loop=0)
    if options.png:
        blank = np.full_like(truth[0], 0.5)
        top = _side_by_side(*truth)
        bottom = _side_by_side(*([blank] * input_frames), *predicted)
        sep = np.full((1, top.shape[1]), 0.5, dtype=np.float32)
        _save("--png", options.png, _picture(np.concatenate([top, sep, bottom]), options.scale))


# ---------------------------------------------------------------------- the application


@dataclass
class Loaded:
    model: torch.nn.Module
    config: FramesConfig
    size: tuple[int, int]


def _build(config: FramesConfig, size: tuple[int, int], pixel_mean: float = 0.1):
    if config.task == "classify":
        return ClipClassifier(config.model)
    return build_forecaster(config.model, size, config.future_frames, pixel_mean)


@register("frames")
class Frames(Application):
    summary = "video frames: predict the next frames (ConvLSTM) or classify clips"
    description = __doc__.split("\n\n", 1)[1]
    examples = """\
rnnkit frames train --out run                  # next-frame, generated moving digits
rnnkit frames train --task classify --digits 2 --out run-classify
rnnkit frames train --train clips/ --input-frames 5 --future-frames 5 --out run
rnnkit frames eval --checkpoint run --baselines --json
rnnkit frames predict --checkpoint run --gif pred.gif --png pred.png
"""
    Config = FramesConfig
    EvalOptions = FramesEvalOptions
    PredictOptions = FramesPredictOptions

    def prepare(self, config: FramesConfig, context: PrepareContext) -> Prepared:
        data = prepare_clips(config)
        if context.resume is not None:
            saved = tuple(context.resume.saved.get("size", data.size))
            if saved != data.size:
                raise RnnkitError(f"--resume: the run was trained on {saved[0]}×{saved[1]} "
                                  f"frames, these are {data.size[0]}×{data.size[1]}")
        return data

    def build_model(self, config: FramesConfig, data: Prepared):
        train = data.train
        frames = sum(float(train.frames[k, : train.lengths[k]].sum()) for k in range(len(train)))
        pixel_mean = frames / (float(train.lengths.sum()) * train.size[0] * train.size[1])
        return _build(config, data.size, pixel_mean)

    def task(self, config: FramesConfig, data: Prepared, seed: int) -> FramesTask:
        return FramesTask(config, data, seed)

    def load(self, checkpoint: Checkpoint) -> Loaded:
        config = checkpoint.options
        saved = checkpoint.saved.get("options", {})
        for name, value in LEGACY_DEFAULTS.items():  # a run saved before the option existed
            if name not in saved:
                setattr(config.model, name, value)
        if "digit_weight" not in saved:  # its loss was the plain sum of the two
            config.digit_weight = 1.0
        size = tuple(checkpoint.saved["size"])
        return Loaded(checkpoint.load_weights(_build(config, size)), config, size)

    def _clips(self, loaded: Loaded, path: str, count: int) -> Clips:
        config = loaded.config
        if path:
            if config.task == "classify":
                raise RnnkitError("--data: a classify model scores generated clips only (image "
                                  "folders carry no labels)")
            return _folder(path, loaded.size)
        return generated(config, count, 2, "test")

    def evaluate(self, loaded: Loaded, options: FramesEvalOptions) -> dict:
        if options.threads:
            torch.set_num_threads(options.threads)
        config = loaded.config
        clips = self._clips(loaded, options.data, options.clips)
        if config.task == "classify":
            metrics = _classify_metrics(loaded.model, clips, config.batch_size,
                                        config.digit_weight)
            metrics["clips"] = len(clips)
            if options.baselines:
                train = generated(config, config.clips, 0, "train")
                metrics.update(_majority(train, clips))
            return metrics
        examples = windows(clips, config)
        metrics = _next_frame_metrics(loaded.model, examples, config)
        metrics["windows"] = len(examples)
        if options.baselines:
            metrics.update(copy_last_bce(examples, config.input_frames))
        return metrics

    def predict(self, loaded: Loaded, options: FramesPredictOptions):
        config = loaded.config
        clips = self._clips(loaded, options.data, options.clips)
        model = loaded.model
        device = _device(model)
        if config.task == "classify":
            if options.gif or options.png:
                raise RnnkitError("--gif/--png: pictures of predicted frames need a next-frame "
                                  "model (this one classifies clips)")
            with torch.no_grad():
                d_logits, r_logits = model(torch.from_numpy(clips.frames).to(device),
                                           torch.from_numpy(clips.lengths))
            shown = _top_digits(d_logits.cpu(), torch.from_numpy(clips.digits).sum(1))
            yield "clip\tdigits\tdirection\ttrue digits\ttrue direction\n"
            for k, name in enumerate(clips.names):
                guess = " ".join(str(d) for d in np.flatnonzero(shown[k].numpy()))
                truth = " ".join(str(d) for d in np.flatnonzero(clips.digits[k]))
                yield (f"{name}\t{guess}\t{DIRECTIONS[int(r_logits[k].argmax())][0]}\t{truth}\t"
                       f"{DIRECTIONS[int(clips.direction[k])][0]}\n")
            return
        examples = windows(clips, config)
        if options.clip >= len(examples):
            raise RnnkitError(f"--clip {options.clip}: there are {len(examples)} windows")
        with torch.no_grad():
            predicted = _predict_frames(model, torch.from_numpy(examples).to(device),
                                        config).cpu().numpy()
        write_pictures(examples[options.clip], predicted[options.clip], config.input_frames,
                       options)
        yield "window\tbce\n"
        future = examples[:, config.input_frames:]
        p = np.clip(predicted, 1e-7, 1 - 1e-7)
        per = -(future * np.log(p) + (1 - future) * np.log(1 - p)).mean((1, 2, 3))
        for k, value in enumerate(per):
            yield f"{k}\t{value:.4f}\n"
