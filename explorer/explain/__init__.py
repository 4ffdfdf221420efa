"""Explain predictions with Captum: which pixels made the network say what it said.

``explain_image(image, "xception", weights="imagenet", method="ig")`` (also
``explorer.explain_image``) is the one call; ``explain_decoded(loaded,
decoded, method)`` the same for a network and an image already loaded (the
path the app, the CLI and the API share); ``explain_tensor(model, x, method)``
is the core on a built model and a preprocessed tensor; ``score(images, network)`` measures the
methods against each other (:mod:`explorer.explain.scorecard`: which map to trust);
``count_passes(method, x)`` says what a run will cost before it starts. One method per module (``saliency``, ``ig``,
``smoothgrad``, ``guided-backprop``, ``gradcam``, ``guided-gradcam``,
``occlusion``); the views (:mod:`explorer.explain.views`) draw maps over the
image on comparable colour scales (one per method by default) and export PNG
and ``.npy``. No Streamlit here.
"""

# the methods register themselves on import (listed in base.ORDER)
from explorer.explain import (  # noqa: F401
    gradcam,
    guided_backprop,
    guided_gradcam,
    integrated_gradients,
    occlusion,
    saliency,
    smoothgrad,
)
from explorer.explain.api import explain_decoded, explain_image, load_for_explain
from explorer.explain.base import METHODS, SIGNS, Job, Method, get_method, method_names
from explorer.explain.core import explain_tensor, resolve_target
from explorer.explain.errors import EmptyMapError, ExplainError
from explorer.explain.estimate import Passes, count_passes, estimate_seconds
from explorer.explain.layers import LayerChoice, default_layer, layer_choices, resolve_layer
from explorer.explain.options import Option, parse_option_assignments
from explorer.explain.result import Attribution
from explorer.explain.safety import POOL, ReplicaPool, installed_hooks
from explorer.explain.scorecard import METRICS, Metric, Row, Scorecard, get_metric, metric_names, score
from explorer.explain.views import (
    DEFAULT_SCALE,
    SCALES,
    Placeholder,
    ScaledMap,
    comparison_figure,
    heatmap_image,
    npy_bytes,
    overlay_image,
    png_bytes,
    render,
    scale_maps,
    scale_note,
    to_map,
)

__all__ = [
    "DEFAULT_SCALE",
    "METHODS",
    "METRICS",
    "POOL",
    "SCALES",
    "SIGNS",
    "Attribution",
    "EmptyMapError",
    "ExplainError",
    "Job",
    "LayerChoice",
    "Method",
    "Metric",
    "Option",
    "Passes",
    "Placeholder",
    "ReplicaPool",
    "Row",
    "ScaledMap",
    "Scorecard",
    "comparison_figure",
    "count_passes",
    "default_layer",
    "estimate_seconds",
    "explain_decoded",
    "explain_image",
    "explain_tensor",
    "get_method",
    "get_metric",
    "heatmap_image",
    "installed_hooks",
    "layer_choices",
    "load_for_explain",
    "method_names",
    "metric_names",
    "npy_bytes",
    "overlay_image",
    "parse_option_assignments",
    "png_bytes",
    "render",
    "resolve_layer",
    "resolve_target",
    "scale_maps",
    "scale_note",
    "score",
    "to_map",
]

