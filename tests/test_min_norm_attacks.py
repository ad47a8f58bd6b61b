"""DDN and Carlini-Wagner L2 against foolbox's implementations, and what their outputs guarantee."""

import foolbox
import torch
from builders import synthetic_images

from attacks_torch.attacks import carlini_wagner_l2, ddn
from attacks_torch.models.counting import CountingModel


def _norms(adversarial, images):
    return (adversarial - images).flatten(1).norm(dim=1)


def _fooled(model, adversarial, labels):
    with torch.no_grad():
        return model(adversarial).argmax(1) != labels


def test_ddn_median_norm_within_2_percent_of_foolbox(cnn):  # noqa: F811
    images, labels = synthetic_images(32, seed=11)
    ours = ddn(cnn, images, labels, steps=30)
    reference = foolbox.attacks.DDNAttack(steps=30).run(
        foolbox.PyTorchModel(cnn, bounds=(0, 1), device="cpu"), images, labels
    )
    assert _fooled(cnn, ours, labels).all() and _fooled(cnn, reference, labels).all()
    ours_median, reference_median = _norms(ours, images).median(), _norms(reference, images).median()
    assert abs(ours_median / reference_median - 1) < 0.02, (ours_median, reference_median)


def test_ddn_returns_in_bounds_images_and_the_clean_image_where_it_fails(cnn):  # noqa: F811
    images, labels = synthetic_images(6, seed=12)
    adversarial = ddn(cnn, images, labels, steps=3, init_epsilon=0.01, gamma=0.01, max_step_size=0.01)
    assert adversarial.min() >= 0 and adversarial.max() <= 1
    fooled = _fooled(cnn, adversarial, labels)
    assert not fooled.all()  # a budget this small cannot fool them all
    torch.testing.assert_close(adversarial[~fooled], images[~fooled])


def test_cw_without_early_abort_matches_foolbox(cnn):  # noqa: F811
    images, labels = synthetic_images(8, seed=13)
    settings = dict(binary_search_steps=3, steps=20, confidence=0.0, abort_early=False)
    ours = carlini_wagner_l2(cnn, images, labels, step_size=0.05, initial_const=1.0, **settings)
    reference = foolbox.attacks.L2CarliniWagnerAttack(stepsize=0.05, initial_const=1.0, **settings).run(
        foolbox.PyTorchModel(cnn, bounds=(0, 1), device="cpu"), images, labels
    )
    found = _fooled(cnn, reference, labels)
    assert found.sum() >= 4  # most samples have an adversarial to compare
    torch.testing.assert_close(ours[found], reference[found], atol=1e-4, rtol=0)
    torch.testing.assert_close(ours[~found], images[~found])


def test_cw_finds_adversarials_and_early_abort_spends_fewer_passes(cnn):  # noqa: F811
    images, labels = synthetic_images(8, seed=14)
    runs = {}
    for abort_early in (False, True):
        counter = CountingModel(cnn, len(images))
        adversarial = carlini_wagner_l2(
            counter, images, labels, binary_search_steps=3, steps=40, step_size=0.05, abort_early=abort_early
        )
        runs[abort_early] = (adversarial, counter.forward_passes)
    for adversarial, _passes in runs.values():
        fooled = _fooled(cnn, adversarial, labels)
        assert fooled.sum() >= 6
        assert adversarial.min() >= 0 and adversarial.max() <= 1
    assert (runs[False][1] == 3 * 40).all()
    assert (runs[True][1] <= 3 * 40).all() and runs[True][1].sum() < runs[False][1].sum()
