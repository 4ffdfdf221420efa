"""``explain_tensor(model, x, method, target=..., layer=...)``: one attribution on a built model.

The core knows nothing of files, weights or preprocessing: it takes a model
and a preprocessed input tensor (plus, optionally, the un-normalized picture
for overlays and the class names), and returns an :class:`Attribution`.
Every run happens on a private replica of the model (see
:mod:`explorer.explain.safety`), so the caller's model never gets a hook,
never changes mode or ``requires_grad``, and threads never interfere. The
methods that hook nothing (Saliency, Integrated Gradients, SmoothGrad,
Occlusion) run by default on the folded replica of a spec network (batch
norms folded into the convs: the same function, less work and memory);
``fold=False`` runs them on the model as built.

Before a spec network runs, the activations one pass of the method holds
(its internal batch, with gradients or not) are held to the
``max_activation_bytes`` limit (:func:`check_explain_budget`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from explorer import resources
from explorer.explain.base import Job, Method, get_method
from explorer.explain.errors import ExplainError
from explorer.explain.layers import resolve_layer
from explorer.explain.progress import CountingForward, ProgressFn
from explorer.explain.result import Attribution
from explorer.explain.safety import (
    ReplicaPool,
    can_fold,
    is_folded,
    model_device,
    prefers_channels_last,
    private_model,
)
from explorer.spec import Spec
from explorer.spec.budget import needs


def _as_batch(x: torch.Tensor) -> torch.Tensor:
    """``x`` as 1 x C x H x W (a view: the copy is made on the model's device), checked."""
    if not isinstance(x, torch.Tensor):
        raise ExplainError(f"the input must be a tensor, got {type(x).__name__}")
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4 or x.shape[0] != 1:
        raise ExplainError(f"explain one image at a time: expected C x H x W or 1 x C x H x W, got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ExplainError(f"the input must be a float tensor (preprocessed), got {x.dtype}")
    # numpy on the CPU: a torch op here would wake the thread pool for one small check
    finite = np.isfinite(x.detach().numpy()).all() if x.device.type == "cpu" else bool(torch.isfinite(x).all())
    if not finite:
        raise ExplainError("the input has NaN or infinite values")
    return x.detach()


def _private_copy(x: torch.Tensor, device: torch.device, channels_last: bool,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """One copy of the input on ``device``, float32 (float64 for a double model), in the model's memory
    format, that autograd may use."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    with torch.inference_mode(False):
        # made outside inference mode: an inference tensor (e.g. from a classify) cannot take gradients
        return x.to(device=device, dtype=dtype, memory_format=fmt, copy=True)


def _input_dtype(model: nn.Module) -> torch.dtype:
    """float64 for a model in double precision (tests compare maps there, free of float32 rounding), else float32."""
    for p in model.parameters():
        return torch.float64 if p.dtype == torch.float64 else torch.float32
    return torch.float32


def resolve_target(target: Any, classes: int, names: Sequence[str] | None = None) -> int:
    """The class index ``target`` names: an index (``281``, ``"281"``) or a class name (``"tabby"``, any case).

    The one target parser: the API, the CLI and the app all pass what the user typed through it.
    An unknown name (with the close ones) or an index out of range is an :class:`ExplainError`.
    """
    if isinstance(target, str) and not target.strip().lstrip("-").isdigit():
        if names is None:
            raise ExplainError(f"target '{target}': a class name needs the class names; give an index")
        lowered = [n.lower() for n in names]
        if target.strip().lower() in lowered:
            return lowered.index(target.strip().lower())
        import difflib
        close = difflib.get_close_matches(target.strip().lower(), lowered, n=3, cutoff=0.6)
        hint = f"; close: {', '.join(repr(names[lowered.index(c)]) for c in close)}" if close else ""
        raise ExplainError(f"no class named '{target}'{hint}")
    try:
        index = int(target)
    except (TypeError, ValueError):
        raise ExplainError(f"target must be a class index or name, got {target!r}") from None
    if isinstance(target, float) and target != index:
        raise ExplainError(f"target must be a whole class index, got {target!r}")
    if not 0 <= index < classes:
        raise ExplainError(f"target class {index} is out of range: the network has {classes} classes "
                           f"(0..{classes - 1})")
    return index


# The methods that run several images per pass: the option that sets how many, and what it counts.
_PASS_OPTIONS: dict[str, tuple[str, str, str]] = {
    "ig": ("internal_batch_size", "steps", "path points per pass"),
    "smoothgrad": ("nt_samples_batch_size", "nt_samples", "noisy copies per pass"),
    "occlusion": ("perturbations_per_eval", "", "patches per pass"),
}


def pass_batch(method: Method, options: dict[str, Any], inputs: torch.Tensor) -> tuple[int, bool, str | None]:
    """How many images one pass of ``method`` holds at once, whether it keeps what the backward needs
    (every method but Occlusion, which only runs forward), and what to lower when that is too much."""
    entry = _PASS_OPTIONS.get(method.name)
    if entry is None:
        return 1, True, None
    option, total, words = entry
    most = options[total] if total else method.positions(options, inputs)  # occlusion: patch positions
    return max(1, min(options[option], most)), method.name != "occlusion", f"the {words} ({option})"


def check_explain_budget(model: nn.Module, method: str | Method, options: dict[str, Any],
                         inputs: torch.Tensor) -> None:
    """Refuse (:class:`~explorer.resources.BudgetError`) an explanation whose one pass would hold more
    activations than ``max_activation_bytes``: the method's internal batch (:func:`pass_batch`) through
    ``model``'s spec at the input's size, with gradients for the gradient methods. Only spec networks
    (:class:`explorer.build.SpecNet`) are checked; ``options`` are the method's resolved options."""
    spec, layers = getattr(model, "spec", None), getattr(model, "layers", None)
    if not isinstance(spec, Spec) or not layers:
        return
    m = get_method(method)
    batch, gradients, lower = pass_batch(m, options, inputs)
    dtype_bytes = torch.empty((), dtype=_input_dtype(model)).element_size()
    need = needs(spec, batch=batch, dtype_bytes=dtype_bytes, gradients=gradients, layers=layers)
    h, w = inputs.shape[-2:]
    activations = need.activation_bytes * int(h) * int(w) // spec.input_size**2  # at the input's own size
    what = f"{m.title} on '{spec.name}' at {batch} image{'s' if batch > 1 else ''} per pass" + \
        (", with gradients" if gradients else "")
    resources.check("max_activation_bytes", what, activations, lower or "the input size (input_size)")


def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    # no_grad, not inference_mode: x goes on to attribution afterwards
    with torch.no_grad():
        out = model(x)
    if isinstance(out, (tuple, list)):
        out = out[0]
    if out.dim() != 2 or out.shape[0] != 1:
        raise ExplainError(f"the network must return logits of shape 1 x classes, got {tuple(out.shape)}")
    return out.detach()


def explain_tensor(model: nn.Module, x: torch.Tensor, method: str | Method = "saliency", *,
                   target: int | str | None = None, layer: str | None = None, image: np.ndarray | None = None,
                   classes: Sequence[str] | None = None, mean: Sequence[float] | None = None,
                   std: Sequence[float] | None = None, progress: ProgressFn | None = None,
                   pool: ReplicaPool | None = None, model_name: str | None = None, source: str | None = None,
                   fold: bool = True, **options: Any) -> Attribution:
    """Attribute ``model``'s score for ``target`` to the pixels of ``x`` with ``method``.

    ``x``: the preprocessed input, C x H x W or 1 x C x H x W (not changed).
    ``target``: a class index or name; None explains the predicted class.
    ``layer``: Grad-CAM's layer by module path (default: the last spatial map).
    ``image``: the un-normalized picture (H x W x 3 uint8) kept for overlays.
    ``mean``/``std``: the preprocessing's normalization (for ``black``/``white`` baselines).
    ``progress``: called with a fraction in [0, 1] (IntegratedGradients, SmoothGrad, Occlusion).
    ``fold``: run a method that hooks nothing (``Method.hook_free``) on the folded copy of a spec
    network (the default; the maps equal the as-built ones up to float rounding) rather than on the
    model as built; the result's ``folded`` says which ran. Grad-CAM and the guided methods always
    run on the model as built.
    ``options``: the method's options (see ``get_method(name).options``).
    Raises :class:`ExplainError` for a bad method, option, layer or target, and
    :class:`~explorer.resources.BudgetError` (before any pass) when one pass would hold more
    activations than the ``max_activation_bytes`` limit.
    """
    m = get_method(method)
    inputs = _as_batch(x)
    opts = m.resolve(dict(options), inputs)
    check_explain_budget(model, m, opts, inputs)  # before the replica, the copy of the input, any pass
    notes: list[str] = []
    layer_name = None
    if m.uses_layer:
        layer_name, note = resolve_layer(model, layer)
        if note:
            notes.append(note)
    elif layer:
        notes.append(f"{m.title} does not use a layer: '{layer}' ignored")
    start = time.perf_counter()
    if progress is not None:
        progress(0.0)
    with private_model(model, pool, folded=fold and m.hook_free and can_fold(model)) as replica:
        folded = is_folded(replica)
        device = model_device(replica)
        inputs = _private_copy(inputs, device, prefers_channels_last(replica), _input_dtype(replica))
        inputs.requires_grad_(True)  # ours (a copy): Captum then need not set it and warn
        # the predicted class: from the method's own first forward pass when that pass sees the clean
        # input, else from one no-grad pass here, only when it is the target (IG and SmoothGrad never
        # run the clean input: with a given target they report no probabilities rather than pay a pass)
        pick = target is None and m.clean_first_call
        logits = _logits(replica, inputs) if target is None and not m.clean_first_call else None
        if pick:
            chosen = 0  # the forward below returns the predicted class's logit alone
        elif target is None:
            chosen = int(logits[0].argmax())
        else:
            chosen = resolve_target(target, _output_classes(model, logits), classes)  # read only: spec, Linear
        forward = CountingForward(replica, m.expected_calls(opts, inputs), progress, pick_predicted=pick)
        job = Job(replica, forward, inputs, chosen, opts, layer_name,
                  tuple(mean) if mean is not None else None, tuple(std) if std is not None else None, notes)
        with torch.enable_grad():
            attr = m.attribute(job)
        if m.clean_first_call:
            logits = forward.first
        if pick:
            chosen = forward.picked
    values = np.ascontiguousarray(attr.detach()[0].float().cpu().numpy())
    probabilities = None if logits is None else _softmax(logits[0].float().cpu().numpy())
    if progress is not None:
        progress(1.0)
    result = Attribution(
        method=m.name, title=m.title, values=values, target=chosen,
        predicted=None if probabilities is None else int(probabilities.argmax()),
        probabilities=probabilities, layer=layer_name, options=_plain(opts),
        seconds=time.perf_counter() - start,
        forward_passes=forward.calls + (0 if m.clean_first_call or target is not None else 1),
        image=image, model=model_name, source=source, device=str(device), notes=notes, default_sign=m.default_sign,
        folded=folded)
    if classes is not None:
        result.target_label = _name(classes, result.target)
        result.predicted_label = None if result.predicted is None else _name(classes, result.predicted)
    return result


def _output_classes(model: nn.Module, logits: torch.Tensor | None) -> int:
    """The number of classes, from the logits when computed, else from the spec or the last Linear."""
    if logits is not None:
        return int(logits.shape[-1])
    spec = getattr(model, "spec", None)
    if spec is not None and hasattr(spec, "num_classes"):
        return int(spec.num_classes)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if linears:
        return int(linears[-1].out_features)
    raise ExplainError("cannot tell how many classes the network has: give the target as None or check it")


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits.astype(np.float64) - logits.max())
    return (e / e.sum()).astype(np.float32)


def _name(classes: Sequence[str], index: int) -> str | None:
    return str(classes[index]) if 0 <= index < len(classes) else None


def _plain(options: dict[str, Any]) -> dict[str, Any]:
    return {k: (v if isinstance(v, (bool, int, float, str)) or v is None else str(v)) for k, v in options.items()}
