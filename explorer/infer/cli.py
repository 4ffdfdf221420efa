"""``python -m explorer classify IMAGE... --model SPEC [--weights imagenet|random|PATH] ...``."""

from __future__ import annotations

import argparse
import json
import sys

from explorer.devices import DEVICE_HELP, DEVICES, PRECISION_HELP, PRECISION_NAMES
from explorer.spec import parse_assignments
from explorer.spec.arguments import seed_value
from explorer.weights.arguments import add_model_arguments

EXIT_USER_ERROR = 2


def _classify(args: argparse.Namespace) -> int:
    from explorer.infer.classify import classify

    knobs = parse_assignments(list(args.overrides))
    result = classify(args.images, args.model, args.weights, knobs=knobs or None, device=args.device,
                      precision=args.precision, top=args.top, batch_size=args.batch_size, seed=args.seed,
                      errors="collect")
    for error in result.errors:
        print(f"error: {error}", file=sys.stderr)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        _print_text(result)
    return EXIT_USER_ERROR if result.errors else 0


def _print_text(result) -> None:
    print(f"{result.model} with {result.weights} weights on {result.device} ({result.precision}); "
          f"{result.latency_ms:.0f} ms per image")
    print(f"preprocessing: {result.preprocess}")
    for note in result.notes:
        print(f"note: {note}")
    for item in result.results:
        if not item.ok:
            continue
        extra = f"  [{'; '.join(item.notes)}]" if item.notes else ""
        print(f"\n{item.name}{extra}")
        width = max(len(p.label) for p in item.top)
        for rank, p in enumerate(item.top, 1):
            print(f"  {rank}. {p.label:<{width}s}  {100 * p.probability:6.2f}%  (class {p.index})")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``classify`` subcommand."""
    p = sub.add_parser("classify", help="classify images with a network and its weights",
                       description="Top-k classes of each image. A bad image or missing weights is one line "
                                   "on stderr and exit code 2; the other images are still classified.")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="JPEG, PNG, WebP, BMP, GIF or TIFF files")
    add_model_arguments(p)
    p.add_argument("--device", default="auto", choices=DEVICES, help=DEVICE_HELP)
    p.add_argument("--precision", default="fp32", choices=PRECISION_NAMES, help=PRECISION_HELP)
    p.add_argument("--top", type=int, default=5, metavar="K", help="classes to show (default 5)")
    p.add_argument("--batch-size", type=int, default=32, metavar="N")
    p.add_argument("--seed", type=seed_value, default=0, help="seed of the random weights (default 0)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(handler=_classify)
