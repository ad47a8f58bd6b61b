"""The minimal-eps search: what it returns is true, what it spends is counted, and what each schedule finds."""

import functools
import inspect
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from builders import PeriodicModel, lite0, synthetic_images

from attacks_torch.attacks import pgd
from attacks_torch.attacks.schedules import (
    LadderGrid,
    Trial,
    ladder_rungs,
    ladder_schedule,
    reference_schedule,
    secant_schedule,
)
from attacks_torch.models import PixelModel
from attacks_torch.photos import bundled_photos
from attacks_torch.search import ATTACKS, find_minimal, minimal_epsilon, minimum_tol


def _fools(model, images, labels, eps, **kwargs):
    with torch.no_grad():
        return model(pgd(model, images, labels, eps, **kwargs)).argmax(1) != labels


def _drive(schedule, fools, margin=lambda eps: 0.0):
    """Run one sample's schedule against oracles fools(eps) -> bool and margin(eps) -> float;
    return the eps tried and the outcome."""
    tried = [next(schedule)]
    while True:
        try:
            tried.append(schedule.send(Trial(fools(tried[-1]), margin(tried[-1]))))
        except StopIteration as stop:
            return tried, stop.value


def _reference_code_tries(threshold, lo=0.001, hi=10.0):
    """The reference code's schedule, transcribed, for an image fooled exactly from eps = threshold."""
    tried = [hi]
    if hi < threshold:
        return tried, math.inf
    tried.append(1.0)
    if threshold <= 1.0:
        low, high, tol = lo, 1.0, 0.01
    else:
        low, high, tol = 1.0, hi, 0.1
    while high - low >= tol:
        middle = low + (high - low) / 2
        tried.append(middle)
        if middle >= threshold:
            high = middle
        else:
            low = middle
    return tried, high


@pytest.mark.parametrize("threshold", [0.0042, 0.37, 1.0, 2.5, 9.99, 12.0])
def test_reference_schedule_tries_what_the_reference_code_tries(threshold):
    tried, outcome = _drive(reference_schedule(0.001, 10.0, None), lambda eps: eps >= threshold)
    expected_tried, expected_eps = _reference_code_tries(threshold)
    assert tried == expected_tried
    assert outcome.eps == expected_eps and outcome.fooled_at_hi == (threshold <= 10.0)


@settings(max_examples=50, deadline=None)
@given(threshold=st.floats(0.0011, 9.9), tol=st.sampled_from([None, 0.05]))
def test_ladder_brackets_a_monotone_threshold(threshold, tol):
    tried, outcome = _drive(ladder_schedule(0.001, 10.0, tol, 10.0 / 64), lambda eps: eps >= threshold)
    assert outcome.lower < threshold <= outcome.eps
    first_fooling_rung = min(r for r in ladder_rungs(10.0, 10.0 / 64) if r >= threshold)
    assert outcome.eps - outcome.lower < (0.01 * first_fooling_rung if tol is None else tol)
    assert outcome.fooled_at_hi and 10.0 in tried
    assert len(tried) == len(set(tried))  # never the same eps twice


def test_ladder_rungs_double_up_to_hi():
    assert ladder_rungs(10.0, 0.125) == [0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 10.0]
    assert ladder_rungs(10.0, 10.0 / 64) == [10.0 / 2**k for k in range(6, -1, -1)]


@functools.cache
def _search(schedule="ladder"):
    images, labels = synthetic_images(12, seed=7)
    images[9:] = 0.5 + 0.3 * (images[9:] - 0.5)  # low contrast: fooled at smaller eps, so they finish earlier
    labels = labels.clone()
    labels[3] = (labels[3] + 1) % 4  # a sample the model gets wrong from the start
    from builders import trained_cnn

    return images, labels, minimal_epsilon(trained_cnn(), images, labels, schedule=schedule)


