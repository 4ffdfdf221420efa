"""The ``--model SPEC [--set KNOB=VALUE ...] --weights W`` arguments of every command that loads a network.

Beside the weights (below classify, explain and score), so each command's module adds the same
flags with the same help, and ``--weights`` says everything :func:`~explorer.weights.load_model` takes.
"""

from __future__ import annotations

import argparse

from explorer.spec import list_presets
from explorer.spec.arguments import add_spec_arguments


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``--model`` (a preset or YAML file; optional when the checkpoint carries its spec), ``--set``, ``--weights``."""
    parser.add_argument("--model", default=None, metavar="SPEC",
                        help=f"a preset ({', '.join(list_presets())}) or a YAML file; may be left out when "
                             "--weights is a checkpoint that carries its spec")
    add_spec_arguments(parser, positional=False)
    parser.add_argument("--weights", default="imagenet", metavar="imagenet|NAME|random|PATH",
                        help="the official ImageNet weights (torch hub's cache), a registry name (python -m "
                             "explorer weights), seeded random weights, or a .safetensors/.pth/.pt checkpoint "
                             "(default: imagenet)")
