"""``rnnkit lm``: recurrent language models on your text, with truncated BPTT; text generation.

The pieces (token streams, the Trainer's task, stream loss, sampling) are in
:mod:`rnnkit.tasks.lm` and :mod:`rnnkit.tasks.lm_generate`; this file is the application.
"""

from __future__ import annotations

import math
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from rnnkit.apps.base import Application, Checkpoint, PrepareContext, Verb
from rnnkit.apps.registry import register
from rnnkit.data.corpus import ERRORS, encode_corpus, find_files
from rnnkit.data.tokenizers import TOKENIZERS
from rnnkit.errors import RnnkitError
from rnnkit.models.lm import LanguageModel, LMConfig, LMModelOptions
from rnnkit.tasks import lm
from rnnkit.tasks.lm_generate import SampleConfig, sample_text, unknown_symbols
from rnnkit.train.config import option, section

__all__ = ["LM", "LMOptions", "LMModel", "Loaded", "load_lm"]

EXAMPLES = """\
  rnnkit lm train --train input.txt --out runs/shakespeare
  rnnkit lm train --train corpus/ --glob "*.md" --valid valid.txt --out runs/md \\
      --tokenizer bpe --vocab-size 4000 --max-minutes 30
  rnnkit lm train --config run.toml --lr 1e-3          # flags override the TOML file
  rnnkit lm train --resume runs/shakespeare            # the run's options and directory
  rnnkit lm train --resume runs/shakespeare --max-minutes 30   # longer than first planned
  torchrun --nproc-per-node 2 -m rnnkit lm train --train input.txt --out runs/ddp
  rnnkit lm eval --checkpoint runs/shakespeare --data test.txt --json
  rnnkit lm generate --checkpoint runs/shakespeare --prime "ROMEO:" --max-tokens 300
  rnnkit lm generate --checkpoint runs/demo --prime "def " --top-p 0.9 --seed 1 --num-samples 3

run.toml holds the same options, with underscores:
  train = "input.txt"
  out = "runs/shakespeare"
  [model]
  hidden_size = 512
  [training]
  lr = 2e-3
  max_minutes = 15
"""


LMModel = LMModelOptions  # the model section, declared with the model


@dataclass
class LMOptions:
    """Data options of ``rnnkit lm train``, the model options in ``model``."""

    train: str = option("", "training text: a file, a directory, a glob, or several "
                            "(comma-separated)", aliases=("data",))
    valid: str | None = option(None, "validation text (default: the last --valid-fraction of "
                                     "--train)")
    valid_fraction: float = option(0.1, "share of --train held out for validation without "
                                        "--valid")
    glob: str = option("*.txt", "file pattern for directories given as --train / --valid")
    errors: str = option("strict", "invalid UTF-8: stop with an error, or replace it", ERRORS)
    tokenizer: str = option("char", "token unit", TOKENIZERS)
    vocab_size: int = option(8000, "word / bpe: vocabulary size")
    min_freq: int = option(1, "rarer symbols become <unk> (char, word)")
    bptt: int = option(128, "steps per truncated-BPTT chunk")
    random_bptt: bool = option(False, "vary the chunk length around --bptt")
    batch_size: int = option(32, "parallel streams per process")
    max_valid_tokens: int | None = option(None, "score about this many validation tokens, "
                                                "spread over the whole validation text")
    model: LMModelOptions = section(LMModelOptions, "model")

    def __post_init__(self) -> None:
        for name in ("bptt", "batch_size", "vocab_size", "min_freq"):
            if getattr(self, name) <= 0:
                raise ValueError(f"--{name.replace('_', '-')}: must be > 0, "
                                 f"got {getattr(self, name)}")
        if not 0 < self.valid_fraction < 1:
            raise ValueError(f"--valid-fraction: must be in (0, 1), got {self.valid_fraction}")
        if self.max_valid_tokens is not None and self.max_valid_tokens < 2:
            raise ValueError(f"--max-valid-tokens: must be >= 2, got {self.max_valid_tokens}")


@dataclass
class EvalOptions:
    data: str = option("", "text to evaluate on (file, dir, glob; required)")
    glob: str = option("*.txt", "file pattern for directories")
    errors: str = option("strict", "invalid UTF-8 handling", ERRORS)
    batch_size: int = option(32, "parallel streams")
    bptt: int | None = option(None, "chunk length (default: training's)")

    def __post_init__(self) -> None:
        if self.batch_size <= 0:
            raise ValueError(f"--batch-size: must be > 0, got {self.batch_size}")
        if self.bptt is not None and self.bptt <= 0:
            raise ValueError(f"--bptt: must be > 0, got {self.bptt}")


