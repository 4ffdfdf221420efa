"""``classify(images, spec, weights=...)``: decode, preprocess, run and rank, with timings and notes.

Before the images are preprocessed, the run is held to the ``max_activation_bytes``
limit (:func:`check_classify_budget`): the input batch of every image, and one
forward pass at the batch size and precision used.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from typing import Mapping, Sequence

import torch
from PIL import Image

from explorer import resources
from explorer.errors import UsageError
from explorer.infer.device import ForwardResult, check_precision, resolve_device, run_model, with_cpu_fallback
from explorer.infer.images import DecodedImage, ImageError, ImageSource, decode_image
from explorer.spec import Spec
from explorer.spec.budget import check_budget
from explorer.weights import LoadedModel, load_model


@dataclass
class Prediction:
    """One of the top classes: its index, name and probability (0..1)."""

    index: int
    label: str
    probability: float


@dataclass
class ImageResult:
    """The top-k of one image, or the one-line reason it could not be classified."""

    name: str
    top: list[Prediction] = field(default_factory=list)
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    size: tuple[int, int] | None = None
    digest: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class Classification:
    """What :func:`classify` returns: per-image results and how the run went."""

    model: str
    weights: str
    device: str
    precision: str
    preprocess: str
    results: list[ImageResult]
    forward_ms: float = 0.0
    preprocess_ms: float = 0.0
    batch_size: int = 1
    notes: list[str] = field(default_factory=list)

    @property
    def latency_ms(self) -> float:
        """Forward time per classified image (the whole batch's time divided by its images)."""
        done = sum(r.ok for r in self.results)
        return self.forward_ms / done if done else 0.0

    @property
    def errors(self) -> list[str]:
        return [r.error for r in self.results if r.error]

    def to_dict(self) -> dict:
        """Plain data for JSON."""
        data = asdict(self)
        data["latency_ms"] = self.latency_ms
        return data


def _is_single(images: object) -> bool:
    return isinstance(images, (str, os.PathLike, bytes, bytearray, memoryview, Image.Image, DecodedImage)) or \
        hasattr(images, "read") or hasattr(images, "getvalue")


def decode_all(images: ImageSource | Sequence[ImageSource], *, errors: str = "raise"
               ) -> list[DecodedImage | ImageResult]:
    """Decode every image; a failure raises (``errors="raise"``) or becomes an :class:`ImageResult` with its error."""
    items = [images] if _is_single(images) else list(images)
    out: list[DecodedImage | ImageResult] = []
    for i, item in enumerate(items):
        try:
            out.append(decode_image(item))
        except ImageError as exc:
            if errors == "raise":
                raise
            name = os.path.basename(os.fspath(item)) if isinstance(item, (str, os.PathLike)) else \
                os.path.basename(str(getattr(item, "name", "") or f"image {i + 1}"))
            out.append(ImageResult(name=name, error=str(exc)))
    return out


def check_classify_budget(loaded: LoadedModel, images: int, *, batch_size: int = 32, precision: str = "fp32",
                          device: str | torch.device = "auto") -> None:
    """Refuse (:class:`~explorer.resources.BudgetError`) a classification over ``max_activation_bytes``:
    the ``images`` preprocessed at once (fp32), or one forward pass at ``min(batch_size, images)`` in the
    precision ``device`` runs (2 bytes a value for bf16 and fp16, else 4)."""
    spec = loaded.spec
    if images < 1:
        return
    used, _ = check_precision(precision, resolve_device(device))
    resources.check("max_activation_bytes", f"the {images:,} preprocessed images",
                    images * spec.in_channels * spec.input_size**2 * 4)
    batch = max(1, min(int(batch_size), images))  # as run_model slices the batch
    check_budget(spec, batch=batch, dtype_bytes=4 if used == "fp32" else 2, layers=loaded.layers,
                 what=f"classifying with '{spec.name}' ({used})",
                 lower="the batch size (batch_size)" if batch > 1 else None)


def predict(loaded: LoadedModel, x: torch.Tensor, *, device: str | torch.device = "auto", precision: str = "fp32",
            batch_size: int = 32) -> tuple[torch.Tensor, ForwardResult, list[str]]:
    """Probabilities (N x classes, fp32, CPU) for preprocessed inputs ``x``, under ``no_grad``.

    Falls back to the CPU, with a note, when the accelerator runs out of memory. A pass over the
    ``max_activation_bytes`` limit is refused first (:func:`check_classify_budget`).
    """
    check_classify_budget(loaded, len(x), batch_size=batch_size, precision=precision, device=device)
    target = resolve_device(device)
    notes: list[str] = []

    def run(dev: torch.device) -> ForwardResult:
        used, note = check_precision(precision, dev)
        if note:
            notes.append(note)
        return run_model(loaded.runner(dev, used), x, dev, precision=used, batch_size=batch_size,
                         channels_last=loaded.channels_last)

    result, fallback = with_cpu_fallback(run, target)
    if fallback:
        loaded.drop_copies(target.type)
        notes.append(fallback)
    return torch.softmax(result.logits.float(), dim=1), result, notes


def classify(images: ImageSource | Sequence[ImageSource], spec_or_loaded: Spec | str | LoadedModel | None,
             weights: str | os.PathLike = "imagenet", *, knobs: Mapping[str, object] | None = None,
             device: str | torch.device = "auto", precision: str = "fp32", top: int = 5, batch_size: int = 32,
             seed: int = 0, download: bool | None = None, errors: str = "raise") -> Classification:
    """Classify one image or several with a network and its weights.

    ``images``: paths, bytes, file-like objects (e.g. uploads) or PIL images.
    ``spec_or_loaded``: a :class:`LoadedModel` (``weights``/``knobs``/``seed``
    then ignored), a :class:`Spec`, a preset name or a YAML path (None when
    the checkpoint file carries its spec). ``weights``: ``"imagenet"``,
    a registry name (``mini_xception.digits``), ``"random"`` or a checkpoint path. ``errors="collect"`` turns a bad image
    into a result with its message instead of raising :class:`ImageError`.
    """
    if errors not in ("raise", "collect"):
        raise UsageError("errors", f"must be 'raise' or 'collect', got {errors!r}")
    decoded = decode_all(images, errors=errors)  # before the model: a bad file fails fast
    if isinstance(spec_or_loaded, LoadedModel):
        loaded = spec_or_loaded
    else:
        loaded = load_model(spec_or_loaded, weights, knobs=knobs, seed=seed, download=download)
    good = [d for d in decoded if isinstance(d, DecodedImage)]
    check_classify_budget(loaded, len(good), batch_size=batch_size, precision=precision, device=device)
    start = time.perf_counter()
    x = loaded.inputs([d.image for d in good]) if good else None
    preprocess_ms = (time.perf_counter() - start) * 1000
    notes = list(loaded.notes)
    forward_ms, used_device, used_precision = 0.0, str(resolve_device(device)), precision
    probs = None
    if x is not None:
        probs, forward, run_notes = predict(loaded, x, device=device, precision=precision, batch_size=batch_size)
        notes += run_notes
        forward_ms, used_device, used_precision = forward.seconds * 1000, str(forward.device), forward.precision
    k = max(1, min(int(top), len(loaded.classes)))
    results: list[ImageResult] = []
    row = 0
    for item in decoded:
        if isinstance(item, ImageResult):
            results.append(item)
            continue
        values, indices = probs[row].topk(k)
        row += 1
        results.append(ImageResult(
            name=item.name, notes=list(item.notes), size=item.size, digest=item.digest,
            top=[Prediction(int(i), loaded.classes[int(i)], float(v)) for v, i in zip(values, indices)]))
    return Classification(model=loaded.name, weights=loaded.weights, device=used_device, precision=used_precision,
                          preprocess=loaded.preprocess.describe(), results=results, forward_ms=forward_ms,
                          preprocess_ms=preprocess_ms, batch_size=batch_size, notes=notes)