@pytest.mark.parametrize("schedule", ["ladder", "reference", "secant"])
def test_each_eps_fools_and_the_tried_lower_end_does_not(cnn, schedule):  # noqa: F811
    images, labels, result = _search(schedule)
    fooled = result.fooled
    assert fooled.sum() >= 8
    with torch.no_grad():
        assert (cnn(result.adversarial[fooled]).argmax(1) != labels[fooled]).all()
    assert (result.adv_pred[fooled] != labels[fooled]).all()
    norms = (result.adversarial - images).flatten(1).norm(dim=1).double()
    assert (norms[fooled] <= result.eps[fooled] * (1 + 1e-5)).all() and (norms[fooled] > 0.5 * result.eps[fooled]).all()
    for i in torch.nonzero(fooled & (result.eps_lower > 0.001)).flatten().tolist():
        assert not _fools(cnn, images[i : i + 1], labels[i : i + 1], float(result.eps_lower[i]))
        assert _fools(cnn, images[i : i + 1], labels[i : i + 1], float(result.eps[i]))


def test_misclassified_images_are_marked_and_cost_one_forward_pass():
    images, labels, result = _search()
    assert not result.attacked[3] and result.attacked.sum() == 11
    assert math.isnan(result.eps[3]) and not result.fooled[3]
    assert result.forward_passes[3] == 1 and result.backward_passes[3] == 0
    torch.testing.assert_close(result.adversarial[3], images[3])
    assert result.adv_pred[3] == result.clean_pred[3] != labels[3]


def test_images_not_fooled_at_hi_are_recorded_as_not_fooled(cnn, test_batch):  # noqa: F811
    images, labels = test_batch
    result = minimal_epsilon(cnn, images, labels, lo=0.0001, hi=0.002, schedule="ladder")
    assert result.attacked.all() and not result.fooled.any() and not result.fooled_at_hi.any()
    assert torch.isinf(result.eps).all()
    assert (result.adv_pred == labels).all()
    tries = len(ladder_rungs(0.002, 0.002 / 16))  # the rungs that stay above lo
    # clean prediction, then the first-step gradient once, then per eps: 2 more steps and a check
    assert (result.forward_passes == 2 + tries * 3).all() and (result.backward_passes == 1 + tries * 2).all()
    default = minimal_epsilon(cnn, images, labels, lo=0.0001, hi=0.002)
    assert default.attacked.all() and not default.fooled.any() and torch.isinf(default.eps).all()
    assert (default.adv_pred == labels).all() and default.fooled_at_hi is None
    assert (default.forward_passes <= result.forward_passes).all()


