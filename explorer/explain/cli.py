"""``python -m explorer explain IMAGE --model SPEC --method METHOD ...``: a map as PNG, ``.npy`` and JSON."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from explorer.devices import DEVICE_HELP, DEVICES
from explorer.files import atomic_write_bytes, atomic_write_text
from explorer.spec import parse_assignments
from explorer.spec.arguments import seed_value
from explorer.weights.arguments import add_model_arguments

METHODS_HEADING = "methods and their options with defaults (--option KEY=VALUE):"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "image"


def _explain(args: argparse.Namespace) -> int:
    from explorer.explain import get_method, parse_option_assignments
    from explorer.explain.api import explain_decoded, load_for_explain
    from explorer.explain.errors import EmptyMapError
    from explorer.explain.options import resolve_options
    from explorer.explain.progress import tqdm_progress
    from explorer.explain.views import png_bytes, render
    from explorer.infer import decode_image

    method = get_method(args.method)
    options = parse_option_assignments(args.options)
    knobs = parse_assignments(list(args.overrides))
    progress, close = (None, lambda: None)
    if method.reports_progress and not args.quiet:
        progress, close = tqdm_progress(method.title)
    resolve_options(method.name, method.options, options)  # a typo fails now, not after loading the weights
    try:
        # in two steps, as explain_image does them: a method option may be called seed too (SmoothGrad's)
        loaded = load_for_explain(args.model, args.weights, knobs=knobs or None, seed=args.seed)
        result = explain_decoded(loaded, decode_image(args.image), method.name, layer=args.layer,
                                 target=args.target, device=args.device, progress=progress,
                                 fold=not args.as_built, **options)
    finally:
        close()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model_name = result.model.split(" ")[0] if result.model else "model"
    stem = f"{_slug(Path(str(args.image)).stem)}_{_slug(model_name)}_{method.name}"
    paths = {"npy": out / f"{stem}.npy", "json": out / f"{stem}.json"}
    atomic_write_bytes(paths["npy"], result.npy_bytes(), mode=None)
    summary = result.summary()
    sign = args.sign or result.default_sign
    summary["view"] = {"sign": sign, "scale": "per-map"}
    try:
        picture = render(result, view=args.view, sign=sign)
    except EmptyMapError as exc:
        print(f"note: {exc}", file=sys.stderr)
    else:
        paths["png"] = out / f"{stem}.png"
        atomic_write_bytes(paths["png"], png_bytes(picture), mode=None)
    summary["files"] = {k: str(v) for k, v in paths.items()}
    atomic_write_text(paths["json"], json.dumps(summary, indent=2) + "\n", mode=None)
    what = f"class {result.target}" + (f" ({result.target_label})" if result.target_label else "")
    where = f" at {result.layer}" if result.layer else ""
    said = ""
    if result.probabilities is not None:
        said = (f", p={result.target_probability:.3f}; the network says {result.predicted_label or result.predicted} "
                f"{100 * result.predicted_probability:.1f}%")
    print(f"{result.title}{where} for {what}{said}; {result.seconds:.2f} s on {result.device}")
    for note in result.notes:
        print(f"note: {note}")
    for kind in ("png", "npy", "json"):
        if kind in paths:
            print(f"wrote {paths[kind]}")
    return 0


def methods_help(width: int = 110) -> str:
    """The methods and their options with defaults, from the method registry (for ``explain --help``)."""
    import textwrap

    from explorer.explain import get_method, method_names

    lines = []
    for name in method_names():
        method = get_method(name)
        options = ", ".join(f"{o.name}={'auto' if o.default is None else str(o.default).lower()}"
                            for o in method.options) or "no options"
        layer = ", at --layer" if method.uses_layer else ""
        text = f"{method.title} (Captum {method.captum}{layer}): {options}"
        wrapped = textwrap.wrap(text, width - 19) or [""]
        lines.append(f"  {name:<16s} {wrapped[0]}")
        lines += [f"{'':19s}{more}" for more in wrapped[1:]]
    return "\n".join(lines) + "\n"


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``explain`` subcommand."""
    p = sub.add_parser(
        "explain", help="explain a prediction with Captum: a heatmap PNG, the raw map (.npy) and a JSON summary",
        description="Attribute a network's score for one class to the pixels of IMAGE. Errors are one line "
                    "on stderr and exit code 2.",
        epilog=f"{METHODS_HEADING}\n{methods_help()}", formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("image", metavar="IMAGE", help="a JPEG, PNG, WebP, BMP, GIF or TIFF file")
    add_model_arguments(p)
    p.add_argument("--method", default="saliency", metavar="METHOD",
                   help="attribution method (default saliency; the list is below); aliases such as "
                        "integrated-gradients work too")
    p.add_argument("--layer", default=None, metavar="PATH",
                   help="Grad-CAM's layer or block by module path (default: the last spatial map, e.g. "
                        "exit.sep2.act for Xception, Mixed_7c.concat for Inception V3; a finer block output "
                        "when that map is under 4 px a side)")
    p.add_argument("--target", default=None, metavar="CLASS",
                   help="class index or name to explain (default: the predicted class)")
    p.add_argument("--option", "-o", dest="options", action="append", default=[], metavar="KEY=VALUE",
                   help="a method option, repeatable, e.g. -o steps=64 -o baseline=black")
    p.add_argument("--out", default="explanations", metavar="DIR", help="output folder (default ./explanations)")
    p.add_argument("--view", default="overlay", choices=("overlay", "map"), help="the PNG: map over the image or alone")
    p.add_argument("--sign", default=None, choices=("signed", "absolute", "positive"),
                   help="which values the PNG shows (default: the method's usual view)")
    p.add_argument("--device", default="auto", choices=DEVICES, help=DEVICE_HELP)
    p.add_argument("--seed", type=seed_value, default=0, help="seed of random weights (default 0)")
    p.add_argument("--as-built", action="store_true",
                   help="run Saliency, IG, SmoothGrad and Occlusion on the model as built instead of the folded "
                        "copy (batch norms folded into the convs: the same map up to float rounding, a little "
                        "faster, about 30%% less memory)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_explain)
