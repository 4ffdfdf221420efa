"""``explain_image(image, spec, weights=..., method=...)``: decode, preprocess, load and attribute in one call.

Everything below the file level (weights, decoding, preprocessing, devices)
comes from :mod:`explorer.infer`; the attribution itself from
:func:`explorer.explain.core.explain_tensor`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from explorer.explain.base import get_method
from explorer.explain.core import explain_tensor
from explorer.explain.options import resolve_options
from explorer.explain.progress import ProgressFn
from explorer.spec import Spec


def load_for_explain(spec: Spec | str | None | Any, weights: str | os.PathLike = "imagenet", *,
                     knobs: Mapping[str, object] | None = None, seed: int = 0, download: bool | None = None):
    """The :class:`explorer.infer.LoadedModel` for ``spec`` and ``weights`` (a LoadedModel passes through)."""
    from explorer.weights import LoadedModel, load_model

    if isinstance(spec, LoadedModel):
        return spec
    return load_model(spec, weights, knobs=knobs, seed=seed, download=download)


def explain_image(image: Any, spec: Spec | str | None | Any = None, weights: str | os.PathLike = "imagenet",
            method: str = "saliency", layer: str | None = None, target: int | str | None = None, *,
            knobs: Mapping[str, object] | None = None, device: str | torch.device = "auto", seed: int = 0,
            download: bool | None = None, progress: ProgressFn | None = None, fold: bool = True, **options: Any):
    """Explain one image's prediction: an :class:`~explorer.explain.result.Attribution` with the picture.

    ``image``: a path, bytes, a file-like object (an upload) or a PIL image
    (decoded with the hardened decoder). ``spec``: a preset name, a YAML path,
    a :class:`Spec`, or an already loaded :class:`explorer.infer.LoadedModel`
    (then ``weights``/``knobs``/``seed`` are ignored); None when the checkpoint
    carries its spec. ``weights``: ``"imagenet"``, ``"random"`` or a checkpoint
    path. ``method``: ``saliency``, ``ig``, ``smoothgrad``, ``guided-backprop``,
    ``gradcam``, ``guided-gradcam`` or ``occlusion``. ``layer``: Grad-CAM's
    module path (default: the last spatial map). ``target``: a class index or
    name (default: the predicted class). ``options``: the method's options,
    e.g. ``steps=64`` for ``ig``. ``fold``: run Saliency, IG, SmoothGrad and
    Occlusion on the folded copy of the network (the default; see
    :func:`~explorer.explain.core.explain_tensor`), False: on the model as built.
    An out-of-memory accelerator falls back to the CPU with a note. Errors are
    one-line :class:`~explorer.spec.ExplorerError`s.
    """
    from explorer.infer import decode_image

    chosen = get_method(method)
    resolve_options(chosen.name, chosen.options, options)  # a typo fails now, not after loading the weights
    loaded = load_for_explain(spec, weights, knobs=knobs, seed=seed, download=download)
    return explain_decoded(loaded, decode_image(image), method, layer=layer, target=target, device=device,
                           progress=progress, fold=fold, **options)


def explain_decoded(loaded: Any, decoded: Any, method: str = "saliency", *, layer: str | None = None,
                    target: int | str | None = None, device: str | torch.device = "auto",
                    progress: ProgressFn | None = None, model_name: str | None = None, fold: bool = True,
                    **options: Any):
    """:func:`explain_image` for a network already loaded (:class:`explorer.infer.LoadedModel`) and an image
    already decoded (:class:`explorer.infer.DecodedImage`): the one path the CLI, the API and the app share.

    Preprocesses as classify does, attributes on ``device`` (an accelerator out of memory falls back to
    the CPU, with a note) and returns the :class:`~explorer.explain.result.Attribution` with the
    picture the network saw. ``model_name`` labels the result (default: the network and its weights).
    ``progress`` may raise to stop the run (see :mod:`explorer.jobs`). ``fold``: as in :func:`explain_image`.
    """
    from explorer.infer import resolve_device, with_cpu_fallback

    pre = loaded.preprocess
    crop = pre.crop_image(decoded.image)
    x = loaded.inputs([decoded.image])[0]  # as classify does: a gray picture fills every input channel
    picture = np.asarray(crop.convert("RGB"), dtype=np.uint8)
    wanted = resolve_device(device)

    def run(dev: torch.device):
        return explain_tensor(loaded.on(dev), x, method, target=target, layer=layer, image=picture,
                              classes=loaded.classes, mean=pre.mean, std=pre.std, progress=progress,
                              model_name=model_name or loaded.describe(), source=decoded.name, fold=fold,
                              **options)

    result, fallback = with_cpu_fallback(run, wanted)
    result.notes[:0] = list(loaded.notes) + list(decoded.notes) + ([fallback] if fallback else [])
    if fallback:
        loaded.drop_copies(wanted.type)  # the accelerator that ran out of memory
    return result
