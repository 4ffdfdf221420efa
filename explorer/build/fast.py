"""An inference-only copy of a spec network: batch norms folded into their convs, ReLUs and adds in place.

The model that :func:`explorer.infer.load_model` returns stays exactly as built
(one module per layer, nothing in place) for hooks and attribution; prediction
runs this copy, which computes the same function with fewer passes over memory:

* a batch norm whose only input is a conv read by nothing else is folded into
  that conv's weight and bias (``torch.nn.utils.fusion.fuse_conv_bn_eval``);
* a ReLU or an add overwrites its input when no later layer reads that tensor;
  for a copy that will be differentiated (``autograd=True``, the hook-free attribution methods) only
  where no backward pass can need the overwritten tensor (see :data:`KEEPS_NO_OUTPUT`);
* dropout (the identity in eval) is left out;
* on the CPU (fp32), a ReLU that alone reads a conv runs inside it, and for
  single images the conv weights are laid out for oneDNN once rather than at
  every call (:func:`pack_for_cpu`, with the oneDNN ops ``torch.compile`` uses).

The copy never trains and is never hooked; it keeps no train-only layers.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from explorer.build.modules import Add
from explorer.spec import INPUT, Kind, kind_info

# Modules whose backward pass needs their inputs (or nothing), never their output: conv (input and
# weight), batch norm (input, statistics), max pool (input, indices), average pool (input), the residual
# add (nothing). A tensor one of these made and that exactly one later layer reads is saved by no
# autograd node, so under autograd that reader may overwrite it (tests/test_explain_fold.py checks the
# saved tensors of each). A ReLU is not here: it keeps its output, and overwriting that breaks backward.
KEEPS_NO_OUTPUT: tuple[type[nn.Module], ...] = (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, nn.AvgPool2d, Add)


class _Step(nn.Module):
    """One layer of the fast network: its module, the names it reads, and whether it may overwrite them."""

    def __init__(self, module: nn.Module, inputs: tuple[str, ...], inplace: bool) -> None:
        super().__init__()
        self.module = module
        self.inputs = inputs
        self.inplace = inplace

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        if self.inplace:
            if isinstance(self.module, nn.ReLU):
                return torch.relu_(xs[0])
            if isinstance(self.module, Add):
                return xs[0].add_(xs[1])
        return self.module(*xs)


class FastNet(nn.Module):
    """The eval-mode function of a :class:`explorer.build.SpecNet`, folded and in place (see the module doc).

    ``inplace``: let a ReLU or an add overwrite its input where allowed (False: never).
    ``autograd``: the copy will be differentiated (attribution): a ReLU or an add overwrites only a
    tensor that a :data:`KEEPS_NO_OUTPUT` module made and that nothing else reads, so that no backward
    pass needs it. The default (inference: ``torch.no_grad``/``inference_mode``) overwrites any tensor
    whose last reader it is, which can break autograd (e.g. an add over a ReLU's saved output).
    """

    def __init__(self, net: nn.Module, *, inplace: bool = True, autograd: bool = False) -> None:
        super().__init__()
        self.autograd = autograd
        net = copy.deepcopy(net).eval()
        layers = [layer for layer in net.layers if not layer.train_only]
        kinds = {layer.name: layer.kind for layer in layers}
        convs = {name for name, kind in kinds.items() if kind_info(kind).conv}
        readers: dict[str, int] = {}
        for layer in layers:
            for name in layer.inputs:
                readers[name] = readers.get(name, 0) + 1
        alias: dict[str, str] = {}
        names: list[str] = []
        plan: list[tuple[str, nn.Module, tuple[str, ...]]] = []
        position: dict[str, int] = {}
        in_shapes: dict[str, tuple[int, ...]] = {}
        for layer in layers:
            inputs = tuple(alias.get(i, i) for i in layer.inputs)
            module = net.get_submodule(layer.name)
            if kind_info(layer.kind).eval_identity:  # dropout: drop it, so no two names hold one tensor
                alias[layer.name] = inputs[0]
                for name in inputs:
                    readers[name] = readers.get(name, 0) - 1 + readers.get(layer.name, 0)
                continue
            if (layer.kind == Kind.BATCHNORM and len(inputs) == 1 and inputs[0] in convs
                    and readers.get(inputs[0]) == 1):
                conv_name = inputs[0]
                index = position[conv_name]
                plan[index] = (conv_name, fuse_conv_bn_eval(plan[index][1], module), plan[index][2])
                alias[layer.name] = conv_name
                continue
            position[layer.name] = len(plan)
            plan.append((layer.name, module, inputs))
            in_shapes[layer.name] = layer.in_shape
        self.output = alias.get(layers[-1].name, layers[-1].name)
        last_read: dict[str, int] = {}
        read_by: dict[str, int] = {}
        for i, (_, _, inputs) in enumerate(plan):
            for name in inputs:
                last_read[name] = i
                read_by[name] = read_by.get(name, 0) + 1
        made_by = {name: module for name, module, _ in plan}
        steps = []
        for i, (name, module, inputs) in enumerate(plan):
            kind = kinds[name]
            # overwrite the first input only where this step is its last reader and it is not the caller's tensor
            mutable = bool(inputs) and inputs[0] != INPUT and last_read.get(inputs[0]) == i \
                and inputs.count(inputs[0]) == 1
            overwrite = inplace and mutable and kind_info(kind).inplace_ok and isinstance(module, (nn.ReLU, Add))
            if overwrite and autograd:
                # no backward may need the overwritten tensor: its maker keeps no output, and no other layer
                # read it (an earlier reader, e.g. a conv, would have saved it for its own backward)
                overwrite = read_by.get(inputs[0]) == 1 and isinstance(made_by.get(inputs[0]), KEEPS_NO_OUTPUT)
            steps.append(_Step(module, inputs, overwrite))
            names.append(name)
        self.steps = nn.ModuleList(steps)
        self.names = tuple(names)
        self.kinds = tuple(kinds[name] for name in names)
        self.in_shapes = tuple(in_shapes[name] for name in names)
        self.frees = tuple(tuple(n for n, last in last_read.items() if last == i and n != self.output)
                           for i in range(len(plan)))
        self.folded = sum(kinds[name] == Kind.BATCHNORM for name in alias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        env: dict[str, torch.Tensor] = {INPUT: x}
        del x
        for step, name, free in zip(self.steps, self.names, self.frees):
            env[name] = step(*[env[i] for i in step.inputs])
            for dead in free:
                env.pop(dead, None)
        return env[self.output]

    def train(self, mode: bool = True) -> "FastNet":
        if mode:
            raise RuntimeError("a FastNet is for inference only")
        return super().train(False)


class _PackedConv(nn.Module):
    """A conv with its ReLU optionally fused in, whose weight oneDNN has laid out ahead for one image.

    oneDNN picks the weight layout for the batch size: the prepacked one serves single images (the
    interactive case); a batch runs the plain weight, as an ordinary conv.
    """

    def __init__(self, conv: nn.Conv2d, in_shape: tuple[int, ...], relu: bool) -> None:
        super().__init__()
        self.args = (list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups)
        # plain attributes, not parameters: .to() and state_dict() must not touch the opaque oneDNN tensor
        self.weight = conv.weight.detach().contiguous(memory_format=torch.channels_last)
        self.bias = None if conv.bias is None else conv.bias.detach().clone()
        self.packed = torch.ops.mkldnn._reorder_convolution_weight(self.weight, *self.args, [1, *in_shape])
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] == 1:
            return torch.ops.mkldnn._convolution_pointwise(
                x, self.packed, self.bias, *self.args, "relu" if self.relu else "none", [], "")
        padding, stride, dilation, groups = self.args
        y = nn.functional.conv2d(x, self.weight, self.bias, stride, padding, dilation, groups)
        return torch.relu_(y) if self.relu else y


def can_pack() -> bool:
    """Whether this torch has the oneDNN ops :func:`pack_for_cpu` uses."""
    ops = getattr(torch.ops, "mkldnn", None)
    try:
        return bool(torch.backends.mkldnn.is_available() and ops is not None
                    and hasattr(ops, "_convolution_pointwise") and hasattr(ops, "_reorder_convolution_weight"))
    except (AttributeError, RuntimeError):
        return False


def pack_for_cpu(net: FastNet) -> FastNet:
    """Prepack ``net``'s conv weights for oneDNN and fuse each ReLU that alone reads a conv (CPU, fp32 only).

    Changes ``net`` in place; the function it computes stays the same. Without the ops, ``net`` is unchanged.
    """
    if not can_pack():
        return net
    readers: dict[str, list[int]] = {}
    for i, step in enumerate(net.steps):
        for name in step.inputs:
            readers.setdefault(name, []).append(i)
    for i, (step, name) in enumerate(zip(net.steps, net.names)):
        if not isinstance(step.module, nn.Conv2d) or step.module.padding_mode != "zeros":
            continue
        after = readers.get(name, [])
        fuse = (len(after) == 1 and name != net.output and isinstance(net.steps[after[0]].module, nn.ReLU))
        step.module = _PackedConv(step.module, net.in_shapes[i], fuse)
        if fuse:  # the ReLU's work is done inside the conv: it passes the tensor on
            relu = net.steps[after[0]]
            relu.module, relu.inplace = nn.Identity(), False
    return net


def fast_copy(net: nn.Module, *, pack: bool = False, inplace: bool = True, autograd: bool = False) -> nn.Module:
    """A :class:`FastNet` of ``net`` (a spec network), its convs prepacked for the CPU with ``pack``;
    any other module is returned as it is.

    ``autograd=True`` makes a copy that attribution may differentiate (see :class:`FastNet`); it cannot
    be packed (the prepacked oneDNN convs are for inference only).
    """
    if pack and autograd:
        raise ValueError("a packed copy is for inference only: pack=True and autograd=True do not go together")
    if not hasattr(net, "layers"):
        return net
    fast = FastNet(net, inplace=inplace, autograd=autograd)
    return pack_for_cpu(fast.to(memory_format=torch.channels_last)) if pack else fast
