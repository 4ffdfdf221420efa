"""Networks the tests and benchmarks share: the reference networks (timm's legacy_xception,
torchvision's inception_v3) at random init, and a tiny spec. Nothing is downloaded.
"""

from __future__ import annotations

import torch


def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give a network weights and BN statistics that keep activations O(1) but are far
    from the defaults, so that a wrong mapping or a wrong eps shows in the logits."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            elif isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(0.5 + torch.rand(n, generator=g))
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(0.5 + torch.rand(n, generator=g))
    return model.eval()


def reference_model(name: str) -> torch.nn.Module:
    """The reference module of a preset (``xception`` or ``inception_v3``), default init, in eval()."""
    if name == "xception":
        import timm

        return timm.create_model("legacy_xception", pretrained=False).eval()
    from torchvision.models import inception_v3

    return inception_v3(weights=None, aux_logits=True, transform_input=True, init_weights=False).eval()


def tiny_spec_data(input_size: int = 32, num_classes: int = 4) -> dict:
    """A four-block spec (conv, separable conv, global pool, classifier) that builds and runs in milliseconds."""
    return {"name": "tiny", "input_size": input_size, "num_classes": num_classes, "blocks": [
        {"name": "stem", "type": "conv", "flow": "entry", "out": 8, "stride": 2},
        {"name": "sep", "type": "sepconv", "flow": "middle", "out": 16},
        {"name": "pool", "type": "pool", "flow": "exit", "mode": "global_avg"},
        {"name": "fc", "type": "classifier", "flow": "exit"}]}
