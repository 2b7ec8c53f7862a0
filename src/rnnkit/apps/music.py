"""``rnnkit music``: polyphonic piano-roll models (JSB Chorales, MIDI) and ABC folk-tune models.

Two kinds of model, chosen by the training data's format (``--format`` or detected):

- piano roll (``jsb``, ``midi``): :class:`~rnnkit.models.music.PianoRollRNN` with an
  independent-Bernoulli or an RNN-NADE output (``--distribution``); metric: NLL per time step;
- ABC tokens (``abc``): the language model of :mod:`rnnkit.models.lm` over folk-rnn-style tokens
  (:mod:`rnnkit.data.music_abc`); metric: NLL per token and bits per character.

``eval`` scores a split, ``predict`` prints the NLL of every step of its input, ``generate``
samples new pieces (temperature, seed, primer) as MIDI plus a piano-roll PNG, JSON steps or ABC.
MIDI needs ``mido`` and the ABC parse check ``music21`` (the ``music`` extra).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from rnnkit.apps import Application, Checkpoint, PrepareContext, Verb, register
from rnnkit.apps.music_tasks import (
    FORMATS,
    AbcTask,
    RollTask,
    characters,
    detect_format,
    read_rolls,
    read_tunes,
    roll_nll,
    token_nll,
)
from rnnkit.data.vocab import BOS, EOS, PAD, UNK, Vocabulary
from rnnkit.errors import RnnkitError
from rnnkit.models._config import cell_options
from rnnkit.models.lm import LanguageModel, LMConfig
from rnnkit.models.music import PianoRollConfig, PianoRollOptions, PianoRollRNN
from rnnkit.train.config import option, section

__all__ = ["Music", "MusicConfig", "MusicModel"]


@dataclass(kw_only=True)
class MusicModel(PianoRollOptions):
    """Model options of ``rnnkit music``: the piano-roll model's, and the ABC token LM's
    embedding size (the ABC LM shares the cell, sizes and dropout)."""

    embedding_size: int = option(64, "ABC: token embedding size")

    def __post_init__(self) -> None:
        for name in ("hidden_size", "num_layers", "nade_hidden", "embedding_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')}: must be >= 1, "
                                 f"got {getattr(self, name)}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"--dropout: must be in [0, 1), got {self.dropout}")
        super().__post_init__()  # the cell options


@dataclass
class MusicConfig:
    train: str = option("", "training data: a JSB-layout .json (its 'train' pieces), .mid "
                        "files, or .abc files (a directory with split.txt: its train tunes)")
    valid: str = option("", "validation data (default: the 'valid' part of --train where it "
                        "has one)", aliases=("dev",))
    format: str = option("auto", "data format (auto: from the file suffixes)", FORMATS)
    steps_per_quarter: int = option(1, "MIDI: time steps per quarter note (reading and "
                                    "writing)")
    low_pitch: int = option(21, "piano roll: lowest MIDI pitch (21 = A0)")
    high_pitch: int = option(108, "piano roll: highest MIDI pitch (108 = C8)")
    batch_size: int = option(16, "pieces per batch")
    model: MusicModel = section(MusicModel, "model")

    def __post_init__(self) -> None:
        if not 0 <= self.low_pitch <= self.high_pitch <= 127:
            raise ValueError(f"--low-pitch/--high-pitch: expected 0 <= low <= high <= 127, got "
                             f"{self.low_pitch}, {self.high_pitch}")
        for name in ("steps_per_quarter", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')}: must be >= 1, "
                                 f"got {getattr(self, name)}")


@dataclass
class EvalOptions:
    data: str = option("", "data to score (default: the run's --valid or --train)")
    split: str = option("test", "the part of --data to score where it has parts (JSB keys, "
                        "split.txt)", ("train", "valid", "test"))


@dataclass
class PredictOptions:
    input: str = option("", "pieces to score step by step (.json, .mid or .abc)")
    split: str = option("test", "the part of --input where it has parts",
                        ("train", "valid", "test"))


@dataclass
class GenerateOptions:
    steps: int = option(0, "time steps (piano roll; default 64) or at most this many tokens "
                        "(ABC; default 600)")
    bars: int = option(0, "stop after this many bars (piano roll: 4/4 bars of "
                       "4 x --steps-per-quarter steps; ABC: bar lines)")
    temperature: float = option(1.0, "sampling temperature (< 1: safer, > 1: wilder)")
    seed: int = option(0, "random seed (the same seed gives the same pieces)")
    prime: str = option("", "primer: a .mid/.json file (piano roll), an .abc file or header "
                        "text like 'M:6/8 K:Dmaj' (ABC)")
    num_samples: int = option(1, "pieces to generate")
    midi: str = option("", "write MIDI here (song.mid; song-1.mid, song-2.mid … for several "
                       "samples); piano roll: a piano-roll PNG beside each; ABC: converted "
                       "by music21")
    tempo: float = option(100.0, "MIDI tempo, quarter notes a minute")
    program: int = option(0, "MIDI General MIDI program (instrument; 0 = piano, 19 = organ)")
    velocity: int = option(80, "MIDI note velocity (1-127)")
    report: bool = option(False, "piano roll, with --midi: also an HTML page per piece (the "
                          "piano roll and the model's NLL of every step)")
    output: str = option("-", "where to write: song.mid (MIDI, as --midi), or a text file "
                         "for JSON steps / ABC tunes (- = stdout, streamed)")

    def __post_init__(self) -> None:
        checks = {"steps": self.steps >= 0, "bars": self.bars >= 0,
                  "temperature": self.temperature > 0, "num_samples": self.num_samples >= 1,
                  "tempo": self.tempo > 0, "program": 0 <= self.program <= 127,
                  "velocity": 1 <= self.velocity <= 127}
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"--{name.replace('_', '-')}: out of range, "
                                 f"got {getattr(self, name)}")


def _format(config: MusicConfig) -> str:
    if not config.train:
        raise RnnkitError("--train: required (a .json, .mid or .abc file, or a directory)")
    return detect_format(config.train, config.format, "--train")


def _valid_path(config: MusicConfig, fmt: str) -> str:
    if config.valid:
        return config.valid
    if fmt == "jsb" or (fmt == "abc" and (_dir_split(config.train))):
        return config.train
    raise RnnkitError("--valid: required for MIDI or ABC data without a split")


def _dir_split(path: str) -> bool:
    from pathlib import Path

    return (Path(path) / "split.txt").exists()


def _generate(loaded, options: GenerateOptions):
    """``generate`` with ``--output``: a ``.mid`` name is the MIDI file (as ``--midi``); any
    other name receives the text, whole or not at all; ``-`` streams it."""
    from dataclasses import replace

    from rnnkit._io import write_output
    from rnnkit.apps.music_generate import generate

    if options.output.lower().endswith((".mid", ".midi")):
        return generate(loaded, replace(options, midi=options.output, output="-"))
    pieces = generate(loaded, options)
    if options.output == "-":
        return pieces
    write_output("--output", options.output, "".join(pieces))
    return None


def _roll_config(config: MusicConfig) -> PianoRollConfig:
    values = asdict(config.model)
    del values["embedding_size"]  # the ABC LM's
    return PianoRollConfig(config.high_pitch - config.low_pitch + 1, **values)


def _lm_config(config: MusicConfig, vocab_size: int) -> LMConfig:
    model = config.model
    cell = "rnn_tanh" if model.cell == "rnn" else model.cell
    return LMConfig(vocab_size, cell=cell, embedding_size=model.embedding_size,
                    hidden_size=model.hidden_size, num_layers=model.num_layers,
                    dropout=model.dropout, **cell_options(model))


@register("music")
class Music(Application):
    summary = "compose music: piano-roll chorales (MIDI out) and ABC folk tunes"
    description = __doc__.split("\n\n")[0]
    examples = """\
  rnnkit music train --train jsb-chorales-quarter.json --out runs/jsb --distribution nade
  rnnkit music eval --checkpoint runs/jsb --data jsb-chorales-quarter.json --split test
  rnnkit music generate --checkpoint runs/jsb --steps 64 --temperature 0.8 --midi song.mid
  rnnkit music train --train nottingham-abc/ --out runs/abc
  rnnkit music generate --checkpoint runs/abc --prime 'M:6/8 K:Dmaj' --num-samples 5
