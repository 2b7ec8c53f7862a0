"""``rnnkit export``: thin front end of :mod:`rnnkit.deploy.export`."""

from __future__ import annotations

import argparse

from rnnkit.cli.builder import add_tool

EXAMPLES = """examples:
  rnnkit export --checkpoint runs/shakespeare --format onnx --output lm.onnx
  rnnkit export --checkpoint runs/sst2 --format torchscript --output sst2.pt
  rnnkit export --checkpoint runs/de-en --format onnx --output de-en.onnx
      (two graphs: de-en.encoder.onnx and de-en.decoder_step.onnx)

Beside the model, STEM.json holds each graph's inputs, outputs and dynamic axes, the run's
config and the checkpoint's vocabularies. A parity check against the rnnkit model ends every
export (TorchScript always, onnxruntime when installed); beyond 1e-5 (absolute + relative)
the export fails and writes nothing. Needs: pip install 'rnnkit[export]' for ONNX.
"""


def register(subparsers) -> None:
    parser = add_tool(
        subparsers, "export", "export a trained model to ONNX or TorchScript (with a parity check)",
        "Write a checkpoint's fixed inference graphs (language model step, tagger, "
        "classifier, encoder and decoder step, …) as ONNX or TorchScript files "
        "with dynamic batch and length axes, the vocabularies and config beside "
        "them as JSON.",
        EXAMPLES)
    parser.add_argument("--format", required=True, choices=("onnx", "torchscript"),
                        help="onnx or torchscript")
    parser.add_argument("--output", required=True, metavar="FILE",
                        help="the model file (several graphs: FILE's stem + .NAME + suffix)")
    parser.add_argument("--tolerance", type=float, default=1e-5,
                        help="parity tolerance, absolute and relative (default: 1e-5)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rnnkit.deploy.export import export

    result = export(args.checkpoint, args.format, args.output, args.tolerance)
    print(f"{result.application}: {len(result.files)} graph(s) written; manifest, vocabularies "
          f"and config: {result.manifest}")
    return 0