@pytest.mark.parametrize("schedule", ["secant", "ladder"])
def test_batched_search_equals_image_by_image_and_charges_each_sample_its_own_passes(cnn, schedule):  # noqa: F811
    images, labels, batched = _search(schedule)
    for i in range(len(images)):
        alone = minimal_epsilon(cnn, images[i : i + 1], labels[i : i + 1], schedule=schedule)
        assert torch.equal(alone.eps, batched.eps[i : i + 1]) or (alone.eps.isnan() & batched.eps[i].isnan()).all()
        torch.testing.assert_close(alone.adversarial, batched.adversarial[i : i + 1], atol=1e-5, rtol=0)
        assert alone.forward_passes.item() == batched.forward_passes[i]
        assert alone.backward_passes.item() == batched.backward_passes[i]
    spent = batched.backward_passes[batched.attacked]
    assert spent.min() < spent.max()  # samples did finish at different times
    assert (batched.forward_passes[batched.attacked] == 2 + (spent - 1) // 2 * 3).all()  # see the test above


@pytest.mark.parametrize("schedule", ["secant", "ladder"])
def test_batch_size_chunks_give_the_same_result(cnn, schedule):  # noqa: F811
    images, labels, whole = _search(schedule)
    chunked = minimal_epsilon(cnn, images, labels, batch_size=5, schedule=schedule)
    assert torch.equal(whole.eps.nan_to_num(-1), chunked.eps.nan_to_num(-1))
    assert torch.equal(whole.forward_passes, chunked.forward_passes)


def test_ladder_fools_images_the_reference_schedule_gives_up_on():
    """Success is not monotonic in eps: walking far along u the periodic model's class comes back."""
    model = PeriodicModel((3, 16, 16), period=10.0 / 5.75)
    start = torch.tensor([0.25, 0.2, 0.3]) * model.period
    images = torch.stack([model.image_at(float(z)) for z in start])
    labels = torch.zeros(len(images), dtype=torch.int64)
    reference = minimal_epsilon(model, images, labels, schedule="reference")
    ladder = minimal_epsilon(model, images, labels, schedule="ladder")
    assert reference.attacked.all() and not reference.fooled.any() and not reference.fooled_at_hi.any()
    assert ladder.fooled.all() and not ladder.fooled_at_hi.any()
    assert (ladder.eps < 2.0).all()
    assert (model(ladder.adversarial).argmax(1) != labels).all()


@pytest.mark.parametrize("attack", ATTACKS)
def test_find_minimal_runs_every_attack(cnn, attack):  # noqa: F811
    images, labels = synthetic_images(4, seed=21)
    options = {
        "cw_l2": {"steps": 20, "binary_search_steps": 2, "step_size": 0.05},
        "ddn": {"steps": 20},
        "linf_pgd": {"rel_step_size": 0.5},
    }.get(attack)
    settings = {"hi": 0.5} if attack == "linf_pgd" else {}
    result = find_minimal(cnn, images, labels, attack, attack_options=options, **settings)
    assert result.attack == attack and len(result) == 4 and result.fooled.any()
    delta = (result.adversarial - images).flatten(1)
    size = delta.norm(p=float("inf") if attack == "linf_pgd" else 2, dim=1).double()
    f = result.fooled
    if attack in ("cw_l2", "ddn"):
        torch.testing.assert_close(size[f], result.eps[f])
        assert result.fooled_at_hi is None
    else:
        assert (size[f] <= result.eps[f] * (1 + 1e-5)).all()
    assert (result.backward_passes[result.attacked] > 0).all()


def _random_model(seed: int) -> PixelModel:
    torch.manual_seed(seed)
    network = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3))
    return PixelModel(network, name="random", input_size=(8, 8), mean=(0.5,) * 3, std=(0.2,) * 3)


@settings(max_examples=10, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(1, 6),
    projection=st.sampled_from(["sphere", "ball"]),
    schedule=st.sampled_from(["ladder", "secant"]),
)
def test_search_invariants_on_random_models(seed, n, projection, schedule):
    model = _random_model(seed)
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, 8, 8, generator=generator)
    with torch.no_grad():
        labels = model(images).argmax(1)
    labels[0] = (labels[0] + 1) % 3
    result = minimal_epsilon(
        model, images, labels, lo=0.01, hi=4.0, schedule=schedule, attack_options={"projection": projection}
    )
    assert not result.attacked[0] and result.attacked[1:].all()
    assert torch.isnan(result.eps[~result.attacked]).all() and not torch.isnan(result.eps[result.attacked]).any()
    assert torch.equal(result.fooled, torch.isfinite(result.eps))
    with torch.no_grad():
        assert torch.equal(model(result.adversarial).argmax(1), result.adv_pred)
    assert (result.adv_pred[result.fooled] != labels[result.fooled]).all()
    assert result.adversarial.min() >= 0 and result.adversarial.max() <= 1
    for i in range(1, n):
        if result.fooled[i] and result.eps_lower[i] > 0.01:
            assert not _fools(
                model, images[i : i + 1], labels[i : i + 1], float(result.eps_lower[i]), projection=projection
            )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"attack": "cw_l2"}, "attack"),
        ({"lo": 2.0, "hi": 1.0}, "lo, hi"),
        ({"schedule": "reference", "hi": 0.5}, "lo < 1 < hi"),
        ({"ladder_start": 20.0}, "ladder_start"),
        ({"tol": 0.0}, "tol"),
        ({"tol": 1e-20}, "tol: 1e-20 is below the resolution of float32 eps at hi=10"),
        ({"attack_options": {"steps": 0}}, "steps of l2_pgd must be an integer >= 1"),
        ({"schedule": "binary"}, "schedule"),
    ],
)
def test_bad_search_arguments_are_named(cnn, test_batch, kwargs, message):  # noqa: F811
    images, labels = test_batch
    with pytest.raises(ValueError, match=message):
        minimal_epsilon(cnn, images, labels, **kwargs)


