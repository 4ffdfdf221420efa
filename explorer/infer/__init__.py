"""Classify images: hardened decoding, devices and precisions, top-k.

``classify(images, "xception", weights="imagenet")`` is the one call; the
pieces (``decode_image``, ``predict``, the devices) are here for the app and
the explain feature. Networks and their weights come from
:mod:`explorer.weights` (``load_model`` is re-exported for convenience).
"""

from explorer.devices import DEVICE_LABELS, DEVICES
from explorer.infer.classify import Classification, ImageResult, Prediction, classify, decode_all, predict
from explorer.infer.device import (
    PRECISIONS,
    DeviceError,
    available_devices,
    resolve_device,
    run_model,
    with_cpu_fallback,
)
from explorer.infer.images import EXTENSIONS, FORMATS, MAX_PIXELS, DecodedImage, ImageError, decode_image
from explorer.infer.samples import Sample, list_samples, sample_path
from explorer.weights import LoadedModel, WeightsError, load_model

__all__ = [
    "DEVICES",
    "DEVICE_LABELS",
    "EXTENSIONS",
    "FORMATS",
    "MAX_PIXELS",
    "PRECISIONS",
    "Classification",
    "DecodedImage",
    "DeviceError",
    "ImageError",
    "ImageResult",
    "LoadedModel",
    "Prediction",
    "Sample",
    "WeightsError",
    "available_devices",
    "classify",
    "decode_all",
    "decode_image",
    "list_samples",
    "load_model",
    "predict",
    "resolve_device",
    "run_model",
    "sample_path",
    "with_cpu_fallback",
]
