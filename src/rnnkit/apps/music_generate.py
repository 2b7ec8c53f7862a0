"""``rnnkit music generate``: sample new pieces from a trained music model.

Piano roll: ``--steps`` (or ``--bars``) sampled steps after the optional primer, as MIDI files
with a piano-roll PNG beside each (``--midi song.mid``; one line per file is printed), or as
one JSON line of steps per piece. ABC: tunes sampled token by token until the tune ends (or
``--steps`` tokens / ``--bars`` bar lines), written as ABC text; ``--midi`` converts them
through ``music21``. The same ``--seed`` gives the same pieces.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import torch

from rnnkit._io import atomic_write_bytes
from rnnkit.data.music import Piece, check_range, midi_bytes, piano_roll, pieces_from_roll
from rnnkit.data.music_abc import prime_tokens, read_abc, tune_text
from rnnkit.errors import RnnkitError

__all__ = ["generate", "sample_tunes", "abc_parses", "roll_png"]


def generate(loaded, options):
    """The ``generate`` verb: text pieces for ``--output`` (stdout by default)."""
    generator = torch.Generator().manual_seed(options.seed)
    if loaded["kind"] == "abc":
        return _generate_abc(loaded, options, generator)
    return _generate_rolls(loaded, options, generator)


# ---------------------------------------------------------------------- piano roll


def _roll_prime(path: str, config) -> Piece:
    from rnnkit.apps.music_tasks import detect_format, read_rolls

    fmt = detect_format(path, "auto", "--prime")
    if fmt == "abc":
        raise RnnkitError(f"--prime {path}: an ABC primer for a piano-roll model "
                          "(give a .mid or .json file)")
    pitch_range = (config.low_pitch, config.high_pitch)
    if fmt == "jsb":
        from rnnkit.data.music import read_jsb

        raw = json.loads(Path(path).read_text(encoding="utf-8")) if Path(path).exists() else None
        piece = read_jsb(path, "test" if isinstance(raw, dict) else None)[0]
        check_range([piece], *pitch_range, where=f"--prime {path}")
        return piece
    return read_rolls(path, fmt, None, config.steps_per_quarter, pitch_range)[0]


def _generate_rolls(loaded, options, generator):
    config, model = loaded["config"], loaded["model"]
    steps = options.steps or options.bars * 4 * config.steps_per_quarter or 64
    prime = _roll_prime(options.prime, config) if options.prime else []
    first = piano_roll(prime, config.low_pitch, config.high_pitch)  # (T0, P)
    first = first.unsqueeze(0).expand(options.num_samples, -1, -1).to(loaded["device"])
    rolls = model.cpu().generate(first.cpu(), steps, options.temperature, generator)
    pieces = [pieces_from_roll(roll, config.low_pitch) for roll in rolls]
    if not options.midi:
        return (json.dumps([list(step) for step in piece]) + "\n" for piece in pieces)
    return _write_midis(pieces, options, loaded, len(prime))


def _midi_paths(path: str, count: int) -> list[Path]:
    target = Path(path)
    if target.suffix.lower() not in (".mid", ".midi"):
        raise RnnkitError(f"--midi {path}: expected a file name ending in .mid")
    if count == 1:
        return [target]
    return [target.with_name(f"{target.stem}-{i + 1}{target.suffix}") for i in range(count)]


def _write_midis(pieces: list[Piece], options, loaded, primed: int) -> list[str]:
    """Every file built in memory first, then each written atomically."""
    config = loaded["config"]
    paths = _midi_paths(options.midi, len(pieces))
    files = {}
    for path, piece in zip(paths, pieces, strict=True):
        files[path] = midi_bytes(piece, config.steps_per_quarter, options.tempo,
                                 options.program, options.velocity)
        files[path.with_suffix(".png")] = roll_png(piece, primed, path.name)
        if options.report:
            files[path.with_suffix(".html")] = _report(loaded, piece, primed, path.name)
    try:
        for path, data in files.items():
            atomic_write_bytes(path, data)
    except OSError as err:
        raise RnnkitError(f"--midi {options.midi}: cannot write: {err.strerror}") from None
    return [f"{path}\t{len(piece)} steps\t{path.with_suffix('.png')}\n"
            for path, piece in zip(paths, pieces, strict=True)]


def roll_png(piece: Piece, primed: int = 0, title: str = "") -> bytes:
    """PNG bytes of a piano roll (pitch up, time right; the primer shaded)."""
    from matplotlib.figure import Figure

    pitches = [p for step in piece for p in step] or [60]
    low, high = min(pitches) - 2, max(pitches) + 2
    roll = piano_roll(piece, low, high).t().numpy()  # (P, T)
    figure = Figure(figsize=(max(4.0, min(16.0, len(piece) / 8)), 3.5))
    axes = figure.add_subplot()
    axes.imshow(roll, aspect="auto", origin="lower", cmap="Greys", interpolation="nearest",
                extent=(0, len(piece), low - 0.5, high + 0.5))
    if primed:
        axes.axvspan(0, primed, color="tab:blue", alpha=0.15, label="primer")
        axes.legend(loc="upper right")
    axes.set_xlabel("time step")
    axes.set_ylabel("MIDI pitch")
    axes.set_title(title)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def _report(loaded, piece: Piece, primed: int, name: str) -> bytes:
    """A self-contained HTML page: the piano roll, and the model's NLL of every step."""
    from rnnkit.apps.music_tasks import roll_nll
    from rnnkit.diagnostics.report import Report, render_report

    config = loaded["config"]
    with torch.no_grad():
        _, _, (nll,) = roll_nll(loaded["model"].cpu(), [piece], config.low_pitch,
                                config.high_pitch)
    rows = [[str(step), " ".join(map(str, pitches)) or "rest", f"{value:.3f}"]
            for step, (pitches, value) in enumerate(zip(piece, nll.tolist(), strict=True))]
    report = Report(
        title=f"rnnkit music: {name}", symbols=[], units=[],
        meta=[("steps", str(len(piece))), ("primer steps", str(primed)),
              ("mean NLL per step (nats)", f"{float(nll.mean()):.3f}")],
        table_title="Per-step likelihood", table_header=["step", "pitches", "NLL (nats)"],
        table=rows,
        images=[("Piano roll", "time right, pitch up; the primer shaded",
                 roll_png(piece, primed, name)),
                ("Per-step NLL", "-log p of each step under the model (nats)",
                 _nll_png(nll.tolist(), primed))])
    return render_report(report).encode("utf-8")


