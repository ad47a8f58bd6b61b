"""The table of model sources: every spec form is one entry that matches, loads and identifies itself;
one timm checkpoint loader; one ``published:NAME:PATH`` parser."""

from __future__ import annotations

import hashlib

import pytest
import timm
import torch
import torchvision
from torch import nn

from attacks_torch.models import (
    ModelSource,
    PixelModel,
    load_model,
    load_timm,
    model_identity,
    model_kind,
    model_source,
    register_source,
    registry,
)
from attacks_torch.models.lite0 import lite0_checkpoint_path
from harmonization.model_names import parse_published
from harmonization.timm_models import load_timm_weights


def _sha(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_an_unknown_spec_is_one_line_listing_every_source():
    with pytest.raises(ValueError) as refused:
        load_model("no_such_net", weights="random")
    message = str(refused.value)
    assert "\n" not in message and "unknown timm model 'no_such_net'" in message
    for source in registry.known_sources():
        assert source.form in message
    assert {s.kind for s in registry.known_sources()} == {
        "published",
        "robustness",
        "torchvision",
        "keras",
        "lite0",
        "timm",
    }


def test_every_source_identifies_itself_by_content_and_stably(tmp_path):
    files = {}
    for name in ("v.h5", "robust.pt", "plain.pt", "m.keras", "w.pth"):
        files[name] = tmp_path / name
        files[name].write_bytes(name.encode() * 3)
    expected = {  # spec, keyword arguments -> the identity, computed here from the files' bytes
        f"published:vgg16:{files['v.h5']}": (
            {},
            {"kind": "published", "architecture": "vgg16", "sha256": _sha(files["v.h5"])},
        ),
        f"robustness:resnet18:{files['robust.pt']}": (
            {},
            {
                "kind": "robustness",
                "architecture": "resnet18",
                "torchvision": torchvision.__version__,
                "sha256": _sha(files["robust.pt"]),
            },
        ),
        f"torchvision:resnet34:{files['plain.pt']}": (
            {},
            {
                "kind": "torchvision",
                "architecture": "resnet34",
                "torchvision": torchvision.__version__,
                "sha256": _sha(files["plain.pt"]),
            },
        ),
        str(files["m.keras"]): ({}, {"kind": "keras", "sha256": _sha(files["m.keras"])}),
        "efficientnet_lite0_imagenet": (
            {},
            {
                "kind": "lite0",
                "timm": timm.__version__,
                "name": "tf_efficientnet_lite0",
                "checkpoint_sha256": _sha(lite0_checkpoint_path()),
            },
        ),
        "test_resnet": (
            {"weights": "random", "seed": 4, "num_classes": 5},
            {
                "kind": "timm",
                "timm": timm.__version__,
                "name": "test_resnet",
                "num_classes": 5,
                "weights": "random",
                "seed": 4,
            },
        ),
        "test_vit": (
            {"checkpoint": str(files["w.pth"])},
            {
                "kind": "timm",
                "timm": timm.__version__,
                "name": "test_vit",
                "num_classes": None,
                "checkpoint_sha256": _sha(files["w.pth"]),
            },
        ),
    }
    for spec, (arguments, identity) in expected.items():
        assert model_identity(spec, **arguments) == identity, spec
        assert model_identity(spec, **arguments) == identity, spec  # again: stable
        assert model_kind(spec) == identity["kind"] == model_source(spec).kind
    covered = {identity["kind"] for _, identity in expected.values()}
    assert covered == {s.kind for s in registry.known_sources()}  # every source is covered here


class _Tiny(nn.Module):
    def __init__(self, classes: int) -> None:
        super().__init__()
        self.head = nn.Linear(3, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x.mean(dim=(2, 3)))


def test_a_registered_source_is_loaded_and_identified(monkeypatch):
    monkeypatch.setattr(registry, "SOURCES", list(registry.SOURCES))

    def check(spec: str) -> None:
        if not spec[len("tiny:") :].isdigit():
            raise ValueError(f"model {spec!r}: expected tiny:CLASSES")

    def load(spec: str, options) -> PixelModel:
        classes = int(spec[len("tiny:") :])
        return PixelModel(
            _Tiny(classes), name=spec, input_size=None, mean=(0.5,) * 3, std=(0.5,) * 3, num_classes=classes
        )

    tiny = register_source(
        ModelSource(
            "tiny",
            "tiny:CLASSES",
            lambda s: s.startswith("tiny:"),
            load=load,
            identity=lambda s, o: {"classes": int(s[5:])},
            check=check,
        )
    )
    assert model_source("tiny:4") is tiny and model_kind("tiny:4") == "tiny"
    model = load_model("tiny:4")
    assert isinstance(model, PixelModel) and model(torch.rand(2, 3, 8, 8)).shape == (2, 4)
    assert model_identity("tiny:4") == {"kind": "tiny", "classes": 4}
    with pytest.raises(ValueError, match="expected tiny:CLASSES"):
        load_model("tiny:four")
    with pytest.raises(ValueError, match="checkpoint is for timm names only"):
        model_identity("tiny:4", checkpoint="w.pth")
    with pytest.raises(ValueError, match="tiny:CLASSES"):  # now among the forms an unknown spec lists
        load_model("no_such_net")
    with pytest.raises(ValueError, match="'tiny' is already registered"):
        register_source(tiny)
    assert model_kind("test_resnet") == "timm"  # the fallback still takes what no source claims


def test_one_timm_loader_refuses_missing_or_extra_keys_in_one_line_naming_the_file(tmp_path):
    torch.manual_seed(0)
    state = timm.create_model("test_resnet", num_classes=5).state_dict()
    first = next(iter(state))
    for name, broken in (
        ("missing.pth", {k: v for k, v in state.items() if k != first}),
        ("extra.pth", {**state, "extra.weight": torch.zeros(2)}),
    ):
        torch.save(broken, tmp_path / name)
        with pytest.raises(ValueError) as refused:
            load_timm("test_resnet", checkpoint=tmp_path / name, num_classes=5)
        message = str(refused.value)
        assert "\n" not in message and name in message and "do not fit" in message
        assert (first if name == "missing.pth" else "extra.weight") in message
    torch.save(state, tmp_path / "five.pth")
    with pytest.raises(ValueError, match="five.pth.*of another shape.*fc.weight"):
        load_timm("test_resnet", checkpoint=tmp_path / "five.pth", num_classes=3)  # an attack: strict
    network = timm.create_model("test_resnet", num_classes=3)  # training: the body, a fresh head
    fresh_head = network.state_dict()["fc.weight"].clone()
    load_timm_weights(network, "test_resnet", tmp_path / "five.pth", new_head=True)
    loaded = network.state_dict()
    assert torch.equal(loaded["fc.weight"], fresh_head) and torch.equal(loaded[first], state[first])
    with pytest.raises(ValueError, match="missing.pth.*missing"):  # a fresh head only, nothing else
        load_timm_weights(
            timm.create_model("test_resnet", num_classes=3), "test_resnet", tmp_path / "missing.pth", new_head=True
        )


def test_one_parser_of_published_specs():
    assert parse_published("published: vgg16 :C:/w/v.h5 ") == ("vgg16", "C:/w/v.h5")
    for bad in ("published:vgg16", "published::x.h5", "published:vgg16: ", "vgg16:x.h5"):
        with pytest.raises(ValueError, match=f"--model {bad!r}: expected published:NAME:PATH$"):
            parse_published(bad, what="--model")
