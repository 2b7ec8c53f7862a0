"""Frame sequences (clips) for ``rnnkit frames``: moving digits generated from real handwritten
digits, and the user's own clips read from folders of images.

**Moving digits.** Synthetic motion of real digits, in the spirit of Moving MNIST (Srivastava et
al. 2015) as used by the ConvLSTM paper (Shi et al. 2015): the 1,797 handwritten 8×8 digits that
ship inside scikit-learn (``sklearn.datasets.load_digits``, the UCI "optdigits" test set, no
download), scaled to ``digit_size`` pixels (bilinear) and moved on a black ``canvas``×``canvas``
frame. Each clip draws ``digits`` digit images, one of 8 directions (E, NE, N, NW, W, SW, S,
SE) that all its digits start moving in at ``speed`` pixels per frame (diagonals: ``speed``
along each axis), and a start position for each digit from which its first move stays inside
the frame (so the motion between the first two frames is the labelled direction; when
``speed`` exceeds the room the frame leaves, anywhere); a digit bounces off the frame's edges
(its velocity flips on the axis that would leave the frame); overlapping digits combine by
the pixel-wise maximum. Pixel values lie in [0, 1]. The generator is ``numpy.random.
default_rng(seed)``: the same seed gives the same clips. The digit images are split once (the
first 80 % of scikit-learn's order for ``split="train"``, the rest for ``"test"``), so test
clips show handwriting the model never saw.

**Image folders.** A folder holding one sub-folder per clip; a clip's frames are its image files
(``.png``, ``.jpg``, ``.jpeg``, ``.gif``, ``.bmp``, ``.tif``, ``.tiff``, ``.webp``) in sorted
file-name order, read with Pillow and converted to grey levels in [0, 1]. Every frame of every
clip must have one size; clips may differ in length. Video files are not read: no maintained
video reader is a dependency of rnnkit (export the frames, e.g. ``ffmpeg -i in.mp4 clip/%04d.png``).
Errors name the file: an unreadable image, a frame of another size, an empty folder.

Axes: N clips, T frames, Y × X pixels (height × width).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rnnkit.errors import RnnkitError

__all__ = ["DIRECTIONS", "Clips", "load_digit_images", "moving_digits", "read_clip_folders",
           "IMAGE_SUFFIXES"]

# (dy, dx) per direction, y downwards; names as on a map with north up
DIRECTIONS: tuple[tuple[str, int, int], ...] = (
    ("E", 0, 1), ("NE", -1, 1), ("N", -1, 0), ("NW", -1, -1),
    ("W", 0, -1), ("SW", 1, -1), ("S", 1, 0), ("SE", 1, 1),
)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp")


@dataclass
class Clips:
    """A set of clips, padded to the longest.

    Attributes:
        frames: ``(N, T, Y, X)`` float32 in [0, 1], zero past each clip's end.
        lengths: ``(N,)`` int64 frames per clip.
        digits: ``(N, 10)`` float32, 1 for each digit class shown in the clip (generated clips;
            None for folders).
        direction: ``(N,)`` int64 index into :data:`DIRECTIONS` (generated clips; else None).
        names: one name per clip (its folder, or ``clip-K``).
    """

    frames: np.ndarray
    lengths: np.ndarray
    digits: np.ndarray | None = None
    direction: np.ndarray | None = None
    names: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def size(self) -> tuple[int, int]:
        return int(self.frames.shape[2]), int(self.frames.shape[3])


def load_digit_images(split: str, digit_size: int) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's handwritten digits of ``split`` (``train``: first 80 %, ``test``: the
    rest), scaled to ``digit_size`` pixels and to [0, 1]: (images ``(M, S, S)``, labels)."""
    try:
        from sklearn.datasets import load_digits
    except ModuleNotFoundError:
        raise RnnkitError("the moving digits need scikit-learn (pip install 'rnnkit[frames]'), "
                          "or give clips as image folders (--train)") from None
    import torch
    from torch.nn import functional as nnf

    data = load_digits()
    images, labels = data.images.astype(np.float32) / 16.0, data.target.astype(np.int64)
    cut = int(0.8 * len(images))
    part = slice(0, cut) if split == "train" else slice(cut, None)
    images, labels = images[part], labels[part]
    if digit_size != 8:
        scaled = nnf.interpolate(torch.from_numpy(images)[:, None], size=(digit_size,) * 2,
                                 mode="bilinear", align_corners=False)
        images = scaled[:, 0].clamp_(0, 1).numpy()
    return images, labels


