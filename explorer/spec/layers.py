"""Shape propagation: a spec unrolled into its layers, in execution order.

This is the one description of a network that everything else reads. Each
:class:`Layer` is a leaf module of the built model (its ``name`` is the module
path), with the names of the layers it reads (``inputs``; ``"input"`` is the
image), its input and output shapes (per sample, no batch axis) and the
arguments its module is built with. The builder turns layers into modules,
the cost model prices them, the graph draws them, each reading what a layer's
kind means from one table (:mod:`explorer.spec.kinds`); no torch here.

Unrolling stops, with one error, as soon as the network has more layers than
the ``max_layers`` limit, or a layer is beyond any sane size
(:data:`MAX_LAYER_VALUES`, :data:`MAX_LAYER_MACS`): the costs of what passes
stay ordinary 64-bit numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence

from explorer import resources
from explorer.errors import SpecError
from explorer.format import shape as _fmt
from explorer.spec.kinds import Kind, kind_info
from explorer.spec.schema import (
    AuxHeadBlock,
    ClassifierBlock,
    ConvBlock,
    ConvStep,
    DropoutBlock,
    InceptionBlock,
    InputAffineBlock,
    PoolBlock,
    PoolStep,
    SepConvBlock,
    Spec,
    SpecBudgetError,
    SplitStep,
    XceptionBlock,
    block_paths,
    pair,
)

INPUT = "input"
Shape = tuple[int, ...]

# Sanity caps on one layer, per image, far above any real network (Xception's largest layer: 3.2 M
# values, 0.4 G multiply-adds): a layer beyond them is refused while unrolling, not priced.
MAX_LAYER_VALUES = 2**40
MAX_LAYER_MACS = 2**50


@dataclass(frozen=True)
class Layer:
    """One leaf module of the network, as the spec describes it."""

    name: str
    kind: Kind  # what it is; everything that follows from that is in explorer/spec/kinds.py
    flow: str
    block: str
    inputs: tuple[str, ...]
    in_shape: Shape
    out_shape: Shape
    config: Mapping[str, Any] = field(default_factory=dict)
    train_only: bool = False
    separable: str | None = None  # module path of the separable conv a depthwise/pointwise belongs to


class _Walker:
    """Carries the current tensor (its producer's name and shape) through the blocks."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.layers: list[Layer] = []
        self.flow = ""
        self.block = ""
        self.where = ""
        self.train_only = False
        self.max_layers = int(resources.limit("max_layers"))

    # -- emitting -----------------------------------------------------------
    def emit(self, name: str, kind: Kind, inputs: tuple[str, ...], in_shape: Shape,
             out_shape: Shape, separable: str | None = None, macs: int = 0, **config: Any) -> tuple[str, Shape]:
        if any(d <= 0 for d in out_shape):
            raise SpecError(self.where, f"'{name}' would output {_fmt(out_shape)}: the input is too small "
                                        f"for the network's kernels and strides (input_size {self.spec.input_size})")
        if math.prod(out_shape) > MAX_LAYER_VALUES:
            raise SpecError(self.where, f"'{name}' would output {_fmt(out_shape)}: over {MAX_LAYER_VALUES:,} "
                                        "values per image")
        if macs > MAX_LAYER_MACS:
            raise SpecError(self.where, f"'{name}' would take {macs:.3g} multiply-adds per image, over "
                                        f"{MAX_LAYER_MACS:.3g}")
        if len(self.layers) >= self.max_layers:
            limit = resources.LIMITS["max_layers"]
            raise SpecBudgetError(self.where, f"'{self.spec.name}' would need more than "
                                              f"{limit.format(self.max_layers)}, over the limit max_layers = "
                                              f"{limit.format(self.max_layers)} "
                                              f"({resources.how_to_raise('max_layers')})", "max_layers")
        self.layers.append(Layer(name, kind, self.flow, self.block, inputs, in_shape, out_shape,
                                 config, self.train_only, separable))
        return name, out_shape

    def conv(self, name: str, x: tuple[str, Shape], out: int, kernel: Any, stride: Any = 1,
             padding: Any = 0, groups: int = 1, bias: bool = False, kind: Kind = Kind.CONV,
             separable: str | None = None) -> tuple[str, Shape]:
        src, shape = x
        c, h, w = shape
        (kh, kw), (sh, sw), (ph, pw) = pair(kernel), pair(stride), pair(padding)
        if c % groups:
            raise SpecError(self.where + ".segments",
                            f"{c} input channels of '{name}' are not divisible by {groups} segments")
        if out % groups:
            raise SpecError(self.where + ".segments",
                            f"{out} output channels of '{name}' are not divisible by {groups} segments")
        oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
        return self.emit(name, kind, (src,), shape, (out, oh, ow), separable=separable,
                         macs=out * max(oh, 0) * max(ow, 0) * (c // groups) * kh * kw,
                         in_channels=c, out_channels=out, kernel=(kh, kw), stride=(sh, sw),
                         padding=(ph, pw), groups=groups, bias=bias)

    def bn(self, name: str, x: tuple[str, Shape]) -> tuple[str, Shape]:
        return self.emit(name, Kind.BATCHNORM, (x[0],), x[1], x[1], channels=x[1][0], eps=self.spec.bn_eps)

    def act(self, name: str, x: tuple[str, Shape], fn: str) -> tuple[str, Shape]:
        if fn == "none":
            return x
        return self.emit(name, Kind.ACTIVATION, (x[0],), x[1], x[1], fn=fn)

    def pool(self, name: str, x: tuple[str, Shape], mode: str, kernel: int = 3, stride: int = 1,
             padding: int = 0) -> tuple[str, Shape]:
        src, (c, h, w) = x
        if mode == "global_avg":
            return self.emit(name, Kind.POOL, (src,), x[1], (c,), mode=mode, kernel=(h, w))
        if padding * 2 > kernel:
            raise SpecError(self.where + ".padding", f"pool padding {padding} exceeds half the kernel {kernel}")
        oh, ow = (h + 2 * padding - kernel) // stride + 1, (w + 2 * padding - kernel) // stride + 1
        return self.emit(name, Kind.POOL, (src,), x[1], (c, oh, ow), macs=c * max(oh, 0) * max(ow, 0) * kernel**2,
                         mode=mode, kernel=(kernel, kernel),
                         stride=(stride, stride), padding=(padding, padding))

    def conv_bn_act(self, prefix: str, x: tuple[str, Shape], out: int, kernel: Any, stride: Any,
                    padding: Any, bn: bool = True, act: str = "relu") -> tuple[str, Shape]:
        x = self.conv(f"{prefix}.conv", x, out, kernel, stride, padding, bias=not bn)
        if bn:
            x = self.bn(f"{prefix}.bn", x)
        return self.act(f"{prefix}.act", x, act)

    def separable(self, prefix: str, x: tuple[str, Shape], out: int, kernel: int, stride: int,
                  padding: int, mid_activation: str, segments: int | None,
                  separable: bool = True) -> tuple[str, Shape]:
        if not separable:  # the regular conv it stands for (the `separable` knob): no mid activation, no groups
            return self.conv(f"{prefix}.conv", x, out, kernel, stride, padding)
        cin = x[1][0]
        groups = cin if segments is None else segments
        kind = Kind.DEPTHWISE if groups == cin else (Kind.CONV if groups == 1 else Kind.GROUPED_CONV)
        x = self.conv(f"{prefix}.depthwise", x, cin, kernel, stride, padding, groups=groups,
                      kind=kind, separable=prefix)
        x = self.act(f"{prefix}.mid_act", x, mid_activation)
        return self.conv(f"{prefix}.pointwise", x, out, 1, kind=Kind.POINTWISE, separable=prefix)

    # -- blocks -------------------------------------------------------------
    def block_conv(self, b: ConvBlock, p: str, x: tuple[str, Shape]) -> tuple[str, Shape]:
        return self.conv_bn_act(p, x, b.out, b.kernel, b.stride, b.padding, b.bn, b.act)

    def block_sepconv(self, b: SepConvBlock, p: str, x: tuple[str, Shape]) -> tuple[str, Shape]:
        x = self.separable(p, x, b.out, b.kernel, b.stride, b.padding, b.mid_activation, b.segments,
                           b.separable)
        return self.act(f"{p}.act", self.bn(f"{p}.bn", x), b.act)

    def block_xception(self, b: XceptionBlock, p: str, x: tuple[str, Shape]) -> tuple[str, Shape]:
        block_in = x
        for i, out in enumerate(b.channels, 1):
            if i > 1 or b.start_with_relu:
                x = self.act(f"{p}.act{i}", x, "relu")
            x = self.separable(f"{p}.sep{i}", x, out, b.kernel, 1, b.kernel // 2,
                               b.mid_activation, b.segments, b.separable)
            x = self.bn(f"{p}.bn{i}", x)
        if b.stride > 1:
            x = self.pool(f"{p}.pool", x, "max", 3, b.stride, 1)
        if b.residual == "none":
            return x
        if b.residual == "identity":
            if block_in[1] != x[1]:
                raise SpecError(self.where + ".residual",
                                f"an identity shortcut needs equal shapes, but the block maps "
                                f"{_fmt(block_in[1])} to {_fmt(x[1])}: use 'projection'")
            skip = block_in
        else:
            skip = self.conv(f"{p}.skip.conv", block_in, x[1][0], 1, b.stride)
            skip = self.bn(f"{p}.skip.bn", skip)
            if skip[1] != x[1]:
                raise SpecError(self.where + ".residual",
                                f"the shortcut gives {_fmt(skip[1])} but the block gives {_fmt(x[1])}")
        return self.emit(f"{p}.add", Kind.ADD, (x[0], skip[0]), x[1], x[1])

    def block_inception(self, b: InceptionBlock, p: str, x: tuple[str, Shape]) -> tuple[str, Shape]:
        outs: list[tuple[str, Shape]] = []
        for branch in b.branches:
            y = x
            for step in branch:
                if isinstance(step, ConvStep):
                    y = self.conv_bn_act(f"{p}.{step.name}", y, step.out, step.kernel, step.stride, step.padding)
                elif isinstance(step, PoolStep):
                    y = self.pool(f"{p}.{step.name}", y, step.mode, step.kernel, step.stride, step.padding)
                elif isinstance(step, SplitStep):
                    for path in step.paths:
                        z = y
                        for conv in path:
                            z = self.conv_bn_act(f"{p}.{conv.name}", z, conv.out, conv.kernel,
                                                 conv.stride, conv.padding)
                        outs.append(z)
                    y = None  # type: ignore[assignment]
            if y is not None:
                outs.append(y)
        spatial = {s[1:] for _, s in outs}
        if len(spatial) > 1:
            sizes = ", ".join(f"{n.rsplit('.', 1)[-1]} {_fmt(s)}" for n, s in outs)
            raise SpecError(self.where + ".branches", f"branches end at different sizes: {sizes}")
        channels = sum(s[0] for _, s in outs)
        return self.emit(f"{p}.concat", Kind.CONCAT, tuple(n for n, _ in outs), x[1],
                         (channels, *outs[0][1][1:]))

    def block_aux_head(self, b: AuxHeadBlock, p: str, x: tuple[str, Shape]) -> tuple[str, Shape]:
        self.train_only = True
        y = self.pool(f"{p}.pool", x, "avg", b.pool_kernel, b.pool_stride)
        y = self.conv_bn_act(f"{p}.conv0", y, b.channels[0], 1, 1, 0)
        y = self.conv_bn_act(f"{p}.conv1", y, b.channels[1], b.kernel, 1, 0)
        y = self.pool(f"{p}.gap", y, "global_avg")
        self.linear(f"{p}.fc", y, True)
        self.train_only = False
        return x  # a side output: the main path goes on from its input

    def block_pool(self, b: PoolBlock, p: str, x: tuple[str, Shape]) -> tuple[str, Shape]:
        return self.pool(p, x, b.mode, b.kernel, b.stride, b.padding)

    def block_dropout(self, b: DropoutBlock, p: str, x: tuple[str, Shape]) -> tuple[str, Shape]:
        return self.emit(p, Kind.DROPOUT, (x[0],), x[1], x[1], p=b.p)

    def block_classifier(self, b: ClassifierBlock, p: str, x: tuple[str, Shape]) -> tuple[str, Shape]:
        return self.linear(p, x, b.bias)

    def linear(self, name: str, x: tuple[str, Shape], bias: bool) -> tuple[str, Shape]:
        if len(x[1]) != 1:
            raise SpecError(self.where, f"'{name}' needs a flat input: put a global_avg pool before it "
                                        f"(it gets {_fmt(x[1])})")
        return self.emit(name, Kind.LINEAR, (x[0],), x[1], (self.spec.num_classes,),
                         macs=x[1][0] * self.spec.num_classes, in_features=x[1][0],
                         out_features=self.spec.num_classes, bias=bias)

    def block_input_affine(self, b: InputAffineBlock, p: str, x: tuple[str, Shape]) -> tuple[str, Shape]:
        return self.emit(p, Kind.AFFINE, (x[0],), x[1], x[1], scale=tuple(b.scale), shift=tuple(b.shift))

    def run(self) -> list[Layer]:
        spec = self.spec
        x: tuple[str, Shape] = (INPUT, (spec.in_channels, spec.input_size, spec.input_size))
        if math.prod(x[1]) > MAX_LAYER_VALUES:
            raise SpecError("in_channels", f"the input would be {_fmt(x[1])}: over {MAX_LAYER_VALUES:,} values "
                                           "per image")
        for index, block in enumerate(spec.blocks):
            self.flow = block.flow
            for path in block_paths(block):
                self.block = path
                self.where = f"blocks[{index}] ({path})"
                if len(x[1]) == 1 and block.type not in ("classifier", "dropout"):
                    raise SpecError(self.where, f"a {block.type} block cannot follow the global pool")
                x = getattr(self, f"block_{block.type}")(block, path, x)
        if len(x[1]) != 1:
            raise SpecError("blocks", "the network must end in a classifier (after a global_avg pool)")
        return self.layers


def spec_layers(spec: Spec) -> list[Layer]:
    """Unroll ``spec`` into its layers in execution order; raise :class:`SpecError` if it cannot run."""
    return _Walker(spec).run()


def free_after(layers: Sequence[Layer], *, training: bool = False) -> list[tuple[str, ...]]:
    """For each layer, the tensors no later layer reads: an eager forward frees them after it.

    In eval (``training=False``) the train-only layers (Inception's aux head) do
    not run, so they keep nothing alive.
    """
    last: dict[str, int] = {}
    for i, layer in enumerate(layers):
        if training or not layer.train_only:
            for name in layer.inputs:
                last[name] = i
    frees: list[list[str]] = [[] for _ in layers]
    for name, i in last.items():
        frees[i].append(name)
    return [tuple(f) for f in frees]


def iter_params(layer: Layer) -> Iterator[tuple[str, Shape]]:
    """The learnable tensors a layer's module holds, as (suffix, shape), in registration order."""
    return kind_info(layer.kind).params(layer)


def param_count(layer: Layer) -> int:
    """Number of learnable parameters of ``layer``'s module."""
    return sum(math.prod(shape) for _, shape in iter_params(layer))
