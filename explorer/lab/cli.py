"""``python -m explorer train ...`` and ``python -m explorer ablate ...``: the lab from the command line."""

from __future__ import annotations

import argparse
import contextlib
import shlex
import signal
import sys
from dataclasses import dataclass
from typing import Any, Iterator

from explorer.devices import DEVICE_HELP, DEVICES
from explorer.lab.train import TrainConfig, TrainError
from explorer.spec import parse_assignments
from explorer.spec.arguments import MAX_SEED, add_spec_arguments, resolve_spec, seed_value

_DEFAULTS = TrainConfig()


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _common(p: argparse.ArgumentParser) -> None:
    add_spec_arguments(p)
    p.add_argument("--data", default="digits", metavar="digits|DIR",
                   help="scikit-learn's digits, or a folder in torchvision's ImageFolder layout (DIR/CLASS/*.png); "
                        "any folder this user can read (the app reads only folders under its data root)")
    p.add_argument("--epochs", type=_positive, default=_DEFAULTS.epochs, help=f"(default {_DEFAULTS.epochs})")
    p.add_argument("--batch-size", type=int, default=_DEFAULTS.batch_size,
                   help=f"(default {_DEFAULTS.batch_size})")
    p.add_argument("--lr", type=float, default=_DEFAULTS.lr,
                   help=f"AdamW learning rate, cosine-decayed to 0 (default {_DEFAULTS.lr})")
    p.add_argument("--device", default="auto", choices=DEVICES, help=DEVICE_HELP)
    p.add_argument("--limit", type=_positive, default=None, metavar="N",
                   help="use only N training and N test images (a quick check)")
    p.add_argument("--threads", type=_positive, default=None, metavar="N",
                   help="CPU threads for torch (1 is fastest on a busy machine)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _command(args: argparse.Namespace, name: str) -> str:
    """The canonical command line that repeats this run (recorded in checkpoints and results)."""
    parts: list[str] = ["python", "-m", "explorer", name, args.spec, "--data", args.data]
    for item in args.overrides:
        parts += ["--set", item]
    for item in getattr(args, "vary", []):
        parts += ["--vary", item]
    parts += ["--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--lr", f"{args.lr:g}"]
    if name == "ablate":
        parts += ["--seeds", str(args.seeds)]
    parts += ["--seed", str(args.seed)]
    if args.device != "auto":
        parts += ["--device", args.device]
    if args.limit:
        parts += ["--limit", str(args.limit)]
    if args.threads:
        parts += ["--threads", str(args.threads)]
    if args.out:
        parts += ["--out", args.out]
    return shlex.join(parts)


def _setup(args: argparse.Namespace):
    import torch

    from explorer.lab.data import load_data

    if args.threads:
        torch.set_num_threads(args.threads)
    spec = resolve_spec(args.spec, args.overrides)
    strict = "num_classes" in parse_assignments(list(args.overrides))
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                         device=args.device)
    config.check()
    bar = _Bar(args.quiet, "decoding", "image")
    data = load_data(args.data, input_size=spec.input_size, in_channels=spec.in_channels, limit=args.limit,
                     on_progress=lambda done, total: bar.step(total))
    bar.close()
    _err(data.describe())
    for note in data.notes:
        _err(f"note: {note}")
    return spec, strict, config, data


def _err(line: str) -> None:
    print(line, file=sys.stderr)


class _Bar:
    """A tqdm bar on stderr, made when the total is known."""

    def __init__(self, quiet: bool, desc: str, unit: str) -> None:
        self.quiet, self.desc, self.unit, self.bar = quiet, desc, unit, None

    def step(self, total: int, n: int = 1, **postfix: Any) -> None:
        if self.quiet:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=self.desc, unit=self.unit, file=sys.stderr, leave=False,
                            dynamic_ncols=True)
        self.bar.update(n)
        if postfix:
            self.bar.set_postfix(postfix, refresh=False)

    def write(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            _err(line)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


SIGTERM_EXIT = 128 + signal.SIGTERM  # 143, as a shell reports a process ended by SIGTERM


class _Terminated(Exception):  # noqa: N818 - a signal, not an error
    """SIGTERM arrived outside the training loop (while the data was read)."""


@dataclass
class _Stop:
    """Whether SIGTERM arrived; ``polled`` while the training loop checks ``signalled`` itself."""

    signalled: bool = False
    polled: bool = False


@contextlib.contextmanager
def _stop_on_sigterm() -> Iterator[_Stop]:
    """Turn SIGTERM into a clean stop: inside the training loop (``stop.polled``) the progress callback
    stops the run after the current batch; elsewhere the command ends at once with one line. Without
    this the default action kills the process mid-operation, with no word of what was done."""
    stop = _Stop()

    def handle(signum, frame) -> None:
        stop.signalled = True
        if not stop.polled:
            raise _Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, handle)
    except ValueError:  # not the main thread (a test calling main() from a worker): leave signals alone
        yield stop
        return
    try:
        yield stop
    finally:
        signal.signal(signal.SIGTERM, previous)


def _epoch_line(h, epochs: int) -> str:
    return (f"epoch {h.epoch:>3d}/{epochs}  train loss {h.train_loss:.4f} acc {100 * h.train_acc:6.2f}%  "
            f"test loss {h.test_loss:.4f} acc {100 * h.test_acc:6.2f}%  {h.seconds:5.1f} s")


