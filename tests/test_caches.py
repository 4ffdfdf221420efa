"""The model cache holds to one byte budget (``model_cache_bytes``): weights, copies and explain's replicas.

The oracle for a model's bytes is its own state dict (every parameter and buffer, as built from the spec),
for a copy the copy's state dict: never the cache's own count.
"""

from __future__ import annotations

import gc
import weakref

import pytest
import torch

from explorer import resources
from explorer.build import build_model
from explorer.spec import load_spec
from explorer.spec.budget import weight_bytes
from explorer.weights import load as cache
from explorer.weights.load import cache_bytes, cached_models, clear_cache, load_model, loaded_bytes

SMALL = dict(middle_repeats=0, width=0.25, input_size=32)


def spec(classes: int):
    return load_spec("xception").with_overrides(num_classes=classes, **SMALL)


def state_bytes(module: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in module.state_dict().values())


def size(classes: int) -> int:
    """What one random model of ``spec(classes)`` holds, from the network built from the spec."""
    return state_bytes(build_model(spec(classes)))


@pytest.fixture
def budget(monkeypatch):
    """Set the cache's budget (bytes); the cache starts and ends empty; trims of the allocator counted."""
    clear_cache()
    trims: list[int] = []
    monkeypatch.setattr(resources, "release_memory", lambda: trims.append(1) or True)

    def set_budget(value: int) -> list[int]:
        monkeypatch.setenv("EXPLORER_MODEL_CACHE_BYTES", str(value))
        return trims

    yield set_budget
    clear_cache()


def test_a_model_costs_its_weights_as_the_spec_says():
    loaded = load_model(spec(1000), "random", cache=False)
    assert loaded_bytes(loaded) == state_bytes(loaded.model) == size(1000)
    # the parameters are what the spec counts; the rest is the batch norms' running statistics
    buffers = sum(b.numel() * b.element_size() for b in loaded.model.buffers())
    assert loaded_bytes(loaded) == weight_bytes(spec(1000)) + buffers


def test_the_cache_holds_to_its_byte_budget_least_recently_used_first(budget):
    trims = budget(size(1000) + size(2000) + size(3000) - 1)  # any two fit, not all three
    a = load_model(spec(1000), "random")
    b = load_model(spec(2000), "random")
    assert cached_models() == [a, b] and cache_bytes() == size(1000) + size(2000)
    assert load_model(spec(1000), "random") is a  # a hit: a is now the most recently used
    c = load_model(spec(3000), "random")
    assert cached_models() == [a, c]  # b, the least recently used, made room
    assert cache_bytes() == size(1000) + size(3000) <= int(resources.limit("model_cache_bytes"))
    assert trims  # the freed memory was given back to the OS
    assert load_model(spec(2000), "random") is not b  # b is loaded again
    assert cached_models() == [c, load_model(spec(2000), "random")]


def test_room_is_made_before_the_new_model_is_built(budget, monkeypatch):
    budget(size(1000) + size(2000) // 2)  # one at a time
    a = load_model(spec(1000), "random")
    seen = []
    real = cache.build_model

    def build(*args, **kwargs):
        seen.append(cached_models())
        return real(*args, **kwargs)

    monkeypatch.setattr(cache, "build_model", build)
    b = load_model(spec(2000), "random")
    assert seen == [[]]  # a was gone before b was built: the two never sat in the cache together
    assert cached_models() == [b] and a.model is not b.model


def test_copies_count_in_their_models_bytes(budget):
    # without channels_last the copy is the plain inference copy: its own state dict is all it holds
    budget(size(1000) + size(2000) + size(1000) // 4)
    a = load_model(spec(1000), "random", channels_last=False)
    b = load_model(spec(2000), "random", channels_last=False)
    assert cached_models() == [a, b]
    runner = a.runner("cpu")
    assert loaded_bytes(a) == size(1000) + state_bytes(runner)  # the folded copy is a second set of weights
    assert cached_models() == [a]  # with its copy, a no longer fits beside b: b went, the model in use stays
    assert cache_bytes() == loaded_bytes(a)


def test_explain_replicas_count_and_go_with_their_model(budget):
    from explorer.explain import POOL, explain_tensor

    budget(10 * size(1000))
    a = load_model(spec(1000), "random", channels_last=False)
    explain_tensor(a.model, torch.rand(3, 32, 32), "saliency", fold=True)
    replicas = POOL.idle_replicas(a.model)
    assert len(replicas) == 1  # the folded replica kept for the next explanation
    assert loaded_bytes(a) == size(1000) + state_bytes(replicas[0])
    assert cache_bytes() == loaded_bytes(a)
    clear_cache()
    assert POOL.idle_replicas(a.model) == []  # it went with its model


def test_a_model_larger_than_the_budget_is_returned_and_kept_alone(budget):
    budget(size(1000) // 2)
    a = load_model(spec(1000), "random")
    assert cached_models() == [a]
    b = load_model(spec(2000), "random")
    assert cached_models() == [b] and b.model is not a.model


def test_an_evicted_model_still_in_use_is_left_whole(budget):
    trims = budget(size(1000) + size(2000) // 2)
    a = load_model(spec(1000), "random")
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        before = a.model(x)
    runner = a.runner("cpu")
    weights = {k: (v.data_ptr(), v.clone()) for k, v in a.model.state_dict().items()}
    load_model(spec(2000), "random")  # a leaves the cache while "another session" still holds it
    assert a not in cached_models() and trims
    assert {k: v.data_ptr() for k, v in a.model.state_dict().items()} == {k: p for k, (p, _) in weights.items()}
    assert all(torch.equal(v, weights[k][1]) for k, v in a.model.state_dict().items())
    with torch.no_grad():
        assert torch.equal(a.model(x), before)
        assert torch.allclose(runner(x.contiguous(memory_format=torch.channels_last)), before, atol=1e-4)
    assert a.runner("cpu") is not runner  # its cached copies went with it (made again on demand)


def test_the_app_keeps_no_network_of_its_own(budget):
    """The Classify page's loader: the network lives in the byte-bounded cache only, so once it leaves
    the cache nothing of the app's holds it (there was a cache of six networks per server in the UI)."""
    from explorer.ui import models

    budget(10 * size(1000))
    choice = models.Choice("small", spec(1000).to_yaml(), "random")
    loaded, missing = models.load(choice)
    assert missing is None and cached_models() == [loaded]
    assert models.load(choice)[0] is loaded
    gone = weakref.ref(loaded)
    del loaded
    clear_cache()
    gc.collect()
    assert gone() is None
