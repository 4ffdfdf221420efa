"""Sanity checks that the maps mean something, on the shipped digits checkpoint (the lab's mini Xception,
98 % test accuracy on scikit-learn's digits): model randomization (Adebayo et al., 2018) and deletion.

The images are ten held-out test digits, one of each class; each map explains the class the trained
network predicts.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from explorer.explain import explain_tensor, to_map
from explorer.weights import get_weights

DIGITS_CHECKPOINT = get_weights("mini_xception.digits").path  # the shipped model, where the registry says
TOP_LAYERS = ("exit.fc", "exit.sep2", "exit.sep1")  # the classifier and the two separable convs under it
RANDOMIZATION_BOUND = 0.75
GRADCAM_LAYER = "middle.block3.add"  # the last 4 x 4 map (see test_deletion)

pytestmark = [pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU"),
              pytest.mark.usefixtures("one_thread")]


@pytest.fixture(scope="module")
def digits():
    from explorer.infer import load_model
    from explorer.lab.data import digits_samples

    loaded = load_model(None, DIGITS_CHECKPOINT, cache=False)
    samples = digits_samples(10)
    xs = torch.stack([loaded.preprocess(image.convert("RGB")) for image, _ in samples])
    return loaded.model, xs


@pytest.fixture(scope="module")
def randomized(digits):
    """The trained network with its top layers re-initialized (their own init, seeded), BN statistics reset."""
    model = copy.deepcopy(digits[0])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(2018)
        for name in TOP_LAYERS:
            for module in model.get_submodule(name).modules():
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()
                if hasattr(module, "reset_running_stats"):
                    module.reset_running_stats()
    return model.eval()


def _rank_correlations(method, trained, randomized, xs, **options):
    rhos = []
    for x in xs:
        a = explain_tensor(trained, x, method, **options)
        b = explain_tensor(randomized, x, method, target=a.target, **options)
        rhos.append(spearmanr(to_map(a.values, "absolute").ravel(), to_map(b.values, "absolute").ravel()).statistic)
    return np.array(rhos)


@pytest.mark.parametrize("method", ["saliency", "ig", "smoothgrad", "gradcam"])
def test_model_randomization_changes_the_maps(method, digits, randomized):
    """Adebayo et al.'s model randomization test: re-initialize the top layers, explain the same image and
    class again, and compare the two maps by Spearman's rank correlation of their absolute values (which
    pixels matter most; the stricter of the paper's two comparisons, since it ignores sign flips).

    The bound, mean rho < 0.75 over ten digits: rho = 1 means the pixel ranking does not depend on the top
    layers at all, i.e. the map explains the input and the lower layers, not the decision. Some correlation
    is expected from a faithful method too, because the untouched lower layers and the input itself shape
    both maps (Integrated Gradients multiplies by input - baseline); rho < 0.75 means the rankings share
    less than rho^2 = 56 % of their variance, and the next test shows the bound has teeth: Guided Backprop,
    which Adebayo et al. found insensitive to the top layers (it acts as an edge detector), stays above it.
    """
    model, xs = digits
    rhos = _rank_correlations(method, model, randomized, xs)
    assert np.isfinite(rhos).all()
    assert rhos.mean() < RANDOMIZATION_BOUND, f"{method}: rank correlations {np.round(rhos, 3)}"


def test_model_randomization_bound_fails_guided_backprop(digits, randomized):
    """The check can fail: Guided Backprop's maps hardly change when the top layers are re-initialized
    (Adebayo et al., 2018, Fig. 2 and 4), so its mean rank correlation stays above the bound."""
    model, xs = digits
    rhos = _rank_correlations("guided-backprop", model, randomized, xs[:4])
    assert rhos.mean() > RANDOMIZATION_BOUND


def _deletion_auc(model, x, order, target, steps=16, fill=0.0):
    """Area under the class score while the pixels in ``order`` are replaced by ``fill``, 1/steps at a time."""
    n = order.numel()
    batch = []
    for k in range(steps + 1):
        y = x.clone().reshape(x.shape[0], -1)
        y[:, order[: round(k * n / steps)]] = fill
        batch.append(y.reshape(x.shape))
    with torch.no_grad():
        score = model(torch.stack(batch))[:, target].numpy()
    return float(np.trapezoid(score, dx=1 / steps))


@pytest.mark.parametrize("method, layer, sign", [
    ("saliency", None, "absolute"),
    ("ig", None, "signed"),
    ("gradcam", GRADCAM_LAYER, "signed"),
])
def test_deletion_removing_the_most_attributed_pixels_lowers_the_score_faster_than_random(
        method, layer, sign, digits):
    """Deletion (Petsiuk et al., 2018; Samek et al., 2017): remove pixels in the map's order, most attributed
    first, and follow the class score; a map that finds the evidence makes it fall faster than a random
    order does, i.e. a smaller area under the curve (mean over ten digits, random: ten seeds).

    * "Removed" means set to 0 in the network's input, the middle gray the normalization maps to 0 (the
      Integrated Gradients baseline), in all channels at once; 16 steps of 1/16 of the pixels.
    * The class score is the logit, the quantity the methods attribute (not the softmax, which stays near
      1 until most of a digit is gone).
    * Order: Saliency's absolute gradient; Integrated Gradients' and Grad-CAM's signed values, most
      positive (for the class) first.
    * Grad-CAM at the last 4 x 4 map (``middle.block3.add``): at the default layer this 32-px network's map
      is 2 x 2, each cell seeing the whole digit, so it cannot say where the evidence is (the explanation
      notes that the map is too coarse).
    """
    model, xs = digits
    ours, random = [], []
    for x in xs:
        result = explain_tensor(model, x, method, layer=layer)
        order = torch.from_numpy(np.argsort(-to_map(result.values, sign).ravel(), kind="stable").copy())
        ours.append(_deletion_auc(model, x, order, result.target))
        random.append(np.mean([
            _deletion_auc(model, x, torch.randperm(order.numel(), generator=torch.Generator().manual_seed(seed)),
                          result.target)
            for seed in range(10)]))
    assert np.mean(ours) < np.mean(random), f"{method}: AUC {np.round(ours, 2)} vs random {np.round(random, 2)}"
