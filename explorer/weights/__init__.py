"""Weights: which sets exist, how to read and write them safely, and networks loaded with them.

* :mod:`~explorer.weights.registry`: one entry per weights set (URL and hash,
  the network it fits by structure, key layout, preprocessing, categories,
  parameter count, published accuracy). ``list_weights()``.
* :mod:`~explorer.weights.io`: safe checkpoint reading and writing (the lab's
  too) and copying a state dict onto a network with a report.
* :mod:`~explorer.weights.load`: ``load_model(spec, weights)`` and the
  immutable :class:`LoadedModel` it returns.
* :mod:`~explorer.weights.keys` and :mod:`~explorer.weights.preprocess`: the
  key layouts and the preprocessing the entries refer to.
"""

from explorer.weights.io import (
    CHECKPOINT_SUFFIXES,
    Checkpoint,
    LoadReport,
    WeightsError,
    load_checkpoint,
    load_trained,
    load_weights,
    read_checkpoint,
    read_metadata,
    save_checkpoint,
)
from explorer.weights.keys import KEY_MAPS, convert_state_dict
from explorer.weights.load import LoadedModel, clear_cache, load_model, load_or_random
from explorer.weights.preprocess import Preprocess, scaled
from explorer.weights.registry import (
    Accuracy,
    Fit,
    WeightsEntry,
    class_names,
    closest,
    downloads_allowed,
    get_weights,
    hub_checkpoint_dir,
    imagenet_classes,
    imagenet_for,
    list_weights,
    missing_message,
    preprocess_for,
)

__all__ = [
    "CHECKPOINT_SUFFIXES",
    "KEY_MAPS",
    "Accuracy",
    "Checkpoint",
    "Fit",
    "LoadReport",
    "LoadedModel",
    "Preprocess",
    "WeightsEntry",
    "WeightsError",
    "class_names",
    "clear_cache",
    "closest",
    "convert_state_dict",
    "downloads_allowed",
    "get_weights",
    "hub_checkpoint_dir",
    "imagenet_classes",
    "imagenet_for",
    "list_weights",
    "load_checkpoint",
    "load_model",
    "load_or_random",
    "load_trained",
    "load_weights",
    "missing_message",
    "preprocess_for",
    "read_checkpoint",
    "read_metadata",
    "save_checkpoint",
    "scaled",
]
