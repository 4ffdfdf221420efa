"""Classify images: hardened decoding, preprocessing per weights, device choice, top-k.

``classify(images, "xception", weights="imagenet")`` is the one call; the
pieces (``load_model``, ``decode_image``, ``Preprocess``, ``predict``) are
here for the app and the explain feature.
"""

from explorer.infer.classify import Classification, ImageResult, Prediction, classify, decode_all, predict
from explorer.infer.device import (
    PRECISIONS,
    DeviceError,
    available_devices,
    resolve_device,
    run_model,
    with_cpu_fallback,
)
from explorer.infer.images import FORMATS, MAX_PIXELS, DecodedImage, ImageError, decode_image
from explorer.infer.preprocess import INCEPTION, XCEPTION, Preprocess, preprocess_for
from explorer.infer.samples import Sample, list_samples, sample_path
from explorer.infer.weights import (
    OFFICIAL,
    LoadedModel,
    OfficialWeights,
    WeightsError,
    clear_cache,
    hub_checkpoint_dir,
    imagenet_classes,
    load_model,
    load_or_random,
    official_checkpoint,
    spec_family,
)

__all__ = [
    "FORMATS",
    "INCEPTION",
    "MAX_PIXELS",
    "OFFICIAL",
    "PRECISIONS",
    "XCEPTION",
    "Classification",
    "DecodedImage",
    "DeviceError",
    "ImageError",
    "ImageResult",
    "LoadedModel",
    "OfficialWeights",
    "Prediction",
    "Preprocess",
    "Sample",
    "WeightsError",
    "available_devices",
    "classify",
    "clear_cache",
    "decode_all",
    "decode_image",
    "hub_checkpoint_dir",
    "imagenet_classes",
    "list_samples",
    "load_model",
    "load_or_random",
    "official_checkpoint",
    "predict",
    "preprocess_for",
    "resolve_device",
    "run_model",
    "sample_path",
    "spec_family",
    "with_cpu_fallback",
]
