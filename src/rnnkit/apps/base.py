"""The application contract: what one application (``lm``, ``tag``, ``forecast``, …) supplies.

An application is one subclass of :class:`Application` in one file, registered by name::

    from rnnkit.apps import Application, register

    @register("reverse")
    class Reverse(Application):
        summary = "reverse a token sequence (a toy)"
        Config = ReverseConfig                # data options, model options nested (section())

        def prepare(self, config, context): ...      # read + validate files → prepared data
        def build_model(self, config, data): ...     # nn.Module from rnnkit.nn layers
        def task(self, config, data): ...            # the Trainer's Task (loss per batch)
        def load(self, checkpoint): ...              # a trained model ready to use
        def evaluate(self, loaded, options): ...     # {metric name: value}
        def predict(self, loaded, options): ...      # text pieces, streamed

and one line in :data:`rnnkit.apps.registry.BUILTIN`. For that it gets, with no code of its own:
``rnnkit reverse train|eval|predict`` with ``--help``, ``--config`` TOML, ``--resume`` (the run's
saved options, flags override), seeding, torchrun, checkpoints, the progress bar, metrics,
``loss.png``, the diagnostics callback, ``--json`` metrics, atomic ``--output`` and the inspect
report (:meth:`Application.inspect`). See ``docs/architecture.md``, "Adding an application".

Everything here is called by :mod:`rnnkit.apps.runner` (training, loading) and by the command
line builder :mod:`rnnkit.cli.builder`; an application never parses arguments itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from rnnkit._options import leaf_fields
from rnnkit.errors import RnnkitError
from rnnkit.train import checkpoint as ckpt
from rnnkit.train.config import build_config
from rnnkit.train.distributed import Shard

if TYPE_CHECKING:
    import torch
    from torch import nn

    from rnnkit.diagnostics.inspect import InspectConfig, InspectRun
    from rnnkit.train.api import Task

__all__ = ["Application", "PrepareContext", "Checkpoint", "Verb", "NoOptions", "ExportGraph"]


@dataclass
class NoOptions:
    """Options of a verb that takes none beyond ``--checkpoint``, ``--device`` and ``--output``."""


@dataclass
class PrepareContext:
    """What :meth:`Application.prepare` may use besides its config.

    Attributes:
        out_dir: the run directory (a cache may go in ``out_dir / "cache"``).
        shard: this process's part under torchrun (rank, world size).
        resume: the checkpoint being resumed (its ``last/``), or None: vocabularies, scalers and
            id maps must then come from it, not be rebuilt from the data.
        seed: the run's seed (``--seed``), for any random split made here.
    """

    out_dir: Path
    shard: Shard
    resume: Checkpoint | None = None
    seed: int = 0


@dataclass
class Checkpoint:
    """A checkpoint directory opened for an application: its saved config and files.

    Attributes:
        directory: the checkpoint directory (``RUN/best`` or ``RUN/last``).
        saved: ``config.json`` as written by the Trainer and the runner.
        options: the application's config the run was trained with (typed, rebuilt from
            ``saved["options"]``).
        device: where :meth:`load_weights` puts the model.
        given: the path as the user gave it (for messages).
    """

    directory: Path
    saved: dict[str, Any]
    options: Any
    device: torch.device
    given: str = ""

    def read_json(self, name: str) -> Any:
        """A JSON file the task saved beside the weights (``vocab.json``, …)."""
        return ckpt.read_json(self.directory / name)

    def has(self, name: str) -> bool:
        return (self.directory / name).exists()

    def load_weights(self, model: nn.Module) -> nn.Module:
        """``model`` with the checkpoint's weights, on :attr:`device`, in eval mode."""
        ckpt.load_weights(self.directory, model)
        return model.to(self.device).eval()


@dataclass
class Verb:
    """An application's own command beside ``train``/``eval``/``predict`` (``lm generate``,
    ``translate chat``).

    ``run(loaded, options)`` gets what :meth:`Application.load` returned (None for a verb
    without ``checkpoint``) and the parsed ``Options`` dataclass, and returns text pieces,
    streamed to ``--output`` (stdout by default), or None when it wrote its own output (an
    interactive loop). A ``top_level`` verb is also a command of its own (``rnnkit chat``).
    """

    name: str
    help: str
    Options: type
    run: Callable[[Any, Any], Iterable[str] | None]
    examples: str = ""
    output: bool = True  # takes --output (False: an interactive verb that writes its own)
    checkpoint: bool = True  # works on a trained model (False: ``run(None, options)``)
    top_level: bool = False  # also ``rnnkit VERB`` (``rnnkit chat``, ``rnnkit demo``)