@dataclass
class GenerateOptions:
    prime: str = option("", "text to start from")
    max_tokens: int = option(200, "tokens to sample")
    temperature: float = option(0.8, "sampling temperature (0: greedy)")
    top_k: int = option(0, "sample among the k likeliest (0: all)")
    top_p: float = option(1.0, "nucleus sampling mass (1: off)")
    greedy: bool = option(False, "always take the likeliest token")
    seed: int | None = option(None, "seed for reproducible samples")
    num_samples: int = option(1, "how many samples")

    def __post_init__(self) -> None:
        if self.num_samples <= 0:
            raise ValueError(f"--num-samples: must be > 0, got {self.num_samples}")


@dataclass
class Loaded:
    model: LanguageModel
    tokenizer: Any
    options: LMOptions


@register("lm")
class LM(Application):
    summary = "language models: train, evaluate, generate text"
    description = "Recurrent language models on your text."
    examples = EXAMPLES
    Config = LMOptions
    EvalOptions = EvalOptions
    PredictOptions = GenerateOptions
    # a tied output layer may have kept the shared matrix under its own name
    word_embeddings = {"source": (lm.TOKENIZER_FILE, ("embedding.weight", "decoder.weight"))}

    def prepare(self, config: LMOptions, context: PrepareContext) -> lm.Prepared:
        tokenizer = (lm.read_tokenizer(context.resume.directory) if context.resume is not None
                     else None)
        return lm.prepare_data(config, tokenizer, context.out_dir / "cache")

    def build_model(self, config: LMOptions, data: lm.Prepared) -> LanguageModel:
        return LanguageModel(_model_config(config, data.tokenizer.vocab_size))

    def task(self, config: LMOptions, data: lm.Prepared, seed: int) -> lm.LanguageModelTask:
        model_config = _model_config(config, data.tokenizer.vocab_size)
        return lm.LanguageModelTask(config, model_config, data, seed)

    def saved_values(self, saved: dict) -> dict:
        if "options" in saved or "lm" not in saved:
            return super().saved_values(saved)
        # a run from before the application contract: its options were under "lm", flat
        values = dict(saved["lm"])
        values["train"] = values.pop("data", "")
        return values

    def load(self, checkpoint: Checkpoint) -> Loaded:
        tokenizer = lm.read_tokenizer(checkpoint.directory)
        model = lm.model_from(checkpoint.directory, checkpoint.saved, tokenizer)
        return Loaded(checkpoint.load_weights(model), tokenizer, checkpoint.options)

    def evaluate(self, loaded: Loaded, options: EvalOptions) -> dict[str, float]:
        """Loss (nats/token), perplexity and bits per character on ``options.data``."""
        if not options.data:
            raise RnnkitError("--data: required (a file, a directory or a glob)")
        bptt = options.bptt or loaded.options.bptt
        files = find_files(options.data, options.glob)
        with tempfile.TemporaryDirectory(prefix="rnnkit-eval-") as cache_dir:
            corpus = encode_corpus(files, loaded.tokenizer, Path(cache_dir), "eval",
                                   options.errors)
            if len(corpus.tokens) < 2:
                raise RnnkitError(f"--data {options.data}: too short to evaluate (fewer than 2 "
                                  "tokens)")
            with torch.no_grad():
                loss = lm.stream_loss(loaded.model, corpus.tokens, options.batch_size, bptt)
            tokens, chars = len(corpus.tokens), corpus.chars
            del corpus  # release the memmap before the directory goes
        return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)),
                "bpc": loss * tokens / chars / math.log(2), "tokens": tokens, "chars": chars}

    def format_metrics(self, metrics: dict) -> str:
        return (f"loss {metrics['loss']:.4f} nats/token  perplexity {metrics['perplexity']:.3f}"
                f"  bits/char {metrics['bpc']:.4f}  ({metrics['tokens']} tokens, "
                f"{metrics['chars']} chars)")

    def predict(self, loaded: Loaded, options: GenerateOptions):
        """Samples of text, streamed token by token."""
        sampling = SampleConfig(options.max_tokens, options.temperature, options.top_k,
                                options.top_p, options.greedy, options.seed)
        unknown = unknown_symbols(loaded.tokenizer, options.prime)
        if unknown:
            shown = ", ".join(repr(u) for u in unknown[:10]) + (" …" if len(unknown) > 10 else "")
            print(f"rnnkit: note: --prime: {shown} never seen in training, read as <unk>",
                  file=sys.stderr)
        for index in range(options.num_samples):
            if options.num_samples > 1:
                yield f"--- sample {index + 1} ---\n"
            if options.seed is not None:
                sampling.seed = options.seed + index
            yield from sample_text(loaded.model, loaded.tokenizer, options.prime, sampling)
            yield "\n"

    def predict_text(self, loaded: Loaded, options: GenerateOptions, text: str):
        """``rnnkit serve``: the request's text is the prompt (``prime``)."""
        from dataclasses import replace

        return self.predict(loaded, replace(options, prime=text) if text else options)

    def export_graphs(self, loaded: Loaded):
        """One step: ``tokens`` ``(T, B)`` and the state → ``logits`` ``(T, B, V)`` and the new
        state (T = 1 per generated token; a prompt may go in at once)."""
        from rnnkit.apps.base import ExportGraph
        from rnnkit.models.exportable import LMStep, outputs_of

        model, cfg = loaded.model.cpu().eval(), loaded.model.config
        if cfg.softmax == "adaptive":
            raise RnnkitError("rnnkit export: a language model with --softmax adaptive has no "
                              "fixed-graph export (--softmax full or sampled)")
        lstm = cfg.cell == "lstm"
        generator = torch.Generator().manual_seed(0)
        tokens = torch.randint(0, cfg.vocab_size, (3, 2), generator=generator)  # (T, B)
        states = [0.1 * torch.randn(cfg.num_layers, 2, cfg.hidden_size, generator=generator)
                  for _ in range(2 if lstm else 1)]  # (L, B, H)
        names = ["h", "c"][: len(states)]

        def reference(tokens, *state):
            return outputs_of(model(tokens, tuple(state) if lstm else state[0]))

        axes = {"tokens": {0: "length", 1: "batch"}, "logits": {0: "length", 1: "batch"}}
        axes.update({n: {1: "batch"} for n in names + [f"{n}_out" for n in names]})
        return [ExportGraph("step", LMStep(model).eval(), (tokens, *states), ["tokens", *names],
                            ["logits", *[f"{n}_out" for n in names]], axes, reference,
                            "tokens (T, B) int64 ids of the tokenizer in tokenizer.json; state "
                            "(L, B, H) zeros at the start, then fed back; logits (T, B, V)")]

    def verbs(self) -> list[Verb]:
        from rnnkit.apps import lm_demo

        return [Verb("generate", "sample text from a checkpoint", GenerateOptions, self.predict),
                Verb("demo", "train a character LSTM on Python's own source, then write code",
                     lm_demo.DemoConfig, _run_demo, lm_demo.EXAMPLES, output=False,
                     checkpoint=False, top_level=True)]

    def inspect(self, loaded: Loaded, config):
        """Top-k next-token predictions at every position; the gradient flow of the text's own
        next-token loss."""
        from rnnkit.diagnostics import inspect as di

        model, tokenizer, notes = loaded.model, loaded.tokenizer, []
        ids = di.limit_symbols([int(i) for i in tokenizer.encode(config.text)], config, notes)
        if not ids:
            raise RnnkitError(f"{config.source}: no tokens in the text")
        tokens = torch.tensor(ids, dtype=torch.long).unsqueeze(1)  # (T, 1)
        with di.Capture(di.top_layer(model)) as capture, torch.no_grad():
            logits, _ = model(tokens)  # (T, 1, V)
        probs = torch.softmax(logits[:, 0].float(), dim=-1)  # (T, V)
        symbols = [tokenizer.decode([i]) for i in ids]
        predictions, table = [], []
        for t, symbol in enumerate(symbols):
            text, cells = di.top_k_cells(probs[t], config.top_k, lambda i: tokenizer.decode([i]))
            actual = f"{float(probs[t - 1, ids[t]]):.2f}" if t > 0 else ""
            predictions.append(text)
            table.append([str(t), repr(symbol), actual, *cells])

        def loss_fn(m, _):
            out, _ = m(tokens)
            if len(ids) < 2:
                return out.float().logsumexp(-1).sum()
            return torch.nn.functional.cross_entropy(out[:-1, 0].float(), tokens[1:, 0])

        header = ["t", "symbol", "p(symbol)", *[f"#{k + 1} next" for k in range(config.top_k)]]
        return di.InspectRun(model, symbols, capture.output, predictions, loss_fn, table=table,
                             table_title=f"Top-{config.top_k} next-token predictions",
                             table_header=header, notes=notes,
                             loss_note="next-token loss of the input")


def load_lm(path: str, device: str = "cpu") -> Loaded:
    """A trained language model for another application's ``--init-from``
    (:func:`rnnkit.models.transfer.initialise`): ``.model`` and ``.tokenizer`` of checkpoint (or
    run) ``path``; a checkpoint of another application is refused with its path."""
    from rnnkit.apps import runner

    return runner.load(LM.name, path, device)


def _run_demo(_: None, options) -> None:
    from rnnkit.apps.lm_demo import run_demo

    run_demo(options)


def _model_config(config: LMOptions, vocab_size: int) -> LMConfig:
    try:
        values = asdict(config.model)
        values["cutoffs"] = _cutoffs(values.get("cutoffs", ""))
        return LMConfig(vocab_size, **values)
    except ValueError as err:
        raise RnnkitError(str(err)) from None


def _cutoffs(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"--cutoffs: expected comma-separated integers, got {text!r}") from None