def test_real_model_search_fools_each_bundled_photo():
    model = lite0()
    photos = bundled_photos()
    result = minimal_epsilon(model, photos.images, photos.labels, tol=0.02)
    assert result.attacked.all(), [n for n, a in zip(photos.names, result.attacked) if not a]
    assert result.fooled.all() and torch.isfinite(result.eps).all() and (result.eps > 0).all()
    assert (result.adv_pred != photos.labels).all()


@pytest.mark.parametrize("schedule", ["ladder", "reference", "secant"])
def test_the_smallest_accepted_tol_finishes(cnn, test_batch, schedule):  # noqa: F811
    """At the resolution floor the bisection still ends: each try narrows the interval."""
    images, labels = test_batch
    tol = minimum_tol(10.0, images.dtype)
    result = minimal_epsilon(cnn, images[:2], labels[:2], tol=tol, schedule=schedule)
    fooled = result.fooled
    assert fooled.any()
    assert ((result.eps - result.eps_lower)[fooled] < tol).all()
    assert (result.backward_passes[result.attacked] < 2 * 70).all()  # some 20 halvings, not an endless loop


def test_find_minimal_refuses_settings_that_are_not_its_own(cnn, test_batch):  # noqa: F811
    images, labels = test_batch
    with pytest.raises(ValueError, match="steps: not a search setting of l2_pgd.*attack_options"):
        find_minimal(cnn, images, labels, "l2_pgd", steps=5)
    with pytest.raises(ValueError, match="hi: not a search setting of ddn"):
        find_minimal(cnn, images, labels, "ddn", hi=1.0)
    with pytest.raises(ValueError, match="attack: expected one of l2_pgd, linf_pgd, cw_l2, ddn"):
        find_minimal(cnn, images, labels, "fgsm")


def _ladder_tol(eps: float, hi: float = 10.0) -> float:
    """The ladder's default tolerance for an image it answered with ``eps``: 1 % of its fooling rung."""
    return 0.01 * min(r for r in ladder_rungs(hi, hi / 64) if r >= eps * (1 - 1e-9))


def _assert_same_answers(ladder, secant):
    assert torch.equal(ladder.fooled, secant.fooled) and torch.equal(ladder.attacked, secant.attacked)
    for i in torch.nonzero(ladder.fooled).flatten().tolist():
        assert abs(ladder.eps[i] - secant.eps[i]) <= _ladder_tol(float(ladder.eps[i])), (
            i,
            ladder.eps[i],
            secant.eps[i],
        )