def moving_digits(count: int, frames: int, *, canvas: int = 32, digit_size: int = 16,
                  digits: int = 1, speed: int = 2, seed: int = 0, split: str = "train") -> Clips:
    """``count`` generated clips of ``frames`` frames (see the module docstring)."""
    if digit_size > canvas:
        raise RnnkitError(f"--digit-size {digit_size}: larger than --canvas {canvas}")
    images, labels = load_digit_images(split, digit_size)
    rng = np.random.default_rng(seed)
    out = np.zeros((count, frames, canvas, canvas), dtype=np.float32)
    shown = np.zeros((count, 10), dtype=np.float32)
    direction = rng.integers(0, len(DIRECTIONS), size=count)
    room = canvas - digit_size  # top-left corners lie in [0, room]
    for k in range(count):
        picks = rng.integers(0, len(images), size=digits)
        shown[k, labels[picks]] = 1.0
        _, dy, dx = DIRECTIONS[direction[k]]
        vy0, vx0 = dy * speed, dx * speed
        for pick in picks:
            # a start from which the first move stays inside the frame, so that the motion
            # between the first two frames is the labelled direction
            y, x = _start(rng, room, vy0), _start(rng, room, vx0)
            vy, vx = vy0, vx0
            for t in range(frames):
                window = out[k, t, y : y + digit_size, x : x + digit_size]
                np.maximum(window, images[pick], out=window)
                y, vy = _bounce(y, vy, room)
                x, vx = _bounce(x, vx, room)
    return Clips(out, np.full(count, frames, dtype=np.int64), shown, direction.astype(np.int64),
                 [f"clip-{k}" for k in range(count)])


def _start(rng: np.random.Generator, room: int, velocity: int) -> int:
    """A start in [0, room] from which ``position + velocity`` stays in [0, room] (anywhere
    when |velocity| > room)."""
    if abs(velocity) > room:
        return int(rng.integers(0, room + 1))
    return int(rng.integers(max(0, -velocity), room - max(0, velocity) + 1))


def _bounce(position: int, velocity: int, room: int) -> tuple[int, int]:
    """The next position inside [0, room], the velocity flipped at an edge."""
    new = position + velocity
    if new < 0 or new > room:
        velocity = -velocity
        new = min(max(-new if new < 0 else 2 * room - new, 0), room)
    return new, velocity


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def read_clip_folders(path: str, size: tuple[int, int] | None = None) -> Clips:
    """The clips of ``path``: one sub-folder per clip, frames in sorted file-name order.

    ``size`` (height, width), when given, is the size every frame must have (a trained model's).
    Errors name the file or folder that is wrong.
    """
    from PIL import Image, UnidentifiedImageError

    root = Path(path)
    if not root.exists():
        raise RnnkitError(f"{path}: folder not found")
    if not root.is_dir():
        raise RnnkitError(f"{path}: expected a folder holding one sub-folder of images per clip")
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    if not folders:
        loose = _image_files(root)
        hint = (" (it holds images itself: put them in a sub-folder, one per clip)" if loose
                else "")
        raise RnnkitError(f"{path}: no clip folders (one sub-folder of images per clip){hint}")
    clips: list[np.ndarray] = []
    first: tuple[Path, tuple[int, int]] | None = None
    if size is not None:
        first = (Path("the model"), size)
    for folder in folders:
        files = _image_files(folder)
        if not files:
            raise RnnkitError(f"{folder}: empty clip folder (no {', '.join(IMAGE_SUFFIXES)} "
                              "files)")
        frames = []
        for file in files:
            try:
                with Image.open(file) as image:
                    grey = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
            except (UnidentifiedImageError, OSError, ValueError) as err:
                reason = (err.strerror if isinstance(err, OSError) and err.strerror
                          else "not a readable image")
                raise RnnkitError(f"{file}: cannot read the frame: {reason}") from None
            shape = (int(grey.shape[0]), int(grey.shape[1]))
            if first is None:
                first = (file, shape)
            elif shape != first[1]:
                raise RnnkitError(f"{file}: frame of {shape[0]}×{shape[1]} pixels (height × "
                                  f"width), but {first[0]} is {first[1][0]}×{first[1][1]}: "
                                  "all frames must have one size")
            frames.append(grey)
        clips.append(np.stack(frames))
    longest = max(len(c) for c in clips)
    height, width = clips[0].shape[1:]
    out = np.zeros((len(clips), longest, height, width), dtype=np.float32)
    for k, clip in enumerate(clips):
        out[k, : len(clip)] = clip
    return Clips(out, np.array([len(c) for c in clips], dtype=np.int64),
                 names=[os.path.relpath(f, root) for f in folders])
