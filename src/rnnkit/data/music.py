"""Polyphonic music as piano rolls: JSB-layout JSON, MIDI files (read and write), rolls as tensors.

A *piece* is a list of time steps; a step is the sorted tuple of the MIDI pitches sounding at it
(an empty tuple is a rest). A piano roll is the multi-hot tensor ``(T, P)`` of a piece over the
pitch range ``low … high`` (P = high − low + 1; the usual 88 keys are MIDI 21–108).

Readers raise :class:`~rnnkit.errors.RnnkitError` naming the file and where in it (JSON line and
column, ``split[piece][step]``, MIDI track). MIDI goes through ``mido`` (imported lazily: the
``music`` extra); held notes and repeated notes are not told apart (as in the JSB data), so a
pitch sounding over consecutive steps is written as one note.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path

import torch

from rnnkit.errors import RnnkitError

__all__ = ["Piece", "SPLITS", "MIDI_SUFFIXES", "read_jsb", "read_midi", "midi_bytes",
           "check_range", "piano_roll", "pieces_from_roll", "piece_files"]

Piece = list[tuple[int, ...]]
SPLITS = ("train", "valid", "test")
MIDI_SUFFIXES = (".mid", ".midi")


# ---------------------------------------------------------------------- JSB-layout JSON


def read_jsb(path: str | Path, split: str | None) -> list[Piece]:
    """The pieces of ``split`` in a JSB-layout file (``{"train": [...], "valid": [...],
    "test": [...]}``), or of a bare list of pieces (``split`` ignored)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RnnkitError(f"{path}: file not found") from None
    except json.JSONDecodeError as err:
        raise RnnkitError(f"{path}:{err.lineno}:{err.colno}: not valid JSON: {err.msg}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise RnnkitError(f"{path}: cannot read: {err}") from None
    where = str(path)
    if isinstance(data, dict):
        if split is None or split not in data:
            raise RnnkitError(f"{path}: not the JSB layout: expected a key {split!r} beside "
                              f"{sorted(data)[:5]} (an object of splits → lists of pieces)")
        data, where = data[split], f"{path}: {split}"
    pieces = _pieces(data, where)
    if not pieces:
        raise RnnkitError(f"{where}: no pieces (an empty corpus)")
    return pieces


def _pieces(data: object, where: str) -> list[Piece]:
    if not isinstance(data, list):
        raise RnnkitError(f"{where}: not the JSB layout: expected a list of pieces, "
                          f"got {type(data).__name__}")
    pieces = []
    for number, piece in enumerate(data):
        if not isinstance(piece, list) or not piece:
            raise RnnkitError(f"{where}[{number}]: not the JSB layout: expected a non-empty "
                              f"list of time steps, got {_short(piece)}")
        pieces.append([_step(step, f"{where}[{number}][{index}]")
                       for index, step in enumerate(piece)])
    return pieces


def _step(step: object, where: str) -> tuple[int, ...]:
    ok = isinstance(step, list) and all(
        isinstance(p, int) and not isinstance(p, bool) and 0 <= p <= 127 for p in step)
    if not ok:
        raise RnnkitError(f"{where}: not the JSB layout: expected a list of MIDI pitches "
                          f"(integers 0-127), got {_short(step)}")
    return tuple(sorted(set(step)))


def _short(value: object) -> str:
    text = json.dumps(value) if not isinstance(value, tuple) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


# ---------------------------------------------------------------------- MIDI


def _mido():
    try:
        import mido
    except ModuleNotFoundError:
        raise RnnkitError("MIDI files need the 'mido' package: pip install 'rnnkit[music]'") \
            from None
    return mido


def read_midi(path: str | Path, steps_per_quarter: int) -> tuple[Piece, dict[int, int]]:
    """A MIDI file as a piece (``steps_per_quarter`` steps a quarter note) and the track of
    each pitch (for messages). Drums (channel 10) are skipped.

    A note covers the steps from its onset to its end, each rounded to the nearest step (at
    least one step)."""
    mido = _mido()
    try:
        midi = mido.MidiFile(str(path))
    except FileNotFoundError:
        raise RnnkitError(f"{path}: file not found") from None
    except (OSError, EOFError, ValueError, KeyError, IndexError, TypeError) as err:
        raise RnnkitError(f"{path}: not a MIDI file that parses: {err}") from None
    step_ticks = midi.ticks_per_beat / steps_per_quarter
    notes, tracks = _midi_notes(midi, path), {}
    if not notes:
        raise RnnkitError(f"{path}: no notes in {len(midi.tracks)} track(s)")
    length = max(round(end / step_ticks) for _, _, end, _ in notes)
    steps: list[set[int]] = [set() for _ in range(max(length, 1))]
    for pitch, start, end, track in notes:
        first = round(start / step_ticks)
        last = max(round(end / step_ticks), first + 1)
        for index in range(first, min(last, len(steps))):
            steps[index].add(pitch)
        tracks.setdefault(pitch, track)
    return [tuple(sorted(s)) for s in steps], tracks


def _midi_notes(midi, path) -> list[tuple[int, int, int, int]]:
    """(pitch, start tick, end tick, track) of every note of every track."""
    notes = []
    for track_number, track in enumerate(midi.tracks):
        tick, sounding = 0, {}
        for message in track:
            tick += message.time
            if message.type not in ("note_on", "note_off") or message.channel == 9:
                continue
            key = (message.channel, message.note)
            if message.type == "note_on" and message.velocity > 0:
                sounding.setdefault(key, tick)
            elif key in sounding:
                notes.append((message.note, sounding.pop(key), tick, track_number))
        notes.extend((note, start, tick, track_number) for (_, note), start in sounding.items())
    return notes


def midi_bytes(piece: Piece, steps_per_quarter: int, tempo: float = 100.0, program: int = 0,
               velocity: int = 80) -> bytes:
    """A type-1 MIDI file of ``piece``: one track, ``tempo`` quarter notes a minute, General
    MIDI ``program`` (0 = acoustic grand piano); a pitch held over steps is one note."""
    mido = _mido()
    ticks = 480
    step_ticks = ticks // steps_per_quarter
    events = []
    for pitch, first, last in _notes_of(piece):
        events.append((first * step_ticks, 1, mido.Message("note_on", note=pitch,
                                                           velocity=velocity)))
        events.append((last * step_ticks, 0, mido.Message("note_off", note=pitch, velocity=0)))
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(tempo)),
                            mido.Message("program_change", program=program)])
    now = 0
    for tick, _, message in sorted(events, key=lambda e: (e[0], e[1], e[2].note)):
        track.append(message.copy(time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=max(0, len(piece) * step_ticks - now)))
    midi = mido.MidiFile(type=1, ticks_per_beat=ticks, tracks=[track])
    buffer = io.BytesIO()
    midi.save(file=buffer)
    return buffer.getvalue()