@dataclass
class ExportGraph:
    """One fixed graph of a trained model, for ``rnnkit export`` (ONNX, TorchScript).

    Attributes:
        name: the graph's name (``step``, ``encoder``, ``decoder_step``, …); a file suffix
            when an application exports several.
        module: a ``torch.nn.Module`` in eval mode built only of exportable ``torch`` modules
            (rnnkit layers mapped by :mod:`rnnkit.nn.exportable`); ``module(*inputs)``
            returns a tensor or a tuple of tensors, named by ``output_names``.
        inputs: example inputs (tensors), traced and used for the parity check.
        input_names / output_names: names of the graph's inputs and outputs.
        dynamic_axes: ``{name: {axis: "batch" | "length" | …}}`` for inputs and outputs.
        reference: the rnnkit model itself on the same inputs (same outputs, same order): the
            parity check compares the exported graph with it.
        notes: one line for the manifest (how to drive the graph: state, ids).
    """

    name: str
    module: nn.Module
    inputs: tuple
    input_names: list[str]
    output_names: list[str]
    dynamic_axes: dict[str, dict[int, str]]
    reference: Callable[..., Any]
    notes: str = ""


class Application:
    """Base class of every application; override what the class docstring of the module lists.

    Class attributes:
        name: set by :func:`~rnnkit.apps.registry.register`; the command (``rnnkit NAME``) and
            the ``task`` written to every checkpoint's ``config.json``.
        summary: one line for ``rnnkit --help``.
        description: a paragraph for ``rnnkit NAME --help``.
        examples: the command lines shown by ``--help``.
        Config: the dataclass of data and model options (model options in a ``section``),
            built from defaults ← ``--config`` TOML ← flags (← the saved run on ``--resume``).
        EvalOptions / PredictOptions: dataclasses of ``eval`` / ``predict`` options (their
            fields become flags; ``--checkpoint``, ``--device``, ``--json`` and ``--output``
            are added by the builder).
        batch_unit: how ``rnnkit serve`` may merge concurrent ``predict`` requests into one
            call (:mod:`rnnkit.deploy.batching`): ``"line"``, each non-blank input line gives
            one output line; ``"block"``, blank-line separated blocks in and out; ``""``, never.
        serve_uploads / serve_downloads: ``{verb: {option: suffix or file name}}``, the options
            of a route that name a file the HTTP request sends (written to a temporary file) or
            one the run writes (sent back, base64), for ``rnnkit serve``.
        word_embeddings: ``{side: (vocabulary file, weight names)}``, where a checkpoint keeps
            its words and their embedding matrix (``"source"``; a translation model also
            ``"target"``), for ``rnnkit vectors export``; the first weight name present is used.
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    description: ClassVar[str] = ""
    examples: ClassVar[str] = ""
    Config: ClassVar[type] = NoOptions
    EvalOptions: ClassVar[type] = NoOptions
    PredictOptions: ClassVar[type] = NoOptions
    batch_unit: ClassVar[str] = ""
    serve_uploads: ClassVar[dict[str, dict[str, str]]] = {}
    serve_downloads: ClassVar[dict[str, dict[str, str]]] = {}
    word_embeddings: ClassVar[dict[str, tuple[str, tuple[str, ...]]]] = {}

    # ---------------------------------------------------------------- training

    def prepare(self, config: Any, context: PrepareContext) -> Any:
        """Read and validate the training data (errors name file:line), build vocabularies or
        features; returns whatever :meth:`build_model` and :meth:`task` need."""
        raise NotImplementedError

    def build_model(self, config: Any, data: Any) -> nn.Module:
        """The model for ``config`` and the prepared ``data`` (called after seeding)."""
        raise NotImplementedError

    def task(self, config: Any, data: Any, seed: int) -> Task:
        """The :class:`~rnnkit.train.Task` the Trainer runs: batches, loss, validation metrics,
        and the files that rebuild the model (``checkpoint_files``)."""
        raise NotImplementedError

    # ---------------------------------------------------------------- after training

    def load(self, checkpoint: Checkpoint) -> Any:
        """A trained model ready for :meth:`evaluate`, :meth:`predict` and the verbs."""
        raise NotImplementedError

    def load_ensemble(self, checkpoints: list[Checkpoint]) -> Any:
        """Several checkpoints used as one (``--checkpoint`` given more than once); only
        applications with ensembles override it."""
        raise RnnkitError(f"--checkpoint: rnnkit {self.name} takes one checkpoint, got "
                          f"{len(checkpoints)}")

    def load_members(self, checkpoints: list[Checkpoint],
                     agree: dict[str, Callable[[Any], Any]]) -> list[Any]:
        """Each checkpoint :meth:`load`-ed, for a :meth:`load_ensemble`: every one after the
        first must give the first's value of each ``agree`` entry (what it is → how to read it
        from a loaded model), else an error naming the checkpoint and what differs."""
        members = [self.load(checkpoints[0])]
        for checkpoint in checkpoints[1:]:
            member = self.load(checkpoint)
            for what, read in agree.items():
                if read(member) != read(members[0]):
                    raise RnnkitError(f"--checkpoint {checkpoint.given or checkpoint.directory}: "
                                      f"{what} differs from the first checkpoint's; the models "
                                      "of an ensemble must agree on it")
            members.append(member)
        return members

    def evaluate(self, loaded: Any, options: Any) -> dict[str, Any]:
        """Named metrics (numbers, or nested tables a person reads with ``--json``)."""
        raise NotImplementedError

    def predict(self, loaded: Any, options: Any) -> Iterable[str]:
        """Predictions as text pieces, yielded as they are made (streamed to stdout)."""
        raise NotImplementedError

    def format_metrics(self, metrics: dict[str, Any]) -> str:
        """How ``eval`` prints ``metrics`` without ``--json`` (default: one ``name value``
        line per number)."""
        lines = []
        for key, value in metrics.items():
            if isinstance(value, float):
                lines.append(f"{key:<24} {value:.4f}")
            elif isinstance(value, int | str):
                lines.append(f"{key:<24} {value}")
        return "\n".join(lines)

    def verbs(self) -> list[Verb]:
        """The application's own commands (default: none)."""
        return []

    def inspect(self, loaded: Any, config: InspectConfig) -> InspectRun:
        """Run the model over ``config.text`` for the HTML report: what only this application
        knows (its symbols, predictions, a loss for the gradient flow), built with the helpers
        of :mod:`rnnkit.diagnostics.inspect`; or, for an input that is no text (a WAV path), a
        whole :class:`~rnnkit.diagnostics.report.Report`. Optional: without it ``rnnkit
        inspect`` shows the run."""
        raise RnnkitError(f"rnnkit inspect: the {self.name} application has no report")

    # ---------------------------------------------------------------- deployment

    def export_graphs(self, loaded: Any) -> list[ExportGraph]:
        """The fixed graphs of a trained model for ``rnnkit export`` (optional; see
        :class:`ExportGraph`); the vocabularies and config travel beside them as JSON."""
        raise RnnkitError(f"rnnkit export: the {self.name} application has no fixed-graph "
                          "export")

    def predict_text(self, loaded: Any, options: Any, text: str) -> Iterable[str]:
        """:meth:`predict` on ``text`` given directly (``rnnkit serve``) instead of the file
        the options name. Default: ``text`` goes where ``options.input`` (a path, ``-`` =
        stdin) would be read, through a temporary file; override when the text is an option
        itself (a prompt). Yields what :meth:`predict` yields."""
        fields = {f.name for f in dataclasses.fields(options)}
        if "input" not in fields:
            if text:
                raise RnnkitError(f"text: the {self.name} application's predict reads no "
                                  "input text; give its options only")
            yield from self.predict(loaded, options)
            return
        import os
        import tempfile

        handle, path = tempfile.mkstemp(prefix="rnnkit-serve-", suffix=".txt")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as file:
                file.write(text if text.endswith("\n") or not text else text + "\n")
            yield from self.predict(loaded, dataclasses.replace(options, input=path))
        except RnnkitError as err:  # name the request's text, not the temporary file
            raise RnnkitError(str(err).replace(path, "text")) from None
        finally:
            os.unlink(path)

    # ---------------------------------------------------------------- helpers

    def saved_values(self, saved: dict[str, Any]) -> dict[str, Any]:
        """The flat options saved in a checkpoint's ``config.json`` (override to read the
        layout of checkpoints older than the contract)."""
        return dict(saved.get("options", {}))

    def options_from(self, saved: dict[str, Any], directory: Path) -> Any:
        """The typed :attr:`Config` of a checkpoint's ``config.json``."""
        values = {"__source__": str(directory / ckpt.CONFIG), **self.saved_values(saved)}
        known = {f.name for _, f in leaf_fields(self.Config)} | {"__source__"}
        return build_config(self.Config, {k: v for k, v in values.items() if k in known})
