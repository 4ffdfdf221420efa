"""What an explanation returns: the attribution values and everything needed to show and export them."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Attribution:
    """One attribution map for one image, one method, one target class.

    ``values`` is the raw attribution as Captum returns it, without the batch
    axis: ``C x H x W`` (``1 x H x W`` for Grad-CAM), float32, on the CPU.
    ``image`` is the un-normalized picture the network saw (``H x W x 3``
    uint8), when known, for overlays. ``folded``: it ran on the folded inference copy of the network
    (batch norms folded into the convs; the same function up to float rounding), not the model as built.
    """

    method: str
    title: str
    values: np.ndarray
    target: int
    predicted: int | None              # None when it was not computed (see probabilities)
    probabilities: np.ndarray | None   # softmax over the classes for the unperturbed input; None when the
    #                                    method never ran it (IG, SmoothGrad with a given target)
    target_label: str | None = None
    predicted_label: str | None = None
    layer: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    forward_passes: int = 0
    image: np.ndarray | None = None
    model: str | None = None           # e.g. "xception with imagenet weights"
    source: str | None = None          # e.g. the image's file name
    device: str = "cpu"
    notes: list[str] = field(default_factory=list)
    default_sign: str = "absolute"
    folded: bool = False

    @property
    def target_probability(self) -> float | None:
        return None if self.probabilities is None else float(self.probabilities[self.target])

    @property
    def predicted_probability(self) -> float | None:
        return None if self.probabilities is None else float(self.probabilities[self.predicted])

    @property
    def is_finite(self) -> bool:
        return bool(np.isfinite(self.values).all())

    @property
    def is_zero(self) -> bool:
        return not np.any(self.values)

    @property
    def label(self) -> str:
        """A short caption: method (at layer), network."""
        where = f" at {self.layer}" if self.layer else ""
        net = f", {self.model}" if self.model else ""
        return f"{self.title}{where}{net}"

    def empty_message(self) -> str | None:
        """Why there is nothing to draw (all zeros / not finite), or None when the map is fine."""
        what = f"the {self.title} map for class {self.target}" + (f" ({self.target_label})" if self.target_label else "")
        where = f" at layer '{self.layer}'" if self.layer else ""
        if not self.is_finite:
            return f"{what}{where} is not finite (NaN or infinity): nothing to show"
        if self.is_zero:
            hint = " (try another layer, class or method)" if self.layer else " (try another class or method)"
            return f"{what}{where} is all zeros: nothing to show{hint}"
        return None

    def summary(self) -> dict[str, Any]:
        """Plain data for JSON: what was explained, how, and the map's statistics (no arrays)."""
        v = self.values
        finite = v[np.isfinite(v)] if v.size else v
        return {
            "method": self.method, "title": self.title, "model": self.model, "source": self.source,
            "target": self.target, "target_label": self.target_label,
            "target_probability": self.target_probability,
            "predicted": self.predicted, "predicted_label": self.predicted_label,
            "predicted_probability": self.predicted_probability,
            "layer": self.layer, "options": {k: v for k, v in self.options.items()},
            "shape": list(v.shape), "seconds": round(self.seconds, 4), "forward_passes": self.forward_passes,
            "device": self.device, "folded": self.folded,
            "stats": {"min": float(finite.min()) if finite.size else None,
                      "max": float(finite.max()) if finite.size else None,
                      "sum": float(finite.sum()) if finite.size else None,
                      "mean_abs": float(np.abs(finite).mean()) if finite.size else None},
            "empty": self.empty_message(), "notes": list(self.notes),
        }

    def npy_bytes(self) -> bytes:
        """The raw values as a ``.npy`` file (float32, C x H x W)."""
        buffer = io.BytesIO()
        np.save(buffer, self.values, allow_pickle=False)
        return buffer.getvalue()