def _notes_of(piece: Piece) -> list[tuple[int, int, int]]:
    """(pitch, first step, end step) of each run of consecutive steps holding a pitch."""
    notes, started = [], {}
    for index, step in enumerate([*piece, ()]):
        for pitch in [p for p in started if p not in step]:
            notes.append((pitch, started.pop(pitch), index))
        for pitch in step:
            started.setdefault(pitch, index)
    return notes


# ---------------------------------------------------------------------- files and rolls


def piece_files(path: str | Path, suffixes: Sequence[str]) -> list[Path]:
    """``path`` itself, or the files with one of ``suffixes`` in the directory ``path``
    (sorted)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in suffixes)
        if not files:
            raise RnnkitError(f"{path}: no {'/'.join(suffixes)} files in this directory")
        return files
    if not path.exists():
        raise RnnkitError(f"{path}: file not found")
    return [path]


def check_range(pieces: Sequence[Piece], low: int, high: int, where: str,
                tracks: dict[int, int] | None = None) -> None:
    """RnnkitError naming ``where`` (and the piece, step, track) for a pitch outside
    ``low … high``."""
    for number, piece in enumerate(pieces):
        for index, step in enumerate(piece):
            for pitch in step:
                if not low <= pitch <= high:
                    track = f" track {tracks[pitch]}," if tracks and pitch in tracks else ""
                    raise RnnkitError(f"{where}: piece {number},{track} step {index}: pitch "
                                      f"{pitch} outside the model's range {low}-{high}")


def piano_roll(piece: Piece, low: int, high: int) -> torch.Tensor:
    """Multi-hot ``(T, P)`` float tensor of ``piece`` over pitches ``low … high``."""
    roll = torch.zeros(len(piece), high - low + 1)
    for index, step in enumerate(piece):
        roll[index, [p - low for p in step]] = 1.0
    return roll


def pieces_from_roll(roll: torch.Tensor, low: int) -> Piece:
    """The piece of a ``(T, P)`` multi-hot roll."""
    return [tuple(int(p) + low for p in torch.nonzero(row).flatten().tolist()) for row in roll]
