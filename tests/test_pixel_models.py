"""Pixel-model wrappers: normalisation and resize inside, eval mode, timm loading, the offline ImageNet model."""
import pickle

import pytest
import timm
import torch
from safetensors.torch import save_file
from torch import nn
from torchvision.transforms.v2 import functional as TF
from torch_helpers import lite0

from attacks_torch.models import PixelModel, bundled_photos, load_model, load_timm


def _network(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, 3))


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


def test_bad_images_name_the_model():
    model = PixelModel(_network(), name="net", input_size=None, mean=(0.5,) * 3, std=(0.5,) * 3)
    with pytest.raises(ValueError, match="'net'.*N, 3, H, W"):
        model(torch.rand(2, 1, 8, 8))


def test_timm_model_uses_its_data_config():
    model = load_timm("test_resnet", num_classes=7)
    config = timm.data.resolve_data_config({}, model=timm.create_model("test_resnet"))
    assert model.input_size == config["input_size"][1:] and model.mean == config["mean"] and model.std == config["std"]
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


def test_load_model_dispatches_on_the_spec(tmp_path):
    assert load_model("test_vit").name == "test_vit"
    with pytest.raises(FileNotFoundError, match="absent.keras"):
        load_model(str(tmp_path / "absent.keras"))


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
    assert [p in accepted for p, accepted in zip(predictions, photos.accepted)] == [True] * len(photos.names), (
        dict(zip(photos.names, predictions))
    )
