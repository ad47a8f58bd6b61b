"""Pixel-model wrappers: normalisation and resize inside, eval mode, timm loading, the offline ImageNet model."""

import hashlib
import pickle

import pytest
import timm
import torch
from safetensors.torch import save_file
from torch import nn
from torchvision.transforms.v2 import functional as TF
from builders import lite0

from attacks_torch.models import PixelModel, load_model, load_timm, model_identity
from attacks_torch.photos import bundled_photos
from attacks_torch.models import keras_loader


def _network(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)
    )


def test_normalisation_and_resize_happen_inside_and_gradients_reach_pixels():
    network = _network()
    network.eval()
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    model = PixelModel(network, name="net", input_size=(24, 24), mean=mean, std=std, interpolation="bicubic")
    x = torch.rand(2, 3, 12, 12, requires_grad=True)
    expected = network(TF.normalize(TF.resize(x.detach(), [24, 24], TF.InterpolationMode.BICUBIC), mean, std))
    logits = model(x)
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)
    (grad,) = torch.autograd.grad(logits[:, 0].sum(), x)
    assert grad.shape == x.shape and grad.abs().sum() > 0
    same_size = torch.rand(2, 3, 24, 24)
    torch.testing.assert_close(model(same_size), network(TF.normalize(same_size, mean, std)))


def test_the_wrapper_stays_in_eval_mode_with_frozen_parameters():
    model = PixelModel(_network(), name="net", input_size=None, mean=(0.5,) * 3, std=(0.5,) * 3)
    x = torch.rand(4, 3, 10, 10)
    before = model(x)
    model.train()
    assert not model.training and not any(m.training for m in model.modules())
    torch.testing.assert_close(model(x), before)  # BatchNorm used its running statistics, not the batch's
    assert not any(p.requires_grad for p in model.parameters())


def test_an_interpolation_the_wrapper_cannot_reproduce_is_refused():
    with pytest.raises(ValueError, match="'net': interpolation must be one of .* got 'lanczos'"):
        PixelModel(_network(), name="net", input_size=(8, 8), mean=(0.5,) * 3, std=(0.5,) * 3, interpolation="lanczos")


def test_images_take_the_model_interpolation_and_maps_bilinear_in_one_place():
    model = PixelModel(
        _network(), name="net", input_size=(24, 24), mean=(0.5,) * 3, std=(0.5,) * 3, interpolation="bicubic"
    )
    images, maps = torch.rand(2, 3, 12, 12), torch.rand(2, 12, 12)
    bicubic = TF.resize(images, [24, 24], TF.InterpolationMode.BICUBIC, antialias=True)
    torch.testing.assert_close(model.resize_images(images), bicubic.clamp(0, 1), atol=1e-5, rtol=1e-5)
    bilinear = TF.resize(maps[:, None], [24, 24], TF.InterpolationMode.BILINEAR, antialias=True)[:, 0]
    torch.testing.assert_close(model.resize_maps(maps), bilinear, atol=1e-5, rtol=1e-5)
    with torch.no_grad():  # forward resizes exactly as resize_images (inputs whose bicubic stays in [0, 1])
        flat = torch.full((1, 3, 12, 12), 0.5)
        torch.testing.assert_close(model(flat), model(model.resize_images(flat)))


def test_bad_images_name_the_model():
    model = PixelModel(_network(), name="net", input_size=None, mean=(0.5,) * 3, std=(0.5,) * 3)
    with pytest.raises(ValueError, match="'net'.*N, 3, H, W"):
        model(torch.rand(2, 1, 8, 8))


def test_timm_model_keeps_its_whole_data_config():
    model = load_timm("test_resnet", num_classes=7)
    config = timm.data.resolve_data_config({}, model=timm.create_model("test_resnet"))
    assert model.data_config == {key: config[key] for key in ("input_size", "interpolation", "crop_pct", "mean", "std")}
    assert model.num_classes == 7
    x = torch.rand(2, 3, 40, 40, requires_grad=True)
    logits = model(x)
    assert logits.shape == (2, 7)
    assert torch.autograd.grad(logits.sum(), x)[0].abs().sum() > 0


def test_unknown_timm_name_lists_close_names():
    with pytest.raises(ValueError, match="unknown timm model 'resnet1888'.*resnet18"):
        load_timm("resnet1888")


def test_pretrained_without_a_hub_suggests_a_checkpoint():
    with pytest.raises(RuntimeError, match="'test_resnet'.*checkpoint="):
        load_timm("test_resnet", pretrained=True)


