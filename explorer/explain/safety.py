"""Attribution that leaves the caller's model as it found it, also when many threads share it.

The policy: **every attribution runs on a private replica of the model**
(a deep copy in ``eval()`` with its parameters frozen), borrowed from a small
per-model pool. Why a copy rather than a lock on the shared model:

* Captum's GuidedBackprop / GuidedGradCam hook every ``nn.ReLU`` and
  LayerGradCam hooks its layer. On a model shared between sessions (the
  model cache of :func:`explorer.weights.load_model`) those hooks would
  reach *every* thread using the model, not only other explanations: a
  classify running at that moment would get GuidedBackprop's tensor hooks
  (which fail under ``no_grad``) or feed its activations to another
  session's Grad-CAM. A lock is only safe if every
  user of the model takes it; a replica is safe whatever the others do.
* A lock would also queue every session behind one 20-second IntegratedGradients.
* Frozen parameters (``requires_grad=False`` on the replica only) let
  autograd skip saving activations for weight gradients nobody asked for,
  which saves memory and time; the shared model's flags are never touched.
* ``eval()`` is set on the replica, so a caller's model in training mode is
  explained in eval mode without flipping its state.

A replica costs one copy of the weights (about 90 MB for the full presets) per
concurrent explanation; one idle replica per model is kept for the next call
and dropped when the model's weights change (checked by a fingerprint of
every parameter's storage and version counter) or the model is collected.
The idle replicas of a model in :func:`explorer.weights.load_model`'s cache
count in that model's bytes against the cache's budget, and go when it goes
(every pool registers itself with :func:`explorer.weights.load.register_keeper`).

A **folded replica** (``borrow(model, folded=True)``) is the same idea for the methods that hook
nothing (Saliency, Integrated Gradients, SmoothGrad, Occlusion): the gradient-safe inference copy of a
spec network (:class:`explorer.build.fast.FastNet` with ``autograd=True``: batch norms folded into
their convs, a ReLU or add in place only where no backward needs the overwritten tensor), in
``eval()``, frozen, in the model's memory format. It computes the same function with fewer layers,
and autograd no longer keeps every batch norm's input. It is pooled like the plain one (one idle
folded replica per model, beside the idle plain one); a model that is not a spec network (no
``.layers``) gets the plain replica.

Hooks: after every run, success or failure, any forward/backward hook added
to the replica is removed (and the replica discarded), so none can outlive a
failed Captum call. :func:`installed_hooks` lists the hooks on a model and the
global hook registries, for tests and for checks.
"""

from __future__ import annotations

import contextlib
import copy
import threading
import weakref
from collections.abc import Iterator, Sequence
from itertools import chain

import torch
from torch import nn
from torch.nn.modules import module as _module

from explorer.weights import load as _load

MODULE_HOOK_DICTS: tuple[str, ...] = (
    "_forward_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called",
    "_forward_pre_hooks", "_forward_pre_hooks_with_kwargs", "_backward_hooks", "_backward_pre_hooks",
)
GLOBAL_HOOK_DICTS: tuple[str, ...] = (
    "_global_forward_hooks", "_global_forward_hooks_with_kwargs", "_global_forward_hooks_always_called",
    "_global_forward_pre_hooks", "_global_backward_hooks", "_global_backward_pre_hooks",
)

HookSnapshot = dict[tuple[str, str], frozenset]


def hook_snapshot(model: nn.Module) -> HookSnapshot:
    """The ids of every forward/backward hook on ``model``'s modules and in torch's global registries."""
    snap: HookSnapshot = {}
    for name, module in model.named_modules():
        for attr in MODULE_HOOK_DICTS:
            hooks = getattr(module, attr, None)
            if hooks:
                snap[(name or "<model>", attr)] = frozenset(hooks)
    for attr in GLOBAL_HOOK_DICTS:
        hooks = getattr(_module, attr, None)
        if hooks:
            snap[("<global>", attr)] = frozenset(hooks)
    return snap


def installed_hooks(model: nn.Module) -> list[str]:
    """Every hook on ``model`` and in the global registries, as ``module.dict[id]`` strings (empty: none)."""
    return [f"{where}.{attr}[{key}]" for (where, attr), keys in hook_snapshot(model).items() for key in sorted(keys)]


def remove_hooks_added(model: nn.Module | Sequence[tuple[str, nn.Module]], before: HookSnapshot) -> list[str]:
    """Remove the module hooks added to ``model`` since ``before``; returns what was removed.

    ``model`` may be given as its ``named_modules()`` list (a replica's never changes: listed once).
    Only for a model this thread owns (a replica): the global registries are left alone, since
    another thread's hooks may be there.
    """
    removed: list[str] = []
    named = model.named_modules() if isinstance(model, nn.Module) else model
    for name, module in named:
        key = name or "<model>"
        for attr in MODULE_HOOK_DICTS:
            hooks = getattr(module, attr, None)
            if not hooks:
                continue
            old = before.get((key, attr), frozenset())
            for hook_id in [k for k in hooks if k not in old]:
                del hooks[hook_id]
                removed.append(f"{key}.{attr}[{hook_id}]")
    return removed


def fingerprint(model: nn.Module) -> tuple:
    """Storage and version counter of every parameter and buffer: changes when the weights change in place
    (``load_state_dict``, an optimizer step, ``reset_parameters``), are replaced or move (``.to(device)``).

    One pass over the modules (it runs on every explanation, so it stays cheap).
    """
    stamp = []
    for module in model.modules():
        for tensor in chain(module._parameters.values(), module._buffers.values()):
            if tensor is not None:
                stamp.append((tensor.data_ptr(), tensor._version))
    return tuple(stamp)