"""
    Config = MusicConfig
    EvalOptions = EvalOptions
    PredictOptions = PredictOptions
    # rnnkit serve: generate's MIDI (and piano-roll PNG) come back as files; a primer is sent
    serve_uploads = {"generate": {"prime": ".mid"}}
    serve_downloads = {"generate": {"midi": "song.mid"}}

    # ---------------------------------------------------------------- training

    def prepare(self, config: MusicConfig, context: PrepareContext):
        fmt = _format(config)
        valid = _valid_path(config, fmt)
        valid_fmt = detect_format(valid, fmt if config.format != "auto" else "auto", "--valid")
        if (valid_fmt == "abc") != (fmt == "abc"):
            raise RnnkitError(f"--valid {valid}: a {valid_fmt} corpus beside a {fmt} --train")
        if fmt == "abc":
            return self._prepare_abc(config, valid, context)
        pitch_range = (config.low_pitch, config.high_pitch)
        return {"kind": "roll",
                "train": read_rolls(config.train, fmt, "train", config.steps_per_quarter,
                                    pitch_range),
                "valid": read_rolls(valid, valid_fmt, "valid", config.steps_per_quarter,
                                    pitch_range)}

    def _prepare_abc(self, config: MusicConfig, valid: str, context: PrepareContext):
        train = read_tunes(config.train, "train")
        valid_tunes = read_tunes(valid, "valid")
        if context.resume is not None:
            vocab = Vocabulary.from_json(context.resume.read_json("vocab.json"))
        else:
            vocab = Vocabulary.build([t.tokens for t in train], specials=(PAD, UNK, BOS, EOS))
        return {"kind": "abc", "vocab": vocab, "train": train, "valid": valid_tunes}

    def build_model(self, config: MusicConfig, data):
        if data["kind"] == "abc":
            return LanguageModel(_lm_config(config, len(data["vocab"])))
        return PianoRollRNN(_roll_config(config))

    def task(self, config: MusicConfig, data, seed: int):
        return (AbcTask if data["kind"] == "abc" else RollTask)(config, data, seed)

    # ---------------------------------------------------------------- after training

    def load(self, checkpoint: Checkpoint):
        config: MusicConfig = checkpoint.options
        if checkpoint.saved.get("kind") == "abc":
            vocab = Vocabulary.from_json(checkpoint.read_json("vocab.json"))
            model = checkpoint.load_weights(LanguageModel(_lm_config(config, len(vocab))))
            return {"kind": "abc", "model": model, "vocab": vocab, "config": config,
                    "device": checkpoint.device}
        model = checkpoint.load_weights(PianoRollRNN(_roll_config(config)))
        return {"kind": "roll", "model": model, "config": config, "device": checkpoint.device}

    def _data(self, loaded, path: str, split: str, option_name: str):
        config: MusicConfig = loaded["config"]
        path = path or config.valid or config.train
        fmt = detect_format(path, "auto", option_name)
        if (fmt == "abc") != (loaded["kind"] == "abc"):
            raise RnnkitError(f"{option_name} {path}: {fmt} data for a "
                              f"{'ABC' if loaded['kind'] == 'abc' else 'piano-roll'} model")
        if fmt == "abc":
            return read_tunes(path, split)
        return read_rolls(path, fmt, split, config.steps_per_quarter,
                          (config.low_pitch, config.high_pitch))

    def evaluate(self, loaded, options: EvalOptions):
        import torch

        data = self._data(loaded, options.data, options.split, "--data")
        model, device = loaded["model"], loaded["device"]
        with torch.no_grad():
            if loaded["kind"] == "abc":
                total, count = token_nll(model, loaded["vocab"], data, device=device)
                chars = sum(characters(t) for t in data)
                return {"nll_per_token": total / count,
                        "bits_per_char": total / chars / math.log(2),
                        "tokens": count, "characters": chars, "tunes": len(data)}
            config = loaded["config"]
            total, steps, _ = roll_nll(model, data, config.low_pitch, config.high_pitch,
                                       device=device)
        return {"nll_per_step": total / steps, "bits_per_step": total / steps / math.log(2),
                "steps": steps, "pieces": len(data)}

    def predict(self, loaded, options: PredictOptions):
        """Tab-separated ``piece step nll`` lines (nats; the first step of a piece is
        predicted from nothing)."""
        import torch

        if loaded["kind"] == "abc":
            raise RnnkitError("predict: scores piano-roll models; use eval for an ABC model")
        if not options.input:
            raise RnnkitError("--input: required (a .json or .mid file)")
        pieces = self._data(loaded, options.input, options.split, "--input")
        config = loaded["config"]
        with torch.no_grad():
            _, _, per_piece = roll_nll(loaded["model"], pieces, config.low_pitch,
                                       config.high_pitch, device=loaded["device"])
        yield "piece\tstep\tnll\n"
        for number, nll in enumerate(per_piece):
            for step, value in enumerate(nll.tolist()):
                yield f"{number}\t{step}\t{value:.4f}\n"

    def export_graphs(self, loaded):
        """ABC: the language model's step (as ``rnnkit lm``). Piano roll: ``step`` (previous
        step ``(B, T, P)``, state → hidden ``(B, T, H)``, new state) and ``head`` (hidden [,
        the pitches chosen so far, RNN-NADE] → logits ``(B, T, P)``); sampling stays outside."""
        import torch

        from rnnkit.apps.base import ExportGraph
        from rnnkit.models.exportable import LMStep, RollHead, RollStep, outputs_of

        model = loaded["model"].cpu().eval()
        generator = torch.Generator().manual_seed(0)
        lstm = model.rnn.mode == "LSTM"
        rnn = model.rnn
        names = ["h", "c"][: 2 if lstm else 1]
        states = tuple(0.1 * torch.randn(rnn.num_layers, 2, rnn.hidden_size,
                                         generator=generator) for _ in names)
        axes = {n: {1: "batch"} for n in names + [f"{n}_out" for n in names]}
        outs = [f"{n}_out" for n in names]
        if loaded["kind"] == "abc":
            tokens = torch.randint(0, model.config.vocab_size, (3, 2), generator=generator)
            return [ExportGraph("step", LMStep(model).eval(), (tokens, *states),
                                ["tokens", *names], ["logits", *outs],
                                {"tokens": {0: "length", 1: "batch"},
                                 "logits": {0: "length", 1: "batch"}, **axes},
                                lambda t, *s: outputs_of(model(t, s if lstm else s[0])),
                                "tokens (T, B): ids of vocab.json; state zeros at the start, "
                                "then fed back; logits (T, B, V) of the next token")]
        pitches = model.config.pitches
        previous = torch.bernoulli(torch.full((2, 3, pitches), 0.2), generator=generator)
        hidden = torch.randn(2, 3, rnn.hidden_size, generator=generator)
        head = RollHead(model).eval()
        head_inputs = (hidden, previous) if head.nade else (hidden,)
        sequence = {0: "batch", 1: "length"}
        return [ExportGraph("step", RollStep(model).eval(), (previous, *states),
                            ["previous", *names], ["hidden", *outs],
                            {"previous": sequence, "hidden": sequence, **axes},
                            lambda x, *s: outputs_of(rnn(x, s if lstm else s[0])),
                            f"previous (B, T, {pitches}): 0/1 pitches low_pitch… of the step "
                            "before (zeros before the first); state zeros, then fed back"),
                ExportGraph("head", head, head_inputs, ["hidden", "chosen"][: len(head_inputs)],
                            ["logits"], {"hidden": sequence, "chosen": sequence,
                                         "logits": sequence} if head.nade else
                            {"hidden": sequence, "logits": sequence},
                            model.head.logits if head.nade else model.head.linear,
                            "sample each pitch k with p = sigmoid(logits[k] / temperature); "
                            "RNN-NADE: logits[k] reads chosen[< k], so walk k upwards, "
                            "calling the head again after each choice")]

    def verbs(self) -> list[Verb]:

        return [Verb("generate", "sample new pieces (MIDI + PNG, JSON steps, or ABC text)",
                     GenerateOptions, _generate,
                     examples="  rnnkit music generate --checkpoint runs/jsb --bars 8 "
                              "--temperature 0.9 --seed 3 --output song.mid\n"
                              "  rnnkit music generate --checkpoint runs/abc --prime "
                              "'M:6/8 K:Dmaj' --output tunes.abc\n")]
