"""Trained networks as self-describing safetensors files (spec, classes, preprocessing, accuracy, command).

The lab writes the training record; reading and writing the file itself is :mod:`explorer.weights.io`'s
(``load_trained`` is re-exported from there).
"""

from __future__ import annotations

import json
from pathlib import Path

from explorer.lab.data import ImageData
from explorer.lab.train import TrainResult
from explorer.weights import load_trained, save_checkpoint
from explorer.weights.io import checkpoint_bytes
from explorer.weights.registry import DIGITS_FILE, SHIPPED_DIR

__all__ = ["DIGITS_CHECKPOINT", "checkpoint_metadata", "load_trained", "save_trained", "trained_bytes"]

# The shipped network: mini_xception trained on the digits (the app's offline model; the registry's
# ``mini_xception.digits`` entry, whose facts come from this file; see docs/lab.md).
DIGITS_CHECKPOINT = SHIPPED_DIR / DIGITS_FILE


def checkpoint_metadata(result: TrainResult, data: ImageData, command: str | None = None) -> dict[str, str]:
    """The string fields a lab checkpoint carries besides the spec and the class names."""
    last = result.history[-1] if result.history else None
    meta = {
        "data": data.source,
        "split": data.split,
        "test_images": str(len(data.test_y)),
        "train_images": str(len(data.train_y)),
        "test_accuracy": f"{last.test_acc:.6f}" if last else "nan",
        "test_loss": f"{last.test_loss:.6f}" if last else "nan",
        "epochs_trained": str(len(result.history)),
        "train_config": json.dumps(result.config.to_dict()),
        "history": json.dumps([h.to_dict() for h in result.history]),
        "preprocess": json.dumps(data.preprocess.to_dict()),
        "device": result.device,
    }
    if command:
        meta["command"] = command
    if result.notes:
        meta["notes"] = json.dumps(result.notes)
    return meta


def save_trained(path: str | Path, result: TrainResult, data: ImageData, *, command: str | None = None) -> Path:
    """Write ``result``'s network as safetensors with its spec, classes and training record."""
    return save_checkpoint(path, result.model, result.spec, list(result.classes),
                           checkpoint_metadata(result, data, command))


def trained_bytes(result: TrainResult, data: ImageData, *, command: str | None = None) -> bytes:
    """The file :func:`save_trained` writes, as bytes (the app's download: no file left on the server)."""
    return checkpoint_bytes(result.model, result.spec, list(result.classes),
                            checkpoint_metadata(result, data, command))
