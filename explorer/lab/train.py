"""Training a spec on an :class:`~explorer.lab.data.ImageData`: a plain, seeded PyTorch loop.

The same seed gives the same curves: the seed fixes the initial weights
(``build_model(spec, seed=...)``) and the order of the batches; nothing else
draws random numbers (the images that re-estimate batch norm come from their own
seeded generator). The network trains in ``train()`` and is evaluated in ``eval()``
after every epoch, once its batch-norm running statistics have been re-estimated on
training images (:func:`recalibrate_batch_norm`); an Inception spec's
``(logits, aux)`` output in training adds the auxiliary loss with weight 0.4 (as torchvision's recipe).
Progress goes to a callback (a progress bar, live curves); returning
``False`` from it stops the run after the current batch.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterator, Sequence

import torch
from torch import nn

from explorer.build import SpecNet, build_model
from explorer.errors import ExplorerError
from explorer.lab.data import DataError, ImageData, to_model_input
from explorer.spec import Spec
from explorer.spec.budget import check_budget

AUX_WEIGHT = 0.4


class TrainError(ExplorerError, ValueError):
    """A training setting that cannot work (epochs, batch size, learning rate)."""


@dataclass(frozen=True)
class TrainConfig:
    """The recipe: AdamW with a per-step cosine decay of the learning rate to zero.

    ``bn_recalibration``: how many training images re-estimate the batch-norm running
    statistics before each test evaluation (0 keeps the running averages of training).
    ``threads``: CPU threads for torch during the run (``None`` leaves torch's setting); a
    small network trains fastest on one thread of a busy machine.
    """

    epochs: int = 10
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    device: str = "auto"
    bn_recalibration: int = 512
    threads: int | None = None

    def check(self) -> None:
        """Raise :class:`TrainError` on a setting that cannot work."""
        if self.epochs < 1:
            raise TrainError(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 2:
            raise TrainError(f"batch size must be at least 2 (batch norm needs two samples), got {self.batch_size}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise TrainError(f"learning rate must be a positive number, got {self.lr}")
        if self.weight_decay < 0:
            raise TrainError(f"weight decay must not be negative, got {self.weight_decay}")
        if self.threads is not None and self.threads < 1:
            raise TrainError(f"threads must be at least 1, got {self.threads}")
        if self.bn_recalibration < 0:
            raise TrainError(f"batch-norm recalibration images must not be negative, got {self.bn_recalibration}")

    def to_dict(self) -> dict:
        """Plain data (JSON)."""
        return asdict(self)


@dataclass(frozen=True)
class EpochStats:
    """One epoch's numbers: losses are mean cross-entropy per image, accuracies fractions."""

    epoch: int
    train_loss: float
    train_acc: float
    test_loss: float
    test_acc: float
    seconds: float
    elapsed: float
    lr: float

    def to_dict(self) -> dict:
        """Plain data (JSON)."""
        return asdict(self)


METRICS: dict[str, str] = {
    "train_loss": "training loss", "train_acc": "training accuracy",
    "test_loss": "test loss", "test_acc": "test accuracy",
}


@dataclass(frozen=True)
class Progress:
    """What the callback gets: after every batch (``phase="train"``) and every epoch (``"epoch"``)."""

    phase: str
    epoch: int
    epochs: int
    batch: int
    batches: int
    loss: float
    history: tuple[EpochStats, ...]

    @property
    def fraction(self) -> float:
        """Share of the run done, 0..1 (for a progress bar)."""
        return min(1.0, ((self.epoch - 1) + self.batch / max(1, self.batches)) / self.epochs)


ProgressFn = Callable[[Progress], "bool | None"]


@dataclass
class TrainResult:
    """A trained network (on the CPU, in ``eval()``) with its curves."""

    model: SpecNet
    spec: Spec
    classes: tuple[str, ...]
    config: TrainConfig
    history: list[EpochStats]
    device: str
    notes: list[str] = field(default_factory=list)
    stopped: bool = False

    @property
    def test_accuracy(self) -> float:
        """Test accuracy after the last epoch."""
        return self.history[-1].test_acc if self.history else float("nan")


def fit_spec_to_data(spec: Spec, data: ImageData, *, strict: bool = False) -> tuple[Spec, list[str]]:
    """The spec with ``num_classes`` equal to the data's class count, and a note if it changed.

    ``strict=True`` (the user set ``num_classes`` on purpose) makes a mismatch a :class:`DataError`.
    The input size and channels must already match (the data was loaded for the spec).
    """
    if data.input_size != spec.input_size:
        raise DataError(f"the data was prepared at {data.input_size} px but the spec takes {spec.input_size} px")
    n = len(data.classes)
    if spec.num_classes == n:
        return spec, []
    if strict:
        raise DataError(f"num_classes is {spec.num_classes} but the data has {n} classes")
    return spec.with_overrides(num_classes=n), [
        f"classes (num_classes) set to {n:,} from the data (the spec had {spec.num_classes:,})"]


def index_batches(n: int, size: int, generator: torch.Generator | None = None) -> Iterator[torch.Tensor]:
    """Index batches over ``range(n)``: shuffled with ``generator``, else in order. A final batch of a
    single image is dropped when shuffling (batch norm cannot train on one sample)."""
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for start in range(0, n, size):
        index = order[start:start + size]
        if generator is not None and len(index) < 2:
            break
        yield index


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, in_channels: int,
             device: torch.device | str = "cpu", batch_size: int = 256) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` (put in ``eval()``) on uint8 images ``x``."""
    model.eval()
    loss_sum, correct = 0.0, 0
    with torch.no_grad():
        for index in index_batches(len(y), batch_size):
            inputs = to_model_input(x[index].to(device), in_channels)
            target = y[index].to(device)
            logits = model(inputs)
            loss_sum += float(nn.functional.cross_entropy(logits, target, reduction="sum"))
            correct += int((logits.argmax(1) == target).sum())
    n = max(1, len(y))
    return loss_sum / n, correct / n


def predict(model: nn.Module, x: torch.Tensor, *, in_channels: int, device: torch.device | str = "cpu",
            batch_size: int = 256) -> torch.Tensor:
    """Logits (float32, CPU) of ``model`` in ``eval()`` on uint8 images ``x``."""
    model.eval()
    out = []
    with torch.no_grad():
        for index in index_batches(len(x), batch_size):
            out.append(model(to_model_input(x[index].to(device), in_channels)).float().cpu())
    return torch.cat(out) if out else torch.empty(0)


def recalibrate_batch_norm(model: nn.Module, x: torch.Tensor, *, in_channels: int,
                           device: torch.device | str = "cpu", batch_size: int = 256) -> int:
    """Replace every batch-norm layer's running mean and variance by their average over the
    uint8 images ``x`` (the rest of the network in ``eval()``); return how many layers changed.

    Early in training the running averages (momentum 0.1) trail weights that still move
    fast, so an ``eval()`` test of the first epoch can sit near chance while training
    accuracy is high. Re-estimating them with the current weights ("precise BN") removes
    the lag; the weights are untouched.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms or len(x) < 2:
        return 0
    momenta = [m.momentum for m in norms]
    saved = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone()) for m in norms]
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches below, not an EMA
        m.train()
    try:
        with torch.no_grad():
            for index in index_batches(len(x), batch_size):
                if len(index) < 2:
                    break
                model(to_model_input(x[index].to(device), in_channels))
    finally:
        changed = 0
        for m, momentum, (mean, var, tracked) in zip(norms, momenta, saved):
            m.momentum = momentum
            if int(m.num_batches_tracked) == 0:  # not on the eval path (an aux head): keep what it had
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
                m.num_batches_tracked.copy_(tracked)
            else:
                changed += 1
        model.eval()
    return changed


ESTIMATE_BATCH_MACS = 2e9  # a full-batch training step is timed when its forward is at most this


def estimate_epoch_seconds(spec: Spec, data: ImageData, config: TrainConfig = TrainConfig(), *,
                           steps: int = 3) -> float:
    """Seconds one epoch of :func:`train` should take on this machine, measured now.

    Times the fastest of ``steps`` training steps on a full batch (after a warm-up step)
    and an evaluation forward, and scales them to the epoch's batches, its recalibration
    images and its test images. A network whose full-batch forward exceeds
    ``ESTIMATE_BATCH_MACS`` (counted from the spec) is timed on two images and scaled per
    image, which then dominates the fixed cost of a step, so the estimate stays cheap.
    """
    from explorer.cost import count_costs
    from explorer.infer.device import resolve_device

    config.check()
    spec, _ = fit_spec_to_data(spec, data)
    check_training_budget(spec, min(config.batch_size, len(data.train_y)))
    device = resolve_device(config.device)
    model = build_model(spec, seed=config.seed).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    n = len(data.train_y)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def step(size: int) -> float:
        model.train()
        tick = time.perf_counter()
        out = model(to_model_input(data.train_x[:size].to(device), spec.in_channels))
        logits = out[0] if isinstance(out, tuple) else out
        loss = nn.functional.cross_entropy(logits, data.train_y[:size].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        sync()
        return time.perf_counter() - tick

    def forward(size: int) -> float:
        model.eval()
        with torch.no_grad():
            tick = time.perf_counter()
            model(to_model_input(data.train_x[:size].to(device), spec.in_channels))
            sync()
            return time.perf_counter() - tick

    size = max(2, min(config.batch_size, n))
    if count_costs(spec).totals["macs"] * size > ESTIMATE_BATCH_MACS:
        size = 2
    with cpu_threads(config.threads if device.type == "cpu" else None):
        step(size)  # the first call of a shape pays one-off setup costs
        # the fastest step: a busy machine stalls single steps, and the run's own time replaces this later
        training = min(step(size) for _ in range(max(1, steps))) * n / size
        forward(size)
        per_image = min(forward(size), forward(size)) / size
    return training + per_image * (len(data.test_y) + min(config.bn_recalibration, n))


LAG_EPOCHS = 3
LAG_POINTS = 0.2


def accuracy_lag_note(history: Sequence[EpochStats], *, recalibrated: bool = True) -> str | None:
    """A line explaining a test accuracy far below the training accuracy in an early epoch
    (at most ``LAG_EPOCHS``, ``LAG_POINTS`` or more apart), else ``None``."""
    lagging = [h for h in history if h.epoch <= LAG_EPOCHS and h.train_acc - h.test_acc >= LAG_POINTS]
    if not lagging:
        return None
    h = lagging[-1]
    cause = (f"After epoch {h.epoch} the test accuracy ({h.test_acc:.1%}) lags the training accuracy "
             f"({h.train_acc:.1%}). The test runs in eval mode, where batch norm uses running averages of "
             "the training batches' statistics; early in training they trail weights that still change fast, "
             "so the test can sit near chance.")
    if recalibrated:
        return cause + (" This run re-estimated them on training images before each test, so the gap is the "
                        "network's own: more epochs or more data should close it.")
    return cause + (" They catch up within a few epochs; re-estimating them on training images before each "
                    "test (the Lab does it by default) removes most of the gap.")


@contextlib.contextmanager
def cpu_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` torch CPU threads (``None``: as they are), restoring them after.

    With OpenMP the setting belongs to the calling thread, so a Streamlit session training
    on one thread leaves the other sessions' threads alone.
    """
    if not threads:
        yield
        return
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


@contextlib.contextmanager
def _deterministic(device: torch.device) -> Iterator[None]:
    if device.type != "cuda":
        yield
        return
    saved = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved


def check_training_budget(spec: Spec, batch: int) -> None:
    """Refuse (:class:`~explorer.resources.BudgetError`) training whose one step would keep more activations
    (with their gradients, the auxiliary head included) than ``max_activation_bytes``, before anything is built."""
    check_budget(spec, batch=batch, training=True, what=f"training '{spec.name}'", lower="the batch size (batch_size)")


def train(spec: Spec, data: ImageData, config: TrainConfig = TrainConfig(), *,
          on_progress: ProgressFn | None = None, strict_classes: bool = False) -> TrainResult:
    """Train ``spec`` on ``data`` and return the network and its per-epoch curves.

    ``num_classes`` follows the data (noted in ``result.notes``) unless
    ``strict_classes``. ``on_progress`` is called after every batch and every
    epoch; if it returns ``False`` the run stops (``result.stopped``).
    """
    from explorer.infer.device import resolve_device

    config.check()
    spec, notes = fit_spec_to_data(spec, data, strict=strict_classes)
    if len(data.train_y) < 2:
        raise DataError(f"at least two training images are needed, the data has {len(data.train_y)}")
    check_training_budget(spec, min(config.batch_size, len(data.train_y)))
    device = resolve_device(config.device)
    model = build_model(spec, seed=config.seed).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    n = len(data.train_y)
    per_epoch = sum(1 for _ in index_batches(n, config.batch_size, torch.Generator().manual_seed(0)))
    total_steps = per_epoch * config.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps)))
    order = torch.Generator().manual_seed(config.seed)
    # its own generator, so the batch order is the same with and without recalibration
    calibration = torch.Generator().manual_seed(config.seed + 1)
    history: list[EpochStats] = []
    stopped = False
    start = time.perf_counter()
    in_ch = spec.in_channels
    with _deterministic(device), cpu_threads(config.threads if device.type == "cpu" else None):
        for epoch in range(1, config.epochs + 1):
            tick = time.perf_counter()
            lr = optimizer.param_groups[0]["lr"]
            model.train()
            loss_sum, correct, seen = 0.0, 0, 0
            for step, index in enumerate(index_batches(n, config.batch_size, order), 1):
                inputs = to_model_input(data.train_x[index].to(device), in_ch)
                target = data.train_y[index].to(device)
                out = model(inputs)
                logits, aux = out if isinstance(out, tuple) else (out, None)
                loss = nn.functional.cross_entropy(logits, target)
                total = loss + AUX_WEIGHT * nn.functional.cross_entropy(aux, target) if aux is not None else loss
                optimizer.zero_grad(set_to_none=True)
                total.backward()
                optimizer.step()
                scheduler.step()
                loss_sum += loss.item() * len(index)
                correct += int((logits.detach().argmax(1) == target).sum())
                seen += len(index)
                if on_progress and on_progress(Progress("train", epoch, config.epochs, step, per_epoch,
                                                        loss.item(), tuple(history))) is False:
                    stopped = True
                    break
            if config.bn_recalibration:
                pick = torch.randperm(n, generator=calibration)[:config.bn_recalibration]
                recalibrate_batch_norm(model, data.train_x[pick], in_channels=in_ch, device=device)
            test_loss, test_acc = evaluate(model, data.test_x, data.test_y, in_channels=in_ch, device=device)
            now = time.perf_counter()
            history.append(EpochStats(epoch, loss_sum / seen, correct / seen, test_loss, test_acc,
                                      now - tick, now - start, lr))
            if stopped:
                break
            if on_progress and on_progress(Progress("epoch", epoch, config.epochs, per_epoch, per_epoch,
                                                    history[-1].train_loss, tuple(history))) is False:
                stopped = epoch < config.epochs
                break
    model = model.cpu().eval()
    return TrainResult(model, spec, data.classes, config, history, str(device), notes + list(data.notes), stopped)