@pytest.mark.parametrize("layout", ["torch", "torch-wrapped", "safetensors"])
def test_local_checkpoints_load_into_the_model(tmp_path, layout):
    torch.manual_seed(3)
    source = timm.create_model("test_resnet", num_classes=5).eval()
    state = source.state_dict()
    path = tmp_path / ("weights.safetensors" if layout == "safetensors" else "weights.pth")
    if layout == "safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save({"state_dict": state, "epoch": 3} if layout == "torch-wrapped" else state, path)
    model = load_timm("test_resnet", checkpoint=path, num_classes=5)
    x = torch.rand(2, 3, 160, 160)
    with torch.no_grad():
        torch.testing.assert_close(model(x), source((x - 0.5) / 0.5))


def test_bad_checkpoints_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_timm("test_resnet", checkpoint=tmp_path / "missing.pth")
    wrong = tmp_path / "wrong.pth"
    torch.save(timm.create_model("test_vit").state_dict(), wrong)
    with pytest.raises(ValueError, match="wrong.pth.*does not fit"):
        load_timm("test_resnet", checkpoint=wrong)
    code = tmp_path / "code.pth"
    code.write_bytes(pickle.dumps(print))  # weights_only refuses anything but tensors and containers
    with pytest.raises(ValueError, match="code.pth"):
        load_timm("test_resnet", checkpoint=code)


def test_load_model_dispatches_on_the_spec(tmp_path, monkeypatch):
    first, again = (load_model("test_vit", weights="random", num_classes=3, seed=5) for _ in range(2))
    other = load_model("test_vit", weights="random", num_classes=3, seed=6)
    state = first.network.state_dict()
    assert all(torch.equal(v, again.network.state_dict()[k]) for k, v in state.items())
    assert not all(torch.equal(v, other.network.state_dict()[k]) for k, v in state.items())
    assert first.name == "test_vit" and first.num_classes == 3
    with pytest.raises(FileNotFoundError, match="absent.keras"):
        load_model(str(tmp_path / "absent.keras"))
    with pytest.raises(ValueError, match="checkpoint is for timm names only"):
        load_model(str(tmp_path / "m.keras"), checkpoint="w.pth")
    with pytest.raises(ValueError, match="num_classes is for timm names only"):
        load_model("efficientnet_lite0_imagenet", num_classes=4)
    calls = []
    monkeypatch.setattr(
        keras_loader, "load_published", lambda name, path: calls.append((name, path)) or "model", raising=False
    )
    assert load_model("published:vgg16:/w/vgg16_harmonized.h5") == "model"
    assert calls == [("vgg16", "/w/vgg16_harmonized.h5")]
    with pytest.raises(ValueError, match="published:NAME:PATH"):
        load_model("published:vgg16")


def test_model_identity_is_the_content(tmp_path):
    path = tmp_path / "w.pth"
    torch.save(timm.create_model("test_resnet", num_classes=5).state_dict(), path)
    identity = model_identity("test_resnet", checkpoint=str(path), num_classes=5)
    assert identity["checkpoint_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    moved = tmp_path / "moved.pth"
    path.rename(moved)
    assert model_identity("test_resnet", checkpoint=str(moved), num_classes=5) == identity
    random = model_identity("test_resnet", weights="random", seed=1)
    assert random["seed"] == 1 and random["timm"] == timm.__version__
    assert "seed" not in model_identity("test_resnet", weights="pretrained", seed=1)
    keras_file = tmp_path / "m.keras"
    keras_file.write_bytes(b"one")
    before = model_identity(str(keras_file))
    keras_file.write_bytes(b"two")
    assert model_identity(str(keras_file)) != before


def test_bundled_photos_are_imagenet_sized_pixels():
    photos = bundled_photos(["coffee", "china"])
    assert photos.images.shape == (2, 3, 224, 224) and photos.images.dtype == torch.float32
    assert 0 <= photos.images.min() and photos.images.max() <= 1 and photos.images.std() > 0.1
    assert photos.labels.tolist() == [967, 698] and photos.accepted == [frozenset({967}), frozenset({698})]
    images, labels, names = photos  # unpacks as (images, labels, names)
    assert names == ["coffee", "china"]
    with pytest.raises(ValueError, match="unknown bundled photo"):
        bundled_photos(["astronaut"])


def test_offline_efficientnet_lite0_labels_the_bundled_photos():
    photos = bundled_photos()
    with torch.no_grad():
        predictions = lite0()(photos.images).argmax(1).tolist()
    assert [p in accepted for p, accepted in zip(predictions, photos.accepted)] == [True] * len(photos.names), dict(
        zip(photos.names, predictions)
    )
