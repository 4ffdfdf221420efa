"""The block-spec schema: frozen pydantic models validated from plain data.

A spec describes a network as an ordered list of blocks. It holds only what a
person chooses (channels, kernels, strides, ablation switches), never derived
values such as input channels or shapes: those come from shape propagation in
:mod:`explorer.spec.layers`.

Validation is cheap and bounded before anything is unrolled: every whole number
has a ceiling (no huge number reaches the shape or cost arithmetic), a block's
``repeat`` and the blocks' instances together are held to the ``max_layers``
limit and ``input_size`` to ``max_input_size`` (:mod:`explorer.resources`), and
no block or step may take a name the built modules already use as an
attribute (:data:`RESERVED_NAMES`).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from explorer import resources
from explorer.errors import SpecError
from explorer.resources import BudgetError

Activation = Literal["none", "relu", "elu"]
Residual = Literal["projection", "identity", "none"]
PoolMode = Literal["max", "avg"]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_STEP_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# Ceilings on the numbers a spec holds: far above any real network, low enough that the products of
# shape propagation and costing stay ordinary 64-bit numbers (see also explorer.spec.layers' per-layer caps).
MAX_INT = 2**31 - 1
MAX_CLASSES = 2**20  # a name is made for every class: a million is plenty and costs ~70 MB

PosInt = Annotated[int, Field(ge=1, le=MAX_INT)]
NonNegInt = Annotated[int, Field(ge=0, le=MAX_INT)]

# Attributes of the built network (explorer.build.SpecNet) and of the containers of its module tree:
# a block or step with one of these names would collide with them when the module is added
# (``forward``, ``training``, ``state_dict``...). Names with a leading underscore (torch's internals,
# dunders) are refused by rule; so are the copies of a repeated block that would take one (a block
# 'bfloat' repeated 16 times). torch is not imported here: tests/test_budget.py checks this set against
# a built network.
RESERVED_NAMES: frozenset[str] = frozenset({
    "T_destination", "add_module", "apply", "bfloat16", "buffers", "call_super_init", "children", "compile",
    "cpu", "cuda", "double", "dump_patches", "eval", "extra_repr", "float", "forward", "get_buffer",
    "get_extra_state", "get_parameter", "get_submodule", "half", "ipu", "layers", "load_state_dict", "modules",
    "mtia", "named_buffers", "named_children", "named_modules", "named_parameters", "parameters",
    "register_backward_hook", "register_buffer", "register_forward_hook", "register_forward_pre_hook",
    "register_full_backward_hook", "register_full_backward_pre_hook", "register_load_state_dict_post_hook",
    "register_load_state_dict_pre_hook", "register_module", "register_parameter",
    "register_state_dict_post_hook", "register_state_dict_pre_hook", "requires_grad_", "set_extra_state",
    "set_submodule", "share_memory", "spec", "state_dict", "to", "to_empty", "train", "training", "type",
    "xpu", "zero_grad",
})


class SpecBudgetError(SpecError, BudgetError):
    """A spec over one of the limits (``max_layers``, ``max_input_size``): a :class:`SpecError` naming the
    field and a :class:`~explorer.resources.BudgetError` naming the limit (``limit``) and how to raise it."""

    def __init__(self, path: str, reason: str, limit: str) -> None:
        self.path, self.reason, self.limit = path, reason, limit
        Exception.__init__(self, f"{path}: {reason}" if path else reason)


def _reserved(part: str) -> str | None:
    """Why ``part`` (one dotted part of a module path) cannot be a module name, or None."""
    if part.startswith("_"):
        return f"'{part}' starts with an underscore (kept for the modules' internals)"
    if part in RESERVED_NAMES:
        return f"'{part}' is an attribute of the built modules (reserved)"
    return None


def _reserved_copy(name: str, repeat: int) -> str | None:
    """The first of the copies ``name1..name{repeat}`` whose last part is a reserved name, or None."""
    last = name.rsplit(".", 1)[-1]
    for reserved in sorted(RESERVED_NAMES):
        number = reserved[len(last):]
        if reserved.startswith(last) and number.isdigit() and number[0] != "0" and int(number) <= repeat:
            return reserved
    return None


Pair = Union[PosInt, tuple[PosInt, PosInt]]
PadPair = Union[NonNegInt, tuple[NonNegInt, NonNegInt]]


def pair(value: int | tuple[int, int]) -> tuple[int, int]:
    """Return ``value`` as an (height, width) pair."""
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _Block(_Frozen):
    name: str = Field(description="Module path of the block, e.g. 'entry.block2'.")
    flow: str = Field(min_length=1, description="Flow the block belongs to, e.g. 'entry'.")
    repeat: NonNegInt | None = Field(
        default=None,
        description="Repeat the block this many times as name1..nameN (None: once, named as is).",
    )

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("must be dotted Python identifiers, e.g. 'entry.block1'")
        for part in value.split("."):
            if (why := _reserved(part)) is not None:
                raise ValueError(f"{why}: choose another name")
        return value

    @field_validator("repeat")
    @classmethod
    def _check_repeat(cls, value: int | None) -> int | None:
        if value is not None:
            resources.check("max_layers", f"{value:,} copies", value)  # each copy is a layer at least
        return value

    @model_validator(mode="after")
    def _check_copies(self) -> "_Block":
        if self.repeat and (taken := _reserved_copy(self.name, self.repeat)) is not None:
            raise ValueError(f"repeat: copy '{taken}' would be an attribute of the built modules (reserved)")
        return self


class ConvBlock(_Block):
    """A plain convolution followed by batch norm and an activation."""

    type: Literal["conv"] = "conv"
    out: PosInt
    kernel: Pair = 3
    stride: Pair = 1
    padding: PadPair = 0
    bn: bool = True
    act: Activation = "relu"


_SEPARABLE_HELP = "False: a regular conv with the same input, output, kernel, stride and padding in place " \
             "of the separable one (mid_activation and segments then have no effect)."


class SepConvBlock(_Block):
    """A separable convolution (spatial, optional activation, pointwise), batch norm, activation."""

    type: Literal["sepconv"] = "sepconv"
    out: PosInt
    kernel: PosInt = 3
    stride: PosInt = 1
    padding: NonNegInt = 1
    mid_activation: Activation = "none"
    segments: PosInt | None = Field(
        default=None, description="Groups of the spatial conv; None means one per channel (depthwise)."
    )
    separable: bool = Field(default=True, description=_SEPARABLE_HELP)
    act: Activation = "relu"


class XceptionBlock(_Block):
    """Chollet's block: reps of [activation, separable conv, BN], optional max-pool, residual."""

    type: Literal["xception"] = "xception"
    channels: list[PosInt] = Field(min_length=1, description="Output channels of each separable conv.")
    kernel: PosInt = 3
    stride: PosInt = Field(default=1, description="Stride of the closing 3x3 max-pool (1: no pool).")
    start_with_relu: bool = True
    residual: Residual = "projection"
    mid_activation: Activation = "none"
    segments: PosInt | None = None
    separable: bool = Field(default=True, description=_SEPARABLE_HELP)