@settings(max_examples=60, deadline=None)
@given(
    threshold=st.floats(0.0015, 9.9),
    curvature=st.floats(0.0, 3.0),
    slope=st.floats(0.2, 20.0),
    guess_error=st.sampled_from([math.inf, 0.5, 1.0, 2.0]),
    tol=st.sampled_from([None, 0.05]),
)
def test_secant_brackets_the_crossing_of_a_falling_margin_in_fewer_tries_than_the_ladder(
    threshold, curvature, slope, guess_error, tol
):
    def margin(eps):  # falls with eps, crossing 0 at threshold; curvature bends it
        return slope * (threshold - eps) + curvature * (threshold**2 - eps**2)

    def fools(eps):
        return eps >= threshold

    secant = secant_schedule(0.001, 10.0, tol, 10.0 / 64, margin(0.0), first_guess=threshold * guess_error)
    tried, outcome = _drive(secant, fools, margin)
    assert outcome.lower < threshold <= outcome.eps
    assert outcome.eps - outcome.lower < (_ladder_tol(threshold) if tol is None else tol)
    assert len(tried) == len(set(tried))
    ladder_tried, ladder_outcome = _drive(ladder_schedule(0.001, 10.0, tol, 10.0 / 64), fools)
    assert len(tried) <= len(ladder_tried)
    # both end on the same two of the ladder's bisection points: the very same floats
    assert (outcome.eps, outcome.lower) == (ladder_outcome.eps, ladder_outcome.lower)


def _grid_points(grid, k):
    return {grid.point(k, i) for i in range(2 ** grid.depths[k] + 1)}


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10**6), tol=st.sampled_from([None, 0.05, 0.003]), start=st.sampled_from([10.0 / 64, 0.3]))
def test_the_ladder_grid_holds_every_eps_the_ladder_bisection_tries(seed, tol, start):
    generator = torch.Generator().manual_seed(seed)  # success at random: the grid must not assume monotone
    tried, outcome = _drive(
        ladder_schedule(0.001, 10.0, tol, start), lambda eps: bool(torch.rand(1, generator=generator) < 0.5)
    )
    if not math.isfinite(outcome.eps):
        return
    grid = LadderGrid(0.001, 10.0, tol, start)
    k = grid.rungs.index(next(e for e in tried if e in grid.rungs and e >= outcome.eps))
    bisection = tried[tried.index(10.0) + 1 :] if grid.rungs[k] != 10.0 else tried[k + 1 :]
    assert set(bisection) <= _grid_points(grid, k) and {outcome.lower, outcome.eps} <= _grid_points(grid, k)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10**6), tol=st.sampled_from([None, 0.05]), guess=st.floats(0.0005, 20.0))
def test_secant_tries_only_ladder_points_and_ends_on_a_tried_cell_when_success_is_random(seed, tol, guess):
    generator = torch.Generator().manual_seed(seed)
    outcomes = {}

    def fools(eps):
        return outcomes.setdefault(eps, bool(torch.rand(1, generator=generator) < 0.5))

    tried, outcome = _drive(
        secant_schedule(0.001, 10.0, tol, 10.0 / 64, 1.0, guess),
        fools,
        lambda eps: float(torch.randn(1, generator=generator)),
    )
    grid = LadderGrid(0.001, 10.0, tol, 10.0 / 64)
    every_point = set().union(*(_grid_points(grid, k) for k in range(len(grid.rungs))))
    assert set(tried) <= every_point and len(tried) == len(set(tried))
    if math.isfinite(outcome.eps):
        k = grid.interval(outcome.eps)
        cell = [grid.point(k, i) for i in range(2 ** grid.depths[k] + 1)]
        assert outcome.lower in cell and cell[cell.index(outcome.lower) + 1] == outcome.eps
        assert outcomes[outcome.eps] and (outcome.lower == 0.001 or not outcomes[outcome.lower])


def test_secant_gives_up_where_no_eps_up_to_hi_fools():
    tried, outcome = _drive(
        secant_schedule(0.001, 10.0, None, 10.0 / 64, 5.0), lambda eps: False, lambda eps: 5.0 - 0.1 * eps
    )
    assert outcome.eps == math.inf and tried[-1] == 10.0 and not outcome.fooled_at_hi


