"""Trained networks as self-describing safetensors files (spec, classes, preprocessing, accuracy, command)."""

from __future__ import annotations

import json
from pathlib import Path

from explorer.build import SpecNet, build_model
from explorer.lab.data import ImageData
from explorer.lab.train import TrainResult
from explorer.weights import Checkpoint, WeightsError, load_checkpoint, load_weights, save_checkpoint

# The shipped network: mini_xception trained on the digits (the app's offline model; see docs/readme_lab.md).
DIGITS_CHECKPOINT = Path(__file__).resolve().parents[2] / "assets" / "checkpoints" / "mini_xception_digits.safetensors"


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


def load_trained(path: str | Path) -> tuple[SpecNet, Checkpoint]:
    """Rebuild the network a checkpoint describes and load its weights (exactly; in ``eval()``)."""
    checkpoint = load_checkpoint(path)
    if checkpoint.spec is None:
        raise WeightsError(f"'{Path(path).name}' carries no spec: it was not written by the explorer")
    model = build_model(checkpoint.spec, seed=0)  # seeded: the global RNG stays untouched
    load_weights(model, checkpoint.state_dict, strict=True)
    return model.eval(), checkpoint