class ConvStep(_Frozen):
    """A conv+BN+ReLU step inside an Inception branch."""

    op: Literal["conv"]
    name: str
    out: PosInt
    kernel: Pair = 1
    stride: Pair = 1
    padding: PadPair = 0

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        return _step_name(value)


class PoolStep(_Frozen):
    """A pooling step inside an Inception branch."""

    op: Literal["pool"]
    name: str
    mode: PoolMode
    kernel: PosInt = 3
    stride: PosInt = 1
    padding: NonNegInt = 0

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        return _step_name(value)


class SplitStep(_Frozen):
    """The last step of a branch that forks into parallel conv paths, all concatenated."""

    op: Literal["split"]
    paths: list[list[ConvStep]] = Field(min_length=2)


Step = Annotated[Union[ConvStep, PoolStep, SplitStep], Field(discriminator="op")]


def _step_name(value: str) -> str:
    if not _STEP_NAME.match(value):
        raise ValueError("must be a Python identifier")
    if (why := _reserved(value)) is not None:
        raise ValueError(f"{why}: choose another name")
    return value


class InceptionBlock(_Block):
    """Parallel branches of conv and pool steps, concatenated along channels."""

    type: Literal["inception"] = "inception"
    branches: list[list[Step]] = Field(min_length=1)

    @model_validator(mode="after")
    def _check_branches(self) -> "InceptionBlock":
        names: list[str] = []
        for b, branch in enumerate(self.branches):
            if not branch:
                raise ValueError(f"branches[{b}] is empty")
            for s, step in enumerate(branch):
                if isinstance(step, SplitStep):
                    if s != len(branch) - 1:
                        raise ValueError(f"branches[{b}][{s}]: a split must be the last step")
                    names += [p.name for path in step.paths for p in path]
                    if any(not path for path in step.paths):
                        raise ValueError(f"branches[{b}][{s}]: a split path is empty")
                else:
                    names.append(step.name)
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"step names repeat: {', '.join(dup)}")
        if "concat" in names:
            raise ValueError("'concat' is reserved for the module that joins the branches")
        return self


class AuxHeadBlock(_Block):
    """Inception V3's auxiliary classifier: runs in training only, on the current tensor."""

    type: Literal["aux_head"] = "aux_head"
    pool_kernel: PosInt = 5
    pool_stride: PosInt = 3
    channels: tuple[PosInt, PosInt] = (128, 768)
    kernel: PosInt = 5