@functools.cache
def _timm_batch(name: str):
    from attacks_torch.models import load_model

    model = load_model(name, weights="random", num_classes=10, seed=0).eval()
    images = torch.rand(6, 3, 48, 48, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        labels = model(images).argmax(1)  # its own predictions: every image is attacked
    return model, images, labels


def test_the_default_schedule_is_secant():
    assert inspect.signature(minimal_epsilon).parameters["schedule"].default == "secant"


@pytest.mark.parametrize("name", ["test_resnet", "test_vit"])
def test_the_default_agrees_with_the_ladder_on_tiny_timm_models_at_fewer_passes(name):
    model, images, labels = _timm_batch(name)
    ladder = minimal_epsilon(model, images, labels, schedule="ladder")
    secant = minimal_epsilon(model, images, labels)
    assert ladder.fooled.all()
    _assert_same_answers(ladder, secant)
    assert (secant.backward_passes <= ladder.backward_passes).all()
    assert (secant.forward_passes <= ladder.forward_passes).all()
    assert secant.fooled_at_hi is None and secant.schedule == "secant"
    with torch.no_grad():
        assert (model(secant.adversarial).argmax(1) != labels).all()


def test_the_default_agrees_with_the_ladder_where_success_is_not_monotonic():
    model = PeriodicModel((3, 16, 16), period=10.0 / 5.75)
    images = torch.stack([model.image_at(float(z)) for z in torch.tensor([0.25, 0.2, 0.3, 0.1]) * model.period])
    labels = torch.zeros(len(images), dtype=torch.int64)
    ladder = minimal_epsilon(model, images, labels, schedule="ladder")
    secant = minimal_epsilon(model, images, labels)
    assert secant.schedule == "secant"
    assert ladder.fooled.all() and not ladder.fooled_at_hi.any()  # fooled at small eps, not at hi
    _assert_same_answers(ladder, secant)
    assert (secant.backward_passes <= ladder.backward_passes).all()
    assert (secant.forward_passes <= ladder.forward_passes).all()


def test_secant_agrees_with_the_ladder_on_the_tiny_cnn(cnn):  # noqa: F811
    images, labels, ladder = _search("ladder")
    _, _, secant = _search("secant")
    _assert_same_answers(ladder, secant)
    assert (secant.backward_passes <= ladder.backward_passes).all()
    assert secant.backward_passes[secant.attacked].sum() * 2 <= ladder.backward_passes[ladder.attacked].sum()


def test_the_default_gives_an_image_the_same_eps_alone_and_in_any_batch(cnn):  # noqa: F811
    images, labels, batched = _search("secant")
    order = torch.tensor([5, 11, 0, 7, 2, 9])  # another batch: other neighbours, other positions
    shuffled = minimal_epsilon(cnn, images[order], labels[order], batch_size=4)
    assert shuffled.schedule == "secant"
    assert torch.equal(shuffled.eps.nan_to_num(-1), batched.eps[order].nan_to_num(-1))
    for i in range(len(images)):
        alone = minimal_epsilon(cnn, images[i : i + 1], labels[i : i + 1])
        assert torch.equal(alone.eps.nan_to_num(-1), batched.eps[i : i + 1].nan_to_num(-1))
        assert alone.backward_passes.item() == batched.backward_passes[i]


def test_secant_gives_the_ladders_eps_to_the_bit_on_lite0_and_the_bundled_photos():
    """docs/search.md: on efficientnet-lite0 and the bundled photos (and their mirror images, as the
    benchmark attacks them) every eps the secant schedule finds is the ladder's, exactly."""
    photos = bundled_photos()
    images = torch.cat([photos.images, photos.images.flip(-1)])
    labels = torch.cat([photos.labels, photos.labels])
    ladder = minimal_epsilon(lite0(), images, labels, schedule="ladder")
    secant = minimal_epsilon(lite0(), images, labels, schedule="secant")
    assert torch.equal(ladder.attacked, secant.attacked) and torch.equal(ladder.fooled, secant.fooled)
    assert int(ladder.fooled.sum()) >= len(images) // 2  # answers to compare, not NaN against NaN
    assert torch.equal(ladder.eps.nan_to_num(-1.0), secant.eps.nan_to_num(-1.0)), (ladder.eps, secant.eps)
