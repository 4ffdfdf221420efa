"""``python -m explorer weights [NAME] [--json]``: the weights registry, one set per entry."""

from __future__ import annotations

import argparse
import json


def _row(entry) -> dict:
    return {
        "name": entry.name,
        "title": entry.title,
        "network": entry.spec().name,
        "parameters": entry.num_params,
        "categories": len(entry.class_names()),
        "file": entry.file_name,
        "url": entry.url or None,
        "sha256_prefix": entry.sha256_prefix or None,
        "on_this_machine": entry.path.is_file(),
        "path": str(entry.path),
        "layout": entry.layout,
        "preprocess": entry.preprocess.describe() if entry.preprocess else None,
        "accuracy": [{"top1": a.top1, "top5": a.top5, "source": a.source, "url": a.url or None}
                     for a in entry.accuracy],
        "reference": entry.reference,
    }


def _weights(args: argparse.Namespace) -> int:
    from explorer.weights import get_weights, list_weights

    entries = [get_weights(args.name)] if args.name else list_weights()
    if args.json:
        print(json.dumps([_row(e) for e in entries], indent=2))
        return 0
    for i, entry in enumerate(entries):
        row = _row(entry)
        where = "here" if row["on_this_machine"] else ("shipped, but missing" if entry.shipped else "not downloaded")
        print(("\n" if i else "") + f"{entry.name}: {entry.title}")
        print(f"  network     {row['network']}, {row['parameters']:,} parameters, {row['categories']} classes")
        print(f"  file        {row['file']} ({where}: {row['path']})")
        if entry.url:
            hashed = f", sha256 {entry.sha256_prefix}..." if entry.sha256_prefix else ""
            print(f"  url         {entry.url}{hashed}")
        print(f"  keys        {entry.layout}")
        print(f"  preprocess  {row['preprocess']}")
        for accuracy in entry.accuracy:
            print(f"  accuracy    {accuracy.describe()}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``weights`` subcommand."""
    p = sub.add_parser("weights", help="list the known weights sets (the registry)",
                       description="Each weights set the explorer knows: its network, file, key layout, "
                                   "preprocessing and published accuracy. `--weights imagenet` picks the "
                                   "official set whose network the spec matches; a set's name picks it directly.")
    p.add_argument("name", nargs="?", default=None, help="one set (default: all)")
    p.add_argument("--json", action="store_true", help="print the entries as JSON")
    p.set_defaults(handler=_weights)