def make_replica(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` in ``eval()`` with frozen parameters (the original is not touched)."""
    replica = copy.deepcopy(model)
    replica.eval()
    replica.requires_grad_(False)
    return replica


def can_fold(model: nn.Module) -> bool:
    """Whether ``model`` has a folded replica: a spec network (it has ``.layers``)."""
    return hasattr(model, "layers")


def make_folded_replica(model: nn.Module) -> nn.Module:
    """The gradient-safe :class:`~explorer.build.fast.FastNet` of ``model`` (a spec network), in ``eval()``,
    with frozen parameters, in the memory format ``model`` prefers (the original is not touched)."""
    from explorer.build.fast import FastNet

    replica = FastNet(model, autograd=True).eval()
    replica.requires_grad_(False)
    if prefers_channels_last(model):
        replica = replica.to(memory_format=torch.channels_last)
    return replica


class ReplicaPool:
    """Private replicas of shared models, one borrower at a time, a few kept idle for reuse
    (``max_idle`` per model and kind: plain, folded)."""

    def __init__(self, max_idle: int = 1) -> None:
        self.max_idle = max_idle
        self._lock = threading.Lock()
        # model -> [(fingerprint of the model it was copied from, folded?, replica, the replica's own hooks,
        #            the replica's named modules)]
        self._idle: weakref.WeakKeyDictionary[nn.Module, list[tuple]] = weakref.WeakKeyDictionary()
        _load.register_keeper(self)  # the idle replicas count in their model's cache bytes

    @contextlib.contextmanager
    def borrow(self, model: nn.Module, folded: bool = False) -> Iterator[nn.Module]:
        """A replica of ``model`` for this thread only; hooks added to it are removed afterwards.

        ``folded``: the folded replica (see the module docstring) when ``model`` is a spec network,
        else the plain one (tell them apart with :func:`is_folded`).
        """
        folded = folded and can_fold(model)
        stamp = fingerprint(model)
        taken = self._take(model, stamp, folded)
        if taken is None:
            replica = make_folded_replica(model) if folded else make_replica(model)
            taken = (replica, hook_snapshot(replica), list(replica.named_modules()))
        replica, clean, modules = taken
        ok = False
        try:
            yield replica
            ok = True
        finally:
            leaked = remove_hooks_added(modules, clean)
            # a failed run may have left state behind in Captum's objects: start afresh next time
            if ok and not leaked and not replica.training:
                self._give_back(model, stamp, folded, taken)

    def _take(self, model: nn.Module, stamp: tuple, folded: bool) -> tuple | None:
        with self._lock:
            idle = self._idle.get(model)
            if not idle:
                return None
            # replicas of other weights are stale (the caller's model changed): dropped here, of both kinds
            fresh = [entry for entry in idle if entry[0] == stamp]
            mine = next((entry for entry in fresh if entry[1] == folded), None)
            self._idle[model] = [entry for entry in fresh if entry is not mine]
            return None if mine is None else mine[2:]

    def _give_back(self, model: nn.Module, stamp: tuple, folded: bool, taken: tuple) -> None:
        # if the model changed meanwhile, the next borrower's stamp will not match and drops this one
        with self._lock:
            idle = self._idle.setdefault(model, [])
            kept = sum(entry[1] == folded for entry in idle) < self.max_idle
            if kept:
                idle.append((stamp, folded, *taken))
        if kept:  # outside the lock: the cache asks every pool what it keeps
            _load.trim_cache(model)

    def kept(self, model: nn.Module) -> list[nn.Module]:
        """The idle replicas of ``model`` (for the model cache's byte count)."""
        return self.idle_replicas(model)

    def forget(self, model: nn.Module) -> None:
        """Drop the idle replicas of ``model`` (it left the model cache)."""
        with self._lock:
            self._idle.pop(model, None)

    def idle_replicas(self, model: nn.Module, folded: bool | None = None) -> list[nn.Module]:
        """The replicas of ``model`` waiting for reuse, of one kind or (None) both (for tests: they must
        carry no hook)."""
        with self._lock:
            return [entry[2] for entry in self._idle.get(model, []) if folded is None or entry[1] == folded]

    def clear(self) -> None:
        """Drop every idle replica (frees their memory)."""
        with self._lock:
            self._idle.clear()


POOL = ReplicaPool()


@contextlib.contextmanager
def private_model(model: nn.Module, pool: ReplicaPool | None = None, folded: bool = False) -> Iterator[nn.Module]:
    """The model an attribution may hook and run: a pooled replica of ``model`` (see the module docstring);
    with ``folded``, the folded replica when ``model`` is a spec network (for methods that hook nothing)."""
    with (pool or POOL).borrow(model, folded) as replica:
        yield replica


def is_folded(replica: nn.Module) -> bool:
    """Whether ``replica`` is a folded replica (a :class:`~explorer.build.fast.FastNet`)."""
    from explorer.build.fast import FastNet

    return isinstance(replica, FastNet)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a model without any)."""
    for tensor in chain(model.parameters(), model.buffers()):
        return tensor.device
    return torch.device("cpu")


def prefers_channels_last(model: nn.Module) -> bool:
    """Whether the model's 4-D weights are stored channels_last (then the input should be too)."""
    for p in model.parameters():
        if p.dim() == 4 and p.shape[1] > 1 and p.shape[2] * p.shape[3] > 1:
            return p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
    return False
