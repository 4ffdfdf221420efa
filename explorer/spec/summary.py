"""A spec's structure in one sentence, derived from its blocks (so it follows every knob and edit)."""

from __future__ import annotations

from explorer.spec.layers import spec_layers
from explorer.spec.schema import Spec


def summarize(spec: Spec) -> str:
    """What the network is made of, e.g. ``'entry flow (5 blocks), middle flow (8 blocks), exit flow
    (4 blocks); 34 depthwise separable convs, no activation between depthwise and pointwise; residual
    connections on 12 of 12 Xception blocks; 299×299 px input, 1,000 classes.'``

    Counted from the spec, so the sentence is true of any knob setting or edit.
    """
    flows: dict[str, int] = {}
    for block in spec.blocks:
        flows[block.flow] = flows.get(block.flow, 0) + (block.repeat if block.repeat is not None else 1)
    parts = [", ".join(f"{flow} flow ({n} block{'s' if n != 1 else ''})" for flow, n in flows.items())]
    layers = spec_layers(spec)
    # a separable conv's spatial half: depthwise, or a grouped/full conv under `segments`
    spatial = [layer for layer in layers if layer.name.endswith(".depthwise")]
    if spatial:
        depthwise = sum(1 for layer in spatial if layer.config["groups"] == layer.config["in_channels"])
        if depthwise == len(spatial):
            kind = "depthwise separable convs"
        elif depthwise == 0:
            groups = sorted({layer.config["groups"] for layer in spatial})
            kind = ("separable convs with a full spatial conv" if groups == [1] else
                    f"separable convs with the spatial conv in {'/'.join(map(str, groups))} segments")
        else:
            kind = f"separable convs ({depthwise} depthwise)"
        mids = {b.mid_activation for b in spec.blocks if b.type in ("xception", "sepconv") and b.separable}
        mid = ("no activation" if mids == {"none"} else
               " or ".join(sorted(m.upper() if m == "elu" else "ReLU" for m in mids - {"none"}))
               + (" in some" if "none" in mids else ""))
        parts.append(f"{len(spatial)} {kind}, {mid} between depthwise and pointwise")
    # the `separable` knob off: each separable conv is one regular conv, named `<separable conv>.conv`
    regular = sum((len(b.channels) if b.type == "xception" else 1) * (b.repeat if b.repeat is not None else 1)
                  for b in spec.blocks if b.type in ("xception", "sepconv") and not b.separable)
    if regular:
        parts.append(f"{regular} regular conv{'s' if regular != 1 else ''} in place of separable ones")
    xception = [(b, b.repeat or 1) for b in spec.blocks if b.type == "xception"]
    if xception:
        total = sum(n for _, n in xception)
        with_skip = sum(n for b, n in xception if b.residual != "none")
        parts.append("no residual connections" if with_skip == 0 else
                     f"residual connections on {with_skip} of {total} Xception blocks")
    if any(b.type == "inception" for b in spec.blocks):
        modules = sum(b.repeat or 1 for b in spec.blocks if b.type == "inception")
        parts.append(f"{modules} Inception modules")
    if any(b.type == "aux_head" for b in spec.blocks):
        parts.append("an auxiliary head (training only)")
    parts.append(f"{spec.input_size}×{spec.input_size} px input, {spec.num_classes:,} classes")
    return "; ".join(parts) + "."
