"""``rnnkit frames``: the generated clips, clip folders and their bad input, a small model that
learns a moving square, predict's GIF/PNG, the classify task."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")
PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

import rnnkit.apps.frames  # noqa: E402, F401  (registers the application)
from rnnkit.cli.main import main  # noqa: E402
from rnnkit.data.frames import (  # noqa: E402
    DIRECTIONS,
    load_digit_images,
    moving_digits,
    read_clip_folders,
)
from rnnkit.errors import RnnkitError  # noqa: E402

QUIET = ["--no-progress", "--no-tensorboard", "--no-plot", "--threads", "1"]


pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------- generated clips


def test_moving_digits_are_seeded_real_digits_moving_as_labelled():
    a = moving_digits(6, 5, canvas=24, digit_size=8, speed=1, seed=3)
    b = moving_digits(6, 5, canvas=24, digit_size=8, speed=1, seed=3)
    c = moving_digits(6, 5, canvas=24, digit_size=8, speed=1, seed=4)
    assert np.array_equal(a.frames, b.frames) and not np.array_equal(a.frames, c.frames)
    assert a.frames.shape == (6, 5, 24, 24) and a.frames.dtype == np.float32
    assert 0.0 <= a.frames.min() and a.frames.max() <= 1.0
    assert (a.digits.sum(1) == 1).all() and list(a.lengths) == [5] * 6
    images, labels = load_digit_images("train", 8)
    for k in range(6):
        # frame 0 holds one real digit image of the clip's label, unchanged (same pixel sum)
        frame = a.frames[k, 0]
        sums = images.sum((1, 2))[labels == a.digits[k].argmax()]
        assert np.isclose(sums, frame.sum(), atol=1e-4).any()


def test_the_first_move_is_the_labelled_direction():
    """Every clip: frame 1 is frame 0 shifted by ``speed`` pixels along the labelled direction
    (start positions are drawn so that the first move does not bounce), also for digits that
    start at the edges (speed 2, 6-pixel digits on a 12-pixel canvas: 7 positions per axis)."""
    clips = moving_digits(200, 2, canvas=12, digit_size=6, speed=2, seed=5)
    assert len(set(clips.direction.tolist())) == 8
    for k in range(200):
        dy, dx = DIRECTIONS[clips.direction[k]][1:]
        moved = np.roll(clips.frames[k, 0], (2 * dy, 2 * dx), axis=(0, 1))  # nothing wraps
        assert np.array_equal(moved, clips.frames[k, 1]), k


def test_test_split_uses_other_handwriting():
    train, _ = load_digit_images("train", 8)
    test, _ = load_digit_images("test", 8)
    assert len(train) + len(test) == 1797
    flat = {img.tobytes() for img in train}
    assert sum(img.tobytes() in flat for img in test) < 5  # the set has a few exact duplicates


# ---------------------------------------------------------------------- folders


def _square_clip(start_row: int, start_col: int, frames: int, size: int = 10,
                 side: int = 3) -> np.ndarray:
    clip = np.zeros((frames, size, size), dtype=np.uint8)
    for t in range(frames):
        col = (start_col + t) % (size - side + 1)
        clip[t, start_row : start_row + side, col : col + side] = 255
    return clip


def _write_clips(root: Path, clips: list[np.ndarray]) -> Path:
    for k, clip in enumerate(clips):
        folder = root / f"clip{k:03d}"
        folder.mkdir(parents=True)
        for t, frame in enumerate(clip):
            Image.fromarray(frame).save(folder / f"f{t:02d}.png")
    return root


def _squares(root: Path, count: int, frames: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    return _write_clips(root, [_square_clip(int(rng.integers(0, 8)), int(rng.integers(0, 3)),
                                            frames) for _ in range(count)])


def test_clip_folders_read_in_file_name_order(tmp_path):
    clip = _square_clip(2, 0, 4)
    root = _write_clips(tmp_path / "clips", [clip, clip[:3]])
    (root / "clip000" / "notes.txt").write_text("not a frame")
    clips = read_clip_folders(str(root))
    assert clips.frames.shape == (2, 4, 10, 10) and list(clips.lengths) == [4, 3]
    assert np.allclose(clips.frames[0], clip / 255.0)
    assert clips.frames[1, 3].max() == 0.0  # padding past the shorter clip
    assert clips.names == ["clip000", "clip001"]


def _error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_bad_folders_name_the_file(tmp_path, capsys):
    root = _squares(tmp_path / "sizes", 2, 4, 0)
    Image.fromarray(np.zeros((12, 10), np.uint8)).save(root / "clip001" / "f02.png")
    err = _error(capsys, ["frames", "train", "--train", str(root), "--out",
                          str(tmp_path / "r1"), *QUIET])
    assert f"{root / 'clip001' / 'f02.png'}: frame of 12×10 pixels" in err
    assert "f00.png is 10×10" in err

    root = _squares(tmp_path / "broken", 2, 4, 0)
    (root / "clip000" / "f01.png").write_bytes(b"\x89PNG not really")
    err = _error(capsys, ["frames", "train", "--train", str(root), "--out",
                          str(tmp_path / "r2"), *QUIET])
    assert f"{root / 'clip000' / 'f01.png'}: cannot read the frame" in err

    empty = tmp_path / "empty"
    (empty / "clip000").mkdir(parents=True)
    err = _error(capsys, ["frames", "train", "--train", str(empty), "--out",
                          str(tmp_path / "r3"), *QUIET])
    assert f"{empty / 'clip000'}: empty clip folder" in err
    err = _error(capsys, ["frames", "train", "--train", str(tmp_path / "nothing"), "--out",
                          str(tmp_path / "r4"), *QUIET])
    assert "nothing: folder not found" in err
    with pytest.raises(RnnkitError, match="no clip folders"):
        read_clip_folders(str(empty / "clip000"))

    short = _squares(tmp_path / "short", 2, 3, 0)
    err = _error(capsys, ["frames", "train", "--train", str(short), "--input-frames", "3",
                          "--future-frames", "2", "--out", str(tmp_path / "r5"), *QUIET])
    assert "clip000: 3 frames, fewer than --input-frames 3 + --future-frames 2 = 5" in err
    assert not (tmp_path / "r5" / "best").exists()


# ---------------------------------------------------------------------- learning


@pytest.fixture(scope="module")
def square_run(tmp_path_factory):
    directory = tmp_path_factory.mktemp("square")
    train = _squares(directory / "train", 48, 6, seed=1)
    valid = _squares(directory / "valid", 8, 6, seed=2)
    out = directory / "run"
    assert main(["frames", "train", "--train", str(train), "--valid", str(valid),
                 "--input-frames", "4", "--future-frames", "2", "--hidden-size", "8",
                 "--num-layers", "1", "--batch-size", "8", "--lr", "5e-2", "--max-epochs", "8",
                 "--eval-every", "0", "--out", str(out), *QUIET]) == 0
    return directory, valid, out


def test_a_small_clip_model_learns_a_moving_square(square_run, capsys):
    """The square moves one pixel right per frame: copying the last frame is wrong on two
    columns of it; the ConvLSTM, after 48 steps, must do clearly better."""
    _, valid, out = square_run
    capsys.readouterr()
    assert main(["frames", "eval", "--checkpoint", str(out), "--data", str(valid),
                 "--baselines", "--json", "--threads", "1"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["windows"] == 8
    assert metrics["bce"] < 0.6 * metrics["copy_last_bce"], metrics


def test_predict_writes_gif_and_png_beside_the_truth(square_run, tmp_path, capsys):
    _, valid, out = square_run
    gif, png = tmp_path / "p.gif", tmp_path / "p.png"
    capsys.readouterr()
    assert main(["frames", "predict", "--checkpoint", str(out), "--data", str(valid),
                 "--gif", str(gif), "--png", str(png), "--scale", "2", "--clip", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "window\tbce" and len(lines) == 1 + 8
    with Image.open(gif) as image:
        assert image.n_frames == 6  # every frame of the window: truth | input, then prediction
        assert image.size == (2 * (10 + 1 + 10), 2 * 10)
    with Image.open(png) as image:
        assert image.size == (2 * (6 * 10 + 5), 2 * (10 + 1 + 10))
    err = _error(capsys, ["frames", "predict", "--checkpoint", str(out), "--data", str(valid),
                          "--clip", "99"])
    assert "--clip 99: there are 8 windows" in err


def test_classify_generated_clips(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["frames", "train", "--task", "classify", "--clips", "24", "--digits", "2",
                 "--cell", "gru", "--valid-clips", "8", "--canvas", "12", "--digit-size", "6",
                 "--input-frames", "3", "--future-frames", "1", "--hidden-size", "4",
                 "--num-layers", "1", "--batch-size", "8", "--max-epochs", "1",
                 "--out", str(out), *QUIET]) == 0
    capsys.readouterr()
    assert main(["frames", "eval", "--checkpoint", str(out), "--clips", "16", "--baselines",
                 "--json", "--threads", "1"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["clips"] == 16
    for key in ("digit_accuracy", "direction_accuracy", "clip_accuracy",
                "majority_clip_accuracy"):
        assert 0.0 <= metrics[key] <= 1.0
    assert main(["frames", "predict", "--checkpoint", str(out), "--clips", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and lines[1].split("\t")[4] in {d[0] for d in DIRECTIONS}
    err = _error(capsys, ["frames", "train", "--task", "classify", "--train", str(tmp_path),
                          "--out", str(tmp_path / "r"), *QUIET])
    assert "--task classify learns the labels of generated clips" in err


# ---------------------------------------------------------------------- patches, pooling, old runs


def test_patches_round_trip_with_padding():
    import torch

    from rnnkit.models.frames import from_patches, to_patches

    frames = torch.rand(2, 3, 10, 7)
    cells = to_patches(frames, 4)
    assert cells.shape == (2, 3, 16, 3, 2)  # 10×7 padded to 12×8
    assert float(cells[0, 0, :, 0, 0].sum()) == float(frames[0, 0, :4, :4].sum())
    back = from_patches(cells.flatten(0, 1), 4, (10, 7)).view(2, 3, 10, 7)
    assert torch.equal(back, frames)
    assert torch.equal(to_patches(frames, 1)[:, :, 0], frames)


@pytest.mark.parametrize("pool", ["steps", "final"])
def test_classifier_pooling_ignores_frames_past_a_clip_end(pool):
    import torch

    from rnnkit.models.frames import ClipClassifier, FramesModelConfig

    torch.manual_seed(0)
    model = ClipClassifier(FramesModelConfig(hidden_size=4, num_layers=1, pool=pool))
    frames = torch.rand(3, 5, 10, 10)
    lengths = torch.tensor([5, 3, 2])
    digits, direction = model(frames, lengths)
    alone = model(frames[1:2, :3], torch.tensor([3]))
    noisy = frames.clone()
    noisy[1, 3:] = 7.0
    torch.testing.assert_close(digits[1:2], alone[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(model(noisy, lengths)[1], direction, atol=0, rtol=0)


def test_a_checkpoint_from_before_patches_still_loads(square_run, tmp_path, capsys):
    """Runs saved before --patch-size/--head/--pool existed (their config.json lacks them)
    load as single pixels with the last layer's read-out, not as the new defaults."""
    import shutil

    _, valid, out = square_run
    legacy = tmp_path / "legacy"
    assert main(["frames", "train", "--train", str(valid), "--valid", str(valid),
                 "--input-frames", "4", "--future-frames", "2", "--hidden-size", "4",
                 "--num-layers", "2", "--patch-size", "1", "--head", "last",
                 "--batch-size", "8", "--max-steps", "2", "--out", str(legacy), *QUIET]) == 0
    capsys.readouterr()
    assert main(["frames", "eval", "--checkpoint", str(legacy), "--data", str(valid),
                 "--json"]) == 0
    expected = json.loads(capsys.readouterr().out)["bce"]
    old = tmp_path / "old"
    shutil.copytree(legacy, old)
    for config in old.glob("*/config.json"):
        saved = json.loads(config.read_text())
        for name in ("patch_size", "head", "pool"):
            del saved["options"][name]
        config.write_text(json.dumps(saved))
    assert main(["frames", "eval", "--checkpoint", str(old), "--data", str(valid),
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["bce"] == expected


def _glyph_clips(count: int, seed: int, canvas: int = 12, frames: int = 4):
    """Clips of one of two 5×5 glyphs, an X or a + (the same 9 lit pixels, so the same pixel
    sum and maximum: only the shape tells them apart), moving one pixel per frame in one of
    8 directions from a random start, without leaving the frame."""
    cross = np.eye(5, dtype=np.float32)
    cross = np.maximum(cross, cross[::-1])
    plus = np.zeros((5, 5), dtype=np.float32)
    plus[2, :] = plus[:, 2] = 1.0
    rng = np.random.default_rng(seed)
    out = np.zeros((count, frames, canvas, canvas), dtype=np.float32)
    label = rng.integers(0, 2, size=count)
    direction = rng.integers(0, len(DIRECTIONS), size=count)
    room, travel = canvas - 5, frames - 1
    for k in range(count):
        _, dy, dx = DIRECTIONS[direction[k]]
        y = int(rng.integers(max(0, -dy * travel), room - max(0, dy * travel) + 1))
        x = int(rng.integers(max(0, -dx * travel), room - max(0, dx * travel) + 1))
        for t in range(frames):
            out[k, t, y + dy * t : y + dy * t + 5, x + dx * t : x + dx * t + 5] = (
                (cross, plus)[label[k]])
    digits = np.zeros((count, 10), dtype=np.float32)
    digits[np.arange(count), label] = 1.0
    return out, digits, direction.astype(np.int64)


def test_the_classifier_learns_a_shape_that_moves():
    """The digit head must read shape: an X and a + with the same pixel count, at random
    positions and directions. Trained with the application's loss (digits and direction), the
    classifier with its convolutional stem tells them apart on held-out clips (chance: 0.5)."""
    import torch

    from rnnkit.apps.frames import _classify_loss
    from rnnkit.models.frames import ClipClassifier, FramesModelConfig

    frames, digits, direction = (torch.from_numpy(a) for a in _glyph_clips(512, seed=0))
    held = [torch.from_numpy(a) for a in _glyph_clips(128, seed=1)]
    torch.manual_seed(0)
    model = ClipClassifier(FramesModelConfig(hidden_size=8, num_layers=1, patch_size=2,
                                             stem=8))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    for step in range(96):
        batch = slice(16 * step % 512, 16 * step % 512 + 16)
        loss = _classify_loss(model, frames[batch], None, digits[batch], direction[batch])[0]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        digit_logits, _ = model(held[0])
    accuracy = float((digit_logits.argmax(1) == held[1].argmax(1)).float().mean())
    assert accuracy >= 0.9, accuracy


def test_a_classifier_from_before_the_stem_still_loads(tmp_path, capsys):
    """Classifiers saved before --stem/--stem-skip/--digit-weight existed load as raw patches
    with the plain sum of the two losses, not as the new defaults (a 32-channel stem, weight
    10): the same accuracies and loss as when they were trained."""
    import shutil

    run = tmp_path / "run"
    assert main(["frames", "train", "--task", "classify", "--clips", "16", "--valid-clips", "8",
                 "--canvas", "12", "--digit-size", "6", "--input-frames", "2",
                 "--future-frames", "1", "--hidden-size", "4", "--num-layers", "1",
                 "--patch-size", "1", "--head", "last", "--pool", "final", "--stem", "0",
                 "--no-stem-skip", "--digit-weight", "1", "--batch-size", "8", "--max-steps",
                 "2", "--out", str(run), *QUIET]) == 0
    capsys.readouterr()
    evaluate = ["frames", "eval", "--clips", "16", "--json", "--threads", "1", "--checkpoint"]
    assert main([*evaluate, str(run)]) == 0
    expected = json.loads(capsys.readouterr().out)
    old = tmp_path / "old"
    shutil.copytree(run, old)
    for config in old.glob("*/config.json"):
        saved = json.loads(config.read_text())
        for name in ("patch_size", "head", "pool", "stem", "stem_skip", "digit_weight"):
            del saved["options"][name]
        config.write_text(json.dumps(saved))
    assert main([*evaluate, str(old)]) == 0
    assert json.loads(capsys.readouterr().out) == expected