def _nll_png(values: list[float], primed: int) -> bytes:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(max(4.0, min(16.0, len(values) / 8)), 2.5))
    axes = figure.add_subplot()
    axes.plot(range(len(values)), values, marker=".", linewidth=1)
    if primed:
        axes.axvspan(0, primed - 0.5, color="tab:blue", alpha=0.15)
    axes.set_xlabel("time step")
    axes.set_ylabel("NLL (nats)")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


# ---------------------------------------------------------------------- ABC


def _abc_prime(text: str, vocab) -> list[str]:
    path = Path(text)
    tokens = read_abc(path)[0].tokens if path.suffix == ".abc" or path.is_file() \
        else prime_tokens(text)
    unknown = [t for t in tokens if t not in vocab]
    if unknown:
        keys = sorted(t for t in vocab.tokens if t.startswith(("K:", "M:")))[:12]
        raise RnnkitError(f"--prime: {unknown[0]!r} never seen in training (headers seen: "
                          f"{', '.join(keys)})")
    return tokens


def sample_tunes(model, vocab, prime: list[str], count: int, max_tokens: int, bars: int,
                 temperature: float, generator: torch.Generator) -> list[list[str]]:
    """``count`` tunes, each the primer then sampled tokens up to ``<eos>``."""
    model = model.cpu()
    ids = torch.tensor(vocab.encode(prime, bos=True)).unsqueeze(1).expand(-1, count)  # (T0, B)
    logits, hidden = model(ids)
    tunes: list[list[str]] = [list(prime) for _ in range(count)]
    done = [False] * count
    bar_counts = [0] * count
    for _ in range(max_tokens):
        probs = torch.softmax(logits[-1] / temperature, dim=-1)  # (B, V)
        chosen = torch.multinomial(probs, 1, generator=generator)  # (B, 1)
        for row, token_id in enumerate(chosen.flatten().tolist()):
            if done[row]:
                continue
            token = vocab.token_of(token_id)
            done[row] = token_id == vocab.eos_id
            if not done[row] and token not in vocab.specials:
                tunes[row].append(token)
                bar_counts[row] += "|" in token
                done[row] = bool(bars) and bar_counts[row] >= bars
        if all(done):
            break
        logits, hidden = model(chosen.t(), hidden)
    return tunes


def _generate_abc(loaded, options, generator):
    vocab = loaded["vocab"]
    prime = _abc_prime(options.prime, vocab) if options.prime else []
    tunes = sample_tunes(loaded["model"], vocab, prime, options.num_samples,
                         options.steps or 600, options.bars, options.temperature, generator)
    texts = [tune_text(tune, number)
             for number, tune in enumerate(tunes, 1)]
    if options.midi:
        _write_abc_midis(texts, options)
    return (text + "\n" for text in texts)


def abc_parses(text: str) -> bool:
    """Whether ``music21``'s ABC parser reads the tune and finds notes in it."""
    import warnings

    import music21

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            score = music21.converter.parse(text, format="abc")
        return len(score.flatten().notes) > 0
    except Exception:  # noqa: BLE001 - any parser failure means "does not parse"
        return False


def _write_abc_midis(texts: list[str], options) -> None:
    try:
        import music21
    except ModuleNotFoundError:
        raise RnnkitError("--midi for ABC tunes needs music21: pip install 'rnnkit[music]'") \
            from None
    paths = _midi_paths(options.midi, len(texts))
    files = {}
    for path, text in zip(paths, texts, strict=True):
        try:
            score = music21.converter.parse(text, format="abc")
            files[path] = music21.midi.translate.streamToMidiFile(score).writestr()
        except Exception as err:  # noqa: BLE001
            raise RnnkitError(f"--midi {path}: the generated tune does not convert: {err}") \
                from None
    for path, data in files.items():
        atomic_write_bytes(path, data)