class PoolBlock(_Block):
    """Max or average pooling; ``global_avg`` averages each channel and flattens."""

    type: Literal["pool"] = "pool"
    mode: Literal["max", "avg", "global_avg"]
    kernel: PosInt = 3
    stride: PosInt = 2
    padding: NonNegInt = 0


class DropoutBlock(_Block):
    type: Literal["dropout"] = "dropout"
    p: float = Field(default=0.5, ge=0.0, lt=1.0)


class ClassifierBlock(_Block):
    """The final linear layer; its width is the spec's ``num_classes``."""

    type: Literal["classifier"] = "classifier"
    bias: bool = True


class InputAffineBlock(_Block):
    """Per-channel ``x * scale + shift`` (torchvision's ``transform_input``)."""

    type: Literal["input_affine"] = "input_affine"
    scale: list[float]
    shift: list[float]

    @model_validator(mode="after")
    def _same_length(self) -> "InputAffineBlock":
        if len(self.scale) != len(self.shift):
            raise ValueError("scale and shift must have one value per input channel")
        return self


Block = Annotated[
    Union[
        ConvBlock,
        SepConvBlock,
        XceptionBlock,
        InceptionBlock,
        AuxHeadBlock,
        PoolBlock,
        DropoutBlock,
        ClassifierBlock,
        InputAffineBlock,
    ],
    Field(discriminator="type"),
]

BLOCK_TYPES: dict[str, type[_Block]] = {
    "conv": ConvBlock,
    "sepconv": SepConvBlock,
    "xception": XceptionBlock,
    "inception": InceptionBlock,
    "aux_head": AuxHeadBlock,
    "pool": PoolBlock,
    "dropout": DropoutBlock,
    "classifier": ClassifierBlock,
    "input_affine": InputAffineBlock,
}


class Spec(_Frozen):
    """A validated network description. Never mutated: changes make a new spec."""

    name: str = Field(min_length=1)
    description: str = ""
    input_size: PosInt = 299
    in_channels: PosInt = 3
    num_classes: Annotated[int, Field(ge=1, le=MAX_CLASSES)] = 1000
    bn_eps: float = Field(default=1e-5, gt=0)
    blocks: list[Block] = Field(min_length=1)

    @field_validator("input_size")
    @classmethod
    def _check_input_size(cls, value: int) -> int:
        resources.check("max_input_size", "the input", value)
        return value

    @model_validator(mode="after")
    def _unique_paths(self) -> "Spec":
        # the copies are counted before any is named: a huge repeat is refused in microseconds
        instances = sum(1 if block.repeat is None else block.repeat for block in self.blocks)
        resources.check("max_layers", f"the blocks with their repeats ({instances:,} copies)", instances)
        paths = [p for block in self.blocks for p in block_paths(block)]
        seen: set[str] = set()
        for path in paths:
            if path in seen:
                raise ValueError(f"block name '{path}' is used twice")
            seen.add(path)
        for path in paths:
            parts = path.split(".")
            for i in range(1, len(parts)):
                if ".".join(parts[:i]) in seen:
                    raise ValueError(f"block name '{path}' lies inside block '{'.'.join(parts[:i])}'")
        for block in self.blocks:
            if isinstance(block, InputAffineBlock) and len(block.scale) != self.in_channels:
                raise ValueError(f"block '{block.name}': needs {self.in_channels} scale values")
        return self


    def with_overrides(self, **knobs: object) -> "Spec":
        """A new spec with the knobs applied (see :mod:`explorer.spec.knobs`)."""
        from explorer.spec.knobs import apply_knobs

        return apply_knobs(self, knobs)

    def to_dict(self) -> dict:
        """Plain data (only what differs from the defaults, in field order)."""
        return self.model_dump(mode="json", exclude_defaults=True)

    def to_yaml(self) -> str:
        """The spec as a YAML document that :func:`explorer.spec.parse_spec` reads back: every
        top-level field, and block fields (after name, type and flow) where they differ from the default."""
        data = self.model_dump(mode="json", exclude={"blocks"})
        data["blocks"] = [
            {"name": block.name, "type": block.type, "flow": block.flow,
             **{k: v for k, v in block.model_dump(mode="json", exclude_defaults=True).items()
                if k not in ("name", "type", "flow")}}
            for block in self.blocks
        ]
        return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100)

    def digest(self) -> str:
        """A stable hash of the spec's content (cache key)."""
        import hashlib

        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]


def block_paths(block: _Block) -> list[str]:
    """Module paths of the instances a block expands to (``repeat`` copies or itself)."""
    if block.repeat is None:
        return [block.name]
    return [f"{block.name}{i}" for i in range(1, block.repeat + 1)]