def _train(args: argparse.Namespace) -> int:
    from explorer.lab.checkpoints import save_trained
    from explorer.lab.train import train

    if args.out and not args.out.endswith(".safetensors"):
        raise TrainError(f"--out must name a .safetensors file, got '{args.out}'")
    finished = 0
    with _stop_on_sigterm() as stop:
        try:
            spec, strict, config, data = _setup(args)
        except _Terminated:
            _err("training stopped by SIGTERM before it started")
            return SIGTERM_EXIT
        bar = _Bar(args.quiet, f"train {spec.name}", "batch")

        def progress(p) -> bool | None:
            nonlocal finished
            if p.phase == "train":
                bar.step(p.epochs * p.batches, loss=f"{p.loss:.4f}", epoch=p.epoch)
            else:
                finished = p.epoch
                bar.write(_epoch_line(p.history[-1], p.epochs))
            return False if stop.signalled else None

        stop.polled = True
        result = train(spec, data, config, on_progress=progress, strict_classes=strict)
        bar.close()
    if stop.signalled:
        _err(f"training stopped by SIGTERM after epoch {finished} of {config.epochs} (no checkpoint written)")
        return SIGTERM_EXIT
    for note in result.notes:
        if note not in data.notes:
            _err(f"note: {note}")
    last = result.history[-1]
    correct = round(last.test_acc * len(data.test_y))
    print(f"{result.spec.name} on {data.source}: test accuracy {100 * last.test_acc:.2f}% "
          f"({correct}/{len(data.test_y)}) after {last.epoch} epochs, {last.elapsed:.1f} s on {result.device}")
    if args.out:
        path = save_trained(args.out, result, data, command=_command(args, "train"))
        print(f"checkpoint written to {path} ({path.stat().st_size / 1024:.0f} KiB)")
    return 0


def _ablate(args: argparse.Namespace) -> int:
    from explorer.lab.ablate import make_variants, parse_vary, run_ablation
    from explorer.lab.report import summary_markdown, write_results, write_tables

    vary = parse_vary(args.vary)
    if args.seed + args.seeds - 1 > MAX_SEED:
        raise TrainError(f"--seed {args.seed} with --seeds {args.seeds} would run seeds past {MAX_SEED:,}")
    base = resolve_spec(args.spec, args.overrides)
    for variant in make_variants(vary):  # a knob that does not apply fails before the data is read
        variant.apply(base)
    spec, _, config, data = _setup(args)
    seeds = list(range(args.seed, args.seed + args.seeds))
    runs = len(make_variants(vary)) * len(seeds)
    bar = _Bar(args.quiet, "ablate", "batch")
    done: list[int] = []
    with _stop_on_sigterm() as stop:

        def progress(p) -> bool | None:
            if p.train.phase == "train":
                bar.step(runs * p.train.epochs * p.train.batches, run=f"{p.run}/{runs}", loss=f"{p.train.loss:.3f}")
            elif p.train.epoch == p.train.epochs and p.run not in done:
                done.append(p.run)
                h = p.train.history[-1]
                bar.write(f"[{p.run}/{runs}] {p.variant}, seed {p.seed}: test accuracy {100 * h.test_acc:.2f}% "
                          f"({h.elapsed:.0f} s)")
            return False if stop.signalled else None

        stop.polled = True
        result = run_ablation(spec, data, vary, seeds=seeds, config=config, on_progress=progress,
                              on_run=lambda r: write_tables(r, args.out), command=_command(args, "ablate"))
        bar.close()
    paths, notes = write_results(result, args.out, png=not args.no_png)
    for note in [*result.notes[len(data.notes):], *notes]:
        _err(f"note: {note}")
    print(summary_markdown(result))
    print("written: " + ", ".join(str(p) for p in paths.values()))
    if stop.signalled:
        _err(f"ablation stopped by SIGTERM after {len(result.runs)} of {runs} runs (those are written)")
        return SIGTERM_EXIT
    return 130 if result.stopped else 0  # 130: interrupted (Ctrl-C), what finished is written


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``train`` and ``ablate`` subcommands."""
    p = sub.add_parser("train", help="train a spec on the digits or an image folder",
                       description="Train a spec (seeded, reproducible) and print per-epoch loss and accuracy; "
                                   "--out writes a safetensors checkpoint that carries its spec.")
    _common(p)
    p.add_argument("--seed", type=seed_value, default=0,
                   help="seed of the initial weights and the batch order (default 0)")
    p.add_argument("--out", metavar="FILE", default=None, help="write the trained network (.safetensors)")
    p.set_defaults(handler=_train)

    p = sub.add_parser("ablate", help="train variants of a spec over seeds and compare their curves",
                       description="Train every combination of the --vary values once per seed; write the "
                                   "curves and final numbers (JSON, CSV) and the overlaid curves (HTML, PNG).")
    _common(p)
    p.add_argument("--vary", action="append", default=[], metavar="KNOB=V1,V2",
                   help="a knob and its values; repeatable (the variants are all the combinations)")
    p.add_argument("--seeds", type=_positive, default=3, help="seeds per variant (default 3)")
    p.add_argument("--seed", type=seed_value, default=0, help="first seed (default 0)")
    p.add_argument("--out", metavar="DIR", required=True, help="folder for the results")
    p.add_argument("--no-png", action="store_true", help="skip the PNG (no kaleido/Chromium needed)")
    p.set_defaults(handler=_ablate)
