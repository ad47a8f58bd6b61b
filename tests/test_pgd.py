"""PGD: equal to foolbox where the protocols coincide, and its geometric guarantees on random inputs."""

import foolbox
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from attacks_torch.attacks import cross_entropy_gradient, pgd
from attacks_torch.models.counting import CountingModel
from attacks_torch.models import PixelModel


def _l2(t):
    return t.flatten(1).norm(dim=1)


@pytest.mark.parametrize(
    "norm, attack_class, eps, step_size",
    [("l2", foolbox.attacks.L2PGD, 0.6, 0.5), ("linf", foolbox.attacks.LinfPGD, 0.03, 0.01)],
)
@pytest.mark.compat
def test_ball_pgd_equals_foolbox(cnn, test_batch, norm, attack_class, eps, step_size):  # noqa: F811
    images, labels = test_batch
    reference = attack_class(abs_stepsize=step_size, steps=3, random_start=False).run(
        foolbox.PyTorchModel(cnn, bounds=(0, 1), device="cpu"), images, labels, epsilon=eps
    )
    ours = pgd(cnn, images, labels, eps, norm=norm, steps=3, step_size=step_size, projection="ball")
    size = (reference - images).flatten(1).norm(p=2 if norm == "l2" else float("inf"), dim=1)
    assert (size > 0.5 * eps).all()  # the comparison is not between two no-ops
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=0)


def _random_model(seed: int) -> PixelModel:
    torch.manual_seed(seed)
    network = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 8 * 8, 5))
    return PixelModel(network, name="random", input_size=(8, 8), mean=(0.4,) * 3, std=(0.3,) * 3)


def _random_batch(seed: int, n: int):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 8, 8, generator=generator), torch.randint(0, 5, (n,), generator=generator)


eps_lists = st.lists(st.floats(0.01, 6.0), min_size=1, max_size=5)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), eps=eps_lists, steps=st.integers(1, 4), step_size=st.floats(0.05, 1.0))
def test_l2_ball_stays_inside_the_per_sample_ball_and_the_bounds(seed, eps, steps, step_size):
    images, labels = _random_batch(seed, len(eps))
    budget = torch.tensor(eps)
    adversarial = pgd(_random_model(seed), images, labels, budget, steps=steps, step_size=step_size, projection="ball")
    assert adversarial.min() >= 0 and adversarial.max() <= 1
    assert (_l2(adversarial - images) <= budget * (1 + 1e-5)).all()


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), eps=eps_lists, steps=st.integers(1, 4))
def test_l2_sphere_has_norm_exactly_eps_before_clipping(seed, eps, steps):
    images, labels = _random_batch(seed, len(eps))
    budget = torch.tensor(eps)
    unclipped = pgd(_random_model(seed), images, labels, budget, steps=steps, bounds=(-100.0, 100.0))
    torch.testing.assert_close(_l2(unclipped - images), budget, rtol=1e-5, atol=1e-6)
    clipped = pgd(_random_model(seed), images, labels, budget, steps=steps)
    assert clipped.min() >= 0 and clipped.max() <= 1
    assert (_l2(clipped - images) <= budget * (1 + 1e-5)).all()


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    eps=st.lists(st.floats(0.001, 0.5), min_size=1, max_size=5),
    projection=st.sampled_from(["ball", "sphere"]),
)
def test_linf_respects_each_samples_eps(seed, eps, projection):
    images, labels = _random_batch(seed, len(eps))
    budget = torch.tensor(eps)
    adversarial = pgd(
        _random_model(seed),
        images,
        labels,
        budget,
        norm="linf",
        rel_step_size=0.3,
        projection=projection,
        bounds=(-100.0, 100.0),
    )
    linf = (adversarial - images).flatten(1).abs().max(1).values
    assert (linf <= budget * (1 + 1e-5)).all()
    if projection == "sphere":
        torch.testing.assert_close(linf, budget, rtol=1e-5, atol=1e-7)


def test_random_start_stays_in_the_ball(cnn, test_batch):  # noqa: F811
    images, labels = test_batch
    torch.manual_seed(0)
    adversarial = pgd(cnn, images, labels, 0.3, steps=1, step_size=1e-6, projection="ball", random_start=True)
    norms = _l2(adversarial - images)
    assert (norms <= 0.3 + 1e-5).all() and (norms > 0.1).all()


@pytest.mark.compat
def test_samples_are_attacked_independently_of_their_batch(cnn, test_batch):  # noqa: F811
    images, labels = test_batch
    batched = pgd(cnn, images, labels, torch.linspace(0.2, 2.0, len(images)))
    alone = torch.cat(
        [pgd(cnn, images[i : i + 1], labels[i : i + 1], 0.2 + 1.8 * i / (len(images) - 1)) for i in range(len(images))]
    )
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=0)


def test_a_known_first_gradient_gives_the_same_attack_for_fewer_passes(cnn, test_batch):  # noqa: F811
    images, labels = test_batch
    eps = torch.linspace(0.1, 3.0, len(images))
    counter = CountingModel(cnn, len(images))
    first = cross_entropy_gradient(cnn, images, labels)
    reused = pgd(counter, images, labels, eps, first_gradient=first)
    torch.testing.assert_close(reused, pgd(cnn, images, labels, eps), atol=1e-6, rtol=0)
    assert (counter.forward_passes == 2).all() and (counter.backward_passes == 2).all()
    with pytest.raises(ValueError, match="first_gradient"):
        pgd(cnn, images, labels, eps, first_gradient=first, random_start=True)


def test_the_paper_protocol_fools_the_trained_cnn_more_at_larger_eps(cnn, test_batch):  # noqa: F811
    images, labels = test_batch
    rates = []
    for eps in (0.05, 3.0):
        with torch.no_grad():
            rates.append((cnn(pgd(cnn, images, labels, eps)).argmax(1) != labels).float().mean().item())
    assert rates[0] < 0.5 < rates[1]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"eps": -1.0}, "eps"),
        ({"eps": torch.ones(3)}, "eps: expected a float or a tensor of shape"),
        ({"eps": 1.0, "norm": "l1"}, "norm"),
        ({"eps": 1.0, "projection": "cube"}, "projection"),
        ({"eps": 1.0, "steps": 0}, "steps"),
    ],
)
def test_bad_arguments_are_named(cnn, test_batch, kwargs, message):  # noqa: F811
    images, labels = test_batch
    with pytest.raises(ValueError, match=message):
        pgd(cnn, images, labels, **kwargs)


def test_images_outside_the_bounds_are_refused(cnn, test_batch):  # noqa: F811
    images, labels = test_batch
    with pytest.raises(ValueError, match="outside bounds"):
        pgd(cnn, images * 255, labels, 1.0)
    with pytest.raises(ValueError, match="labels"):
        pgd(cnn, images, labels[:-1], 1.0)
