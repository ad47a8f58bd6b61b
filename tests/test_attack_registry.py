"""The attack registry: one entry per attack, its defaults are its function's, and options are checked."""

import json

import pytest
import torch
from builders import synthetic_images

from attacks_torch.attacks import carlini_wagner_l2, ddn, pgd
from attacks_torch.attacks.registry import ATTACK_REGISTRY, resolve_attack_options
from attacks_torch.search import ATTACKS, SEARCH_ATTACKS, find_minimal


def test_every_attack_has_one_entry_with_its_function_and_norm():
    assert ATTACKS == ("l2_pgd", "linf_pgd", "cw_l2", "ddn") == tuple(ATTACK_REGISTRY)
    assert SEARCH_ATTACKS == ("l2_pgd", "linf_pgd")
    expected = {
        "l2_pgd": ("search", "l2", pgd),
        "linf_pgd": ("search", "linf", pgd),
        "cw_l2": ("min_norm", "l2", carlini_wagner_l2),
        "ddn": ("min_norm", "l2", ddn),
    }
    for name, entry in ATTACK_REGISTRY.items():
        assert entry.name == name and (entry.kind, entry.norm, entry.function) == expected[name]


def test_defaults_are_the_functions_own_and_the_paper_protocol():
    pgd_defaults = resolve_attack_options("l2_pgd", None)
    assert pgd_defaults == {
        "steps": 3,
        "step_size": 0.5,
        "projection": "sphere",
        "random_start": False,
        "bounds": (0.0, 1.0),
        "rel_step_size": None,
    }
    assert resolve_attack_options("cw_l2", {})["initial_const"] == 0.1
    ddn_defaults = resolve_attack_options("ddn", None)
    assert (ddn_defaults["steps"], ddn_defaults["gamma"]) == (100, 0.05)
    with pytest.raises(TypeError):
        ATTACK_REGISTRY["ddn"].defaults["steps"] = 5  # read-only: a caller cannot change a default for everyone


@pytest.mark.parametrize("attack", ATTACKS)
def test_resolving_the_defaults_themselves_changes_nothing(attack):
    """Every default passes its own check, so a fingerprint of the resolved options is stable."""
    defaults = dict(ATTACK_REGISTRY[attack].defaults)
    assert resolve_attack_options(attack, defaults) == defaults
    round_trip = json.loads(json.dumps(resolve_attack_options(attack, None)))
    assert resolve_attack_options(attack, round_trip) == defaults  # JSON lists and ints resolve to the same


def test_overrides_are_merged_and_normalised():
    resolved = resolve_attack_options("ddn", {"steps": 20, "gamma": 0.1, "init_epsilon": 2})
    assert resolved["steps"] == 20 and resolved["gamma"] == 0.1
    assert resolved["init_epsilon"] == 2.0 and isinstance(resolved["init_epsilon"], float)
    assert resolved["max_step_size"] == 1.0  # untouched defaults stay
    assert resolve_attack_options("l2_pgd", {"rel_step_size": 0.25, "bounds": [0, 255]})["bounds"] == (0.0, 255.0)
    assert resolve_attack_options("l2_pgd", {"rel_step_size": None})["rel_step_size"] is None


@pytest.mark.parametrize(
    "attack, options, message",
    [
        ("fgsm", None, "attack: expected one of l2_pgd, linf_pgd, cw_l2, ddn, got 'fgsm'"),
        ("ddn", {"const": 1.0}, "unknown option 'const' for ddn; its options are steps, init_epsilon, gamma"),
        ("cw_l2", {"gamma": 0.1}, "unknown option 'gamma' for cw_l2; its options are binary_search_steps"),
        ("l2_pgd", {"steps": 2.5}, "steps of l2_pgd must be an integer >= 1, got 2.5 .options of l2_pgd: steps"),
        ("l2_pgd", {"steps": True}, "steps of l2_pgd must be an integer >= 1, got True"),
        ("l2_pgd", {"projection": "cube"}, "projection of l2_pgd must be one of sphere, ball, got 'cube'"),
        ("linf_pgd", {"step_size": -0.1}, "step_size of linf_pgd must be a number > 0"),
        ("linf_pgd", {"step_size": float("nan")}, "step_size of linf_pgd must be a number > 0"),
        ("l2_pgd", {"random_start": "yes"}, "random_start of l2_pgd must be true or false"),
        ("l2_pgd", {"bounds": [1, 0]}, "bounds of l2_pgd must be two numbers"),
        ("ddn", {"gamma": 1.0}, "gamma of ddn must be a number strictly between 0 and 1"),
        ("cw_l2", {"confidence": -1}, "confidence of cw_l2 must be a number >= 0"),
        ("cw_l2", {"initial_const": "0.1"}, "initial_const of cw_l2 must be a number > 0"),
    ],
)
def test_bad_options_are_refused_in_one_line_naming_the_key(attack, options, message):
    with pytest.raises(ValueError, match=message) as error:
        resolve_attack_options(attack, options)
    assert "\n" not in str(error.value)


def test_find_minimal_runs_the_attack_with_the_resolved_options(cnn):  # noqa: F811
    images, labels = synthetic_images(4, seed=21)
    few = find_minimal(cnn, images, labels, "ddn", attack_options={"steps": 5})
    many = find_minimal(cnn, images, labels, "ddn", attack_options={"steps": 15})
    attacked = few.attacked
    # DDN: steps backward and steps + 1 forward passes per attacked image, between the clean pass and the check
    assert (few.backward_passes[attacked] == 5).all() and (many.backward_passes[attacked] == 15).all()
    assert (few.forward_passes[attacked] == 1 + 6 + 1).all()
    pgd_steps = find_minimal(
        cnn, images, labels, "l2_pgd", hi=0.002, lo=0.001, ladder_start=0.002, attack_options={"steps": 5}
    )
    # one eps tried (hi): the shared first gradient, then 4 more steps and a check
    assert (pgd_steps.backward_passes[pgd_steps.attacked] == 5).all()
    with pytest.raises(ValueError, match="unknown option 'gamma' for l2_pgd"):
        find_minimal(cnn, images, labels, "l2_pgd", attack_options={"gamma": 0.1})
    assert torch.equal(few.attacked, many.attacked)
