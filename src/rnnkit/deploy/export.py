"""``rnnkit export``: a checkpoint's fixed graphs as ONNX or TorchScript, checked for parity.

The application supplies its graphs (:meth:`~rnnkit.apps.base.Application.export_graphs`:
``torch`` modules with rnnkit layers mapped to ``torch.nn``, example inputs, names, dynamic
axes, and the rnnkit model itself as the reference). This module writes them:

- TorchScript: ``torch.jit.trace`` → ``torch.jit.save``.
- ONNX: ``torch.onnx.export`` with the TorchScript-based exporter (``dynamo=False``: it keeps the
  ``dynamic_axes`` of recurrent layers; opset :data:`OPSET`).

and beside them ``STEM.json``: the application, each graph's file, inputs, outputs, dynamic axes
and notes, the checkpoint's ``config.json`` and every other JSON file of the checkpoint
(vocabularies, tokenizers, labels). One graph is written to ``--output`` itself; several to
``STEM.NAME.SUFFIX``.

The parity check runs the exported file on the example inputs and compares each output with the
rnnkit model's: ``|exported − rnnkit| ≤ atol + rtol·|rnnkit|`` element-wise, ``atol = rtol =
1e-5`` (float32). ONNX files are run with onnxruntime when it is installed, and every graph is
also checked as traced TorchScript. The largest absolute difference is printed; above the
tolerance the export fails and leaves no file behind.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from rnnkit._io import atomic_write_json
from rnnkit.apps import runner
from rnnkit.apps.base import ExportGraph
from rnnkit.deploy import require
from rnnkit.errors import RnnkitError
from rnnkit.train import checkpoint as ckpt

__all__ = ["export", "ExportResult", "FORMATS", "OPSET", "TOLERANCE", "max_difference", "trace",
           "onnx_session", "open_application"]

FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}
OPSET = 17
TOLERANCE = 1e-5  # atol and rtol, float32


@dataclass
class ExportResult:
    """What :func:`export` wrote: graph files, the manifest, and the parity per graph
    (``{graph: {"torchscript": diff, "onnxruntime": diff}}``)."""

    application: str
    files: list[Path]
    manifest: Path
    parity: dict[str, dict[str, float]] = field(default_factory=dict)


def open_application(path: str | os.PathLike, device: str = "cpu"):
    """(application, loaded model, checkpoint) of the run or checkpoint ``path``."""
    app, checkpoint = runner.open_any(path, device)
    return app, app.load(checkpoint), checkpoint


def export(checkpoint: str | os.PathLike, fmt: str, output: str | os.PathLike,
           tolerance: float = TOLERANCE, log: Callable[[str], None] = print) -> ExportResult:
    """Export the checkpoint's graphs to ``output`` in ``fmt`` (``onnx`` | ``torchscript``)."""
    if fmt not in FORMATS:
        raise RnnkitError(f"--format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    if not tolerance >= 0:
        raise RnnkitError(f"--tolerance: expected a number >= 0, got {tolerance}")
    output = Path(output)
    if output.is_dir() or not output.name:
        raise RnnkitError(f"--output {output}: expected a file name, got a directory")
    if not output.parent.exists():
        raise RnnkitError(f"--output {output}: directory {output.parent} does not exist")
    if fmt == "onnx":
        require("onnx", "export")
    app, loaded, opened = open_application(checkpoint)
    with torch.no_grad():
        try:
            graphs = app.export_graphs(loaded)
        except ValueError as err:  # a layer without an exportable twin (layer norm, …)
            raise RnnkitError(f"rnnkit export --checkpoint {checkpoint}: {err}") from None
    paths = _paths(output, fmt, [g.name for g in graphs])
    result = ExportResult(app.name, [], output.with_suffix(".json"))
    try:
        for graph, path in zip(graphs, paths, strict=True):
            result.parity[graph.name] = _write_and_check(graph, fmt, path, tolerance, log)
            result.files.append(path)
        atomic_write_json(result.manifest, _manifest(app.name, fmt, graphs, paths, opened,
                                                     result.parity, tolerance))
    except BaseException:
        for path in paths:
            path.unlink(missing_ok=True)
        raise
    return result


def _paths(output: Path, fmt: str, names: list[str]) -> list[Path]:
    suffix = output.suffix or FORMATS[fmt]
    if len(names) == 1:
        return [output.with_suffix(suffix)]
    return [output.with_name(f"{output.with_suffix('').name}.{name}{suffix}") for name in names]


def _write_and_check(graph: ExportGraph, fmt: str, path: Path, tolerance: float,
                     log: Callable[[str], None]) -> dict[str, float]:
    """Write one graph (atomically), then its parity with the rnnkit model."""
    with torch.no_grad():
        expected = _as_tuple(graph.reference(*graph.inputs))
        traced = trace(graph.module, graph.inputs)
    parity = {"torchscript": max_difference(_as_tuple(traced(*graph.inputs)), expected,
                                            tolerance, graph, "torchscript")}
    partial = path.with_name(path.name + ".partial")
    try:
        if fmt == "torchscript":
            torch.jit.save(traced, str(partial))
            reloaded = torch.jit.load(str(partial))
            with torch.no_grad():
                parity["torchscript"] = max(parity["torchscript"], max_difference(
                    _as_tuple(reloaded(*graph.inputs)), expected, tolerance, graph,
                    "torchscript"))
        else:
            _onnx_export(graph, partial)
            ort = _onnxruntime()
            if ort is not None:
                parity["onnxruntime"] = max_difference(_run_onnx(ort, partial, graph), expected,
                                                       tolerance, graph, "onnxruntime")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    shown = "  ".join(f"{k} {v:.2e}" for k, v in parity.items())
    note = "" if fmt != "onnx" or "onnxruntime" in parity else (
        " (onnxruntime not installed: the ONNX file itself was not run)")
    log(f"{path}: graph {graph.name}, largest difference from rnnkit: {shown}{note}")
    return parity


def trace(module: torch.nn.Module, inputs: tuple):
    """``torch.jit.trace`` without its warnings (the shape checks inside ``torch.nn``'s
    recurrent layers warn that they are traced as constants; they only check)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.jit.trace(module, inputs, check_trace=False)


def _onnx_export(graph: ExportGraph, path: Path) -> None:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(graph.module, graph.inputs, str(path), input_names=graph.input_names,
                          output_names=graph.output_names, dynamic_axes=graph.dynamic_axes,
                          opset_version=OPSET, dynamo=False)


def _onnxruntime():
    try:
        import onnxruntime
    except ModuleNotFoundError:
        return None
    return onnxruntime


def onnx_session(ort, path: str | os.PathLike, threads: int = 1):
    """An onnxruntime CPU session of ``path`` using ``threads`` threads."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _run_onnx(ort, path: Path, graph: ExportGraph) -> tuple[torch.Tensor, ...]:
    session = onnx_session(ort, path)
    wanted = {i.name for i in session.get_inputs()}  # an input the graph ignores is dropped
    feed = {name: value.numpy() for name, value in zip(graph.input_names, graph.inputs,
                                                       strict=True) if name in wanted}
    return tuple(torch.from_numpy(v) for v in session.run(graph.output_names, feed))


def _as_tuple(value: Any) -> tuple[torch.Tensor, ...]:
    return (value,) if isinstance(value, torch.Tensor) else tuple(value)


def max_difference(got: tuple, expected: tuple, tolerance: float, graph: ExportGraph,
                   runner_name: str) -> float:
    """The largest ``|got − expected|`` over all outputs; RnnkitError when an element is
    beyond ``tolerance + tolerance·|expected|`` or a shape differs."""
    if len(got) != len(expected):
        raise RnnkitError(f"export parity ({graph.name}, {runner_name}): {len(got)} outputs, "
                          f"the rnnkit model gives {len(expected)}")
    largest = 0.0
    for name, a, b in zip(graph.output_names, got, expected, strict=True):
        a, b = a.detach().float(), b.detach().float()
        if a.shape != b.shape:
            raise RnnkitError(f"export parity ({graph.name}, {runner_name}): output {name} "
                              f"has shape {tuple(a.shape)}, the rnnkit model's "
                              f"{tuple(b.shape)}")
        finite = torch.isfinite(b)
        if not torch.equal(finite, torch.isfinite(a)):
            raise RnnkitError(f"export parity ({graph.name}, {runner_name}): output {name} "
                              "is not finite where the rnnkit model's is (or the reverse)")
        diff = (a[finite] - b[finite]).abs()
        if diff.numel():
            largest = max(largest, float(diff.max()))
            if bool((diff > tolerance + tolerance * b[finite].abs()).any()):
                raise RnnkitError(f"export parity ({graph.name}, {runner_name}): output "
                                  f"{name} differs from the rnnkit model by up to "
                                  f"{float(diff.max()):.3e}, beyond the tolerance "
                                  f"{tolerance:g} (absolute + relative)")
    return largest


def _manifest(app: str, fmt: str, graphs: list[ExportGraph], paths: list[Path], opened,
              parity: dict[str, dict[str, float]], tolerance: float) -> dict[str, Any]:
    files = {p.name: ckpt.read_json(p) for p in sorted(opened.directory.glob("*.json"))
             if p.name != ckpt.CONFIG}
    return {
        "application": app,
        "format": fmt,
        "checkpoint": str(opened.directory),
        "graphs": [{"name": g.name, "file": p.name, "inputs": g.input_names,
                    "outputs": g.output_names,
                    "dynamic_axes": {k: {str(a): n for a, n in v.items()}
                                     for k, v in g.dynamic_axes.items()},
                    "example_shapes": {n: list(t.shape) for n, t in zip(
                        g.input_names, g.inputs, strict=True)},
                    "notes": g.notes, "parity": parity[g.name]}
                   for g, p in zip(graphs, paths, strict=True)],
        "tolerance": {"atol": tolerance, "rtol": tolerance},
        "config": ckpt.read_json(opened.directory / ckpt.CONFIG),
        "files": files,
    }
