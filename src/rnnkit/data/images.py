"""Images and their captions: reading (Pillow), the Flickr8k caption and split files, the
in-memory image cache and the augmentation of ``rnnkit caption``.

Files:

- **captions** (Flickr8k ``Flickr8k.token.txt``): one caption a line, ``IMAGE#N<TAB>caption``
  (``IMAGE<TAB>caption`` is read too); blank lines are skipped. Every image keeps its captions in
  file order.
- **split** (``Flickr_8k.trainImages.txt``): one image file name a line.
- **images**: a directory of files any format Pillow reads. Each is converted to RGB (an alpha
  channel is composited onto white, grayscale and palette images are expanded) and resized to a
  square ``size × size`` (squashed, as the Flickr8k copy here already is), then kept as
  ``uint8`` in one ``(N, 3, size, size)`` tensor: decoded once, 128² × 3 bytes per image.

Captions are lower-cased and split on white space; tokens without a letter or digit
(punctuation) are dropped (:func:`caption_tokens`). Problems name the file and line: a caption
line naming an image that is not in the directory, a missing or unreadable image, an empty
file. An unreadable image stops the reading unless ``skip_bad`` (then it is reported on
standard error with its captions file line and left out).

Axes: N images, C = 3 channels, S image side in pixels, K crop side.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from rnnkit._io import check_regular_file
from rnnkit.errors import RnnkitError

__all__ = ["read_image", "read_captions", "read_split", "caption_tokens", "ImageSet",
           "load_images", "augment", "center_crop", "normalise", "IMAGE_MEAN", "IMAGE_STD",
           "CaptionLine"]

# ImageNet channel statistics: what torchvision's pretrained encoders expect
IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)
_WORD = re.compile(r"[0-9a-z]")


def _pil():
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:  # pragma: no cover - the caption extra brings Pillow
        raise RnnkitError("rnnkit caption reads images with Pillow: pip install "
                          "'rnnkit[caption]' (or pip install Pillow)") from None
    return Image, UnidentifiedImageError


def read_image(path: str | Path, size: int, where: str = "") -> np.ndarray:
    """The image at ``path`` as ``uint8`` ``(size, size, 3)`` RGB. ``where`` (``FILE:LINE: ``)
    prefixes error messages: a missing file or one Pillow cannot decode is an ``RnnkitError``."""
    Image, Unidentified = _pil()
    try:
        check_regular_file(path)
    except RnnkitError as err:
        raise RnnkitError(f"{where}{err}") from None
    try:
        with Image.open(path) as image:
            image.load()
            rgb = _to_rgb(image)
    except (Unidentified, OSError, ValueError, SyntaxError) as err:
        raise RnnkitError(f"{where}{path}: not a readable image ({err})") from None
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.BILINEAR, reducing_gap=2.0)
    return np.asarray(rgb, dtype=np.uint8).copy()


def _to_rgb(image):
    """RGB; transparent pixels composited onto white (RGBA, LA, palette with transparency)."""
    Image, _ = _pil()
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "La", "RGBa", "PA"):
        image = image.convert("RGBA")
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, image).convert("RGB")
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = values.max() if values.size and values.max() > 0 else 1.0
        image = Image.fromarray((values / top * 255).astype(np.uint8))
    return image.convert("RGB")


@dataclass
class CaptionLine:
    """One caption: its image, tokens, and where it was read (for messages)."""

    image: str
    tokens: list[str]
    line: int


def caption_tokens(text: str) -> list[str]:
    """Lower-cased words of a caption; punctuation-only tokens dropped."""
    return [t for t in text.lower().split() if _WORD.search(t)]


def read_captions(path: str | Path) -> dict[str, list[CaptionLine]]:
    """``{image file name: its captions}`` of a captions file (see the module docstring)."""
    check_regular_file(path)
    captions: dict[str, list[CaptionLine]] = {}
    try:
        with open(path, encoding="utf-8") as handle:
            for number, raw in enumerate(handle, 1):
                line = raw.rstrip("\n").rstrip("\r")
                if not line.strip():
                    continue
                if "\t" not in line:
                    raise RnnkitError(f"{path}:{number}: expected IMAGE#N<TAB>caption, got "
                                      f"{line[:60]!r}")
                key, text = line.split("\t", 1)
                image = key.strip()
                if "#" in image:
                    image = image.rsplit("#", 1)[0]
                tokens = caption_tokens(text)
                if not image:
                    raise RnnkitError(f"{path}:{number}: no image name before the tab")
                if not tokens:
                    raise RnnkitError(f"{path}:{number}: the caption of {image} has no words")
                captions.setdefault(image, []).append(CaptionLine(image, tokens, number))
    except UnicodeDecodeError as err:
        raise RnnkitError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    if not captions:
        raise RnnkitError(f"{path}: no captions (the file is empty)")
    return captions


def read_split(path: str | Path) -> list[tuple[str, int]]:
    """(image file name, line) of each non-blank line of a split file."""
    check_regular_file(path)
    with open(path, encoding="utf-8", errors="replace") as handle:
        names = [(line.strip(), k) for k, line in enumerate(handle, 1) if line.strip()]
    if not names:
        raise RnnkitError(f"{path}: no image names (the file is empty)")
    seen: dict[str, int] = {}
    for name, line in names:
        if name in seen:
            raise RnnkitError(f"{path}:{line}: {name} is listed twice (also line {seen[name]})")
        seen[name] = line
    return names


@dataclass
class ImageSet:
    """Images decoded into memory with their captions.

    Attributes:
        names: image file names, in order.
        pixels: ``uint8`` ``(N, 3, S, S)``.
        captions: per image, its captions (token lists).
        skipped: ``(file:line, message)`` of the images left out with ``skip_bad``.
    """

    names: list[str]
    pixels: Tensor
    captions: list[list[list[str]]]
    skipped: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.names)


def load_images(directory: str | Path, captions_path: str | Path,
                split_path: str | Path | None, size: int, *, skip_bad: bool = False,
                captions: dict[str, list[CaptionLine]] | None = None,
                quiet: bool = False) -> ImageSet:
    """The images of ``split_path`` (every captioned image without it) with their captions.

    A caption line naming an image that is not in ``directory`` is an error naming that line;
    an unreadable image too, unless ``skip_bad``."""
    directory = Path(directory)
    if not directory.is_dir():
        raise RnnkitError(f"--images {directory}: not a directory")
    captions = read_captions(captions_path) if captions is None else captions
    if split_path:
        wanted = []
        for name, line in read_split(split_path):
            if name not in captions:
                raise RnnkitError(f"{split_path}:{line}: image {name} has no caption in "
                                  f"{captions_path}")
            wanted.append(name)
    else:
        wanted = list(captions)
    names, arrays, texts, skipped = [], [], [], []
    for name in wanted:
        first = captions[name][0]
        where = f"{captions_path}:{first.line}: "
        path = directory / name
        if not path.exists():
            message = f"{where}names image {name}, which is not in {directory}"
            if not skip_bad:
                raise RnnkitError(message)
            skipped.append(message)
            continue
        try:
            arrays.append(read_image(path, size, where))
        except RnnkitError as err:
            if not skip_bad:
                raise
            skipped.append(str(err))
            continue
        names.append(name)
        texts.append([c.tokens for c in captions[name]])
    if not quiet:
        for message in skipped:
            print(f"rnnkit caption: skipped: {message}", file=sys.stderr)
    if not names:
        raise RnnkitError(f"{captions_path}: no readable image"
                          + (f" of {split_path}" if split_path else ""))
    pixels = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    return ImageSet(names, pixels, texts, skipped)


# ---------------------------------------------------------------------- augmentation


def normalise(pixels: Tensor) -> Tensor:
    """``uint8`` ``(N, 3, K, K)`` → float, scaled to [0, 1] and standardised per channel."""
    mean = torch.tensor(IMAGE_MEAN, device=pixels.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGE_STD, device=pixels.device).view(1, 3, 1, 1)
    return (pixels.float() / 255.0 - mean) / std


def center_crop(pixels: Tensor, crop: int) -> Tensor:
    """The central ``crop × crop`` of each image ``(N, 3, S, S)``."""
    side = pixels.shape[-1]
    if crop > side:
        raise ValueError(f"crop {crop} is larger than the images ({side})")
    top = (side - crop) // 2
    return pixels[..., top:top + crop, top:top + crop]


def augment(pixels: Tensor, crop: int, generator: torch.Generator, flip: bool = True) -> Tensor:
    """A random ``crop × crop`` window of each image and, with ``flip``, a left–right flip with
    probability 1/2 (the standard augmentation); ``generator`` makes it repeatable."""
    count, side = pixels.shape[0], pixels.shape[-1]
    if crop > side:
        raise ValueError(f"crop {crop} is larger than the images ({side})")
    offsets = torch.randint(0, side - crop + 1, (count, 2), generator=generator).tolist()
    flips = (torch.rand(count, generator=generator) < 0.5).tolist() if flip else [False] * count
    out = []
    for image, (top, left), mirror in zip(pixels, offsets, flips, strict=True):
        window = image[:, top:top + crop, left:left + crop]
        out.append(window.flip(-1) if mirror else window)
    return torch.stack(out)
