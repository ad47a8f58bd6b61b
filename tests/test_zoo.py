"""The model zoo of Table S1: families, classes, the default list, accuracy CSVs."""

from collections import Counter

import pytest
import timm
from timm.models import get_pretrained_cfg

from attacks_torch import zoo
from attacks_torch.report.accuracy import lookup_accuracy, read_accuracy_csv

TABLE_S1 = {  # the paper's Table S1: family -> (class, versions)
    "VGG": ("CNN", 8),
    "ResNet": ("CNN", 8),
    "EfficientNet": ("CNN", 7),
    "ConvNext": ("CNN", 6),
    "MobileNet": ("CNN", 10),
    "Inception": ("CNN", 3),
    "DenseNet": ("CNN", 4),
    "RegNet": ("CNN", 22),
    "Xception": ("CNN", 4),
    "MixNet": ("CNN", 4),
    "DPN": ("CNN", 6),
    "DarkNet": ("CNN", 1),
    "NFNet": ("CNN", 11),
    "TinyNet": ("CNN", 5),
    "LCNet": ("CNN", 3),
    "DLA": ("CNN", 12),
    "MnasNet": ("CNN", 4),
    "CSPNet": ("CNN", 3),
    "General ViT": ("ViT", 8),
    "MobileViT": ("ViT", 10),
    "Swin": ("ViT", 22),
    "MaxViT": ("ViT", 14),
    "DeiT": ("ViT", 24),
    "CaiT": ("ViT", 10),
    "XCiT": ("ViT", 28),
    "EVA": ("ViT", 5),
    "VOLO": ("hybrid", 8),
    "CoAtNet": ("hybrid", 13),
}


def test_families_and_default_counts_follow_table_s1():
    assert {f.name: (f.arch, f.paper_count) for f in zoo.FAMILIES} == TABLE_S1
    assert {f.name: len(f.models) for f in zoo.FAMILIES} == {k: v[1] for k, v in TABLE_S1.items()}
    counts = Counter(zoo.classify(m) for m in zoo.default_models())
    assert counts == {"CNN": 121, "ViT": 121, "hybrid": 21}
    assert len(set(zoo.default_models())) == 263


def test_every_default_model_is_a_pretrained_imagenet_1k_timm_model_of_its_family():
    available = set(timm.list_models(pretrained=True))
    for family in zoo.FAMILIES:
        for model in family.models:
            assert model in available, model
            assert get_pretrained_cfg(model).num_classes == 1000, model
            assert zoo.family_of(model) is family, model


def test_filters_by_family_and_class():
    swin = zoo.default_models(family="swin")
    assert len(swin) == 22 and all(m.startswith("swin") for m in swin)
    assert zoo.default_models(family="General ViT") == zoo.default_models(family="vit")
    hybrids = zoo.default_models(arch="hybrid")
    assert len(hybrids) == 21 and all(zoo.classify(m) == "hybrid" for m in hybrids)
    assert zoo.default_models(family="swin", arch="cnn") == []
    assert set(zoo.default_models(family="swin")) <= set(zoo.timm_models(family="swin"))
    with pytest.raises(ValueError, match="unknown family 'swim'"):
        zoo.default_models(family="swim")
    with pytest.raises(ValueError, match="unknown architecture class 'mlp'"):
        zoo.default_models(arch="mlp")


@pytest.mark.parametrize(
    "name, expected",
    [
        ("vgg16.tv_in1k", "CNN"),
        ("test_resnet", "CNN"),
        ("test_vit", "ViT"),
        ("test_coatnet", "hybrid"),
        ("eva_giant_patch14_336.m30m_ft_in22k_in1k", "ViT"),
        ("mobilevit_s", "ViT"),
        ("runs/harmonized_vit_b16.keras", "ViT"),
        ("runs/convnext_tiny.keras", "CNN"),
        ("maxvit_tiny_harmonized.h5", "ViT"),
        ("efficientnetb0", "CNN"),
        ("some_new_net", "CNN"),
    ],
)
def test_classify(name, expected):
    assert zoo.classify(name) == expected


def test_classify_default_for_unknown_models():
    assert zoo.classify("some_new_net", default="vit") == "ViT"
    assert zoo.classify("test_resnet", default="hybrid") == "CNN"


def test_accuracy_csv_in_timm_results_format(tmp_path):
    path = tmp_path / "results-imagenet.csv"
    path.write_text(
        "model,img_size,top1,top1_err,top5,top5_err,param_count,crop_pct,interpolation\n"
        "eva_giant_patch14_336.m30m_ft_in22k_in1k,336,89.566,10.434,98.82,1.18,1013.01,1.0,bicubic\n"
        "resnet50.a1_in1k,288,81.22,18.78,95.11,4.89,25.56,1.0,bicubic\n"
        "resnet50.tv_in1k,224,76.13,23.87,92.86,7.14,25.56,0.875,bilinear\n"
    )
    table = read_accuracy_csv(path)
    assert table["resnet50.tv_in1k"] == pytest.approx(76.13)
    assert lookup_accuracy(table, "resnet50.tv_in1k") == pytest.approx(76.13)
    assert lookup_accuracy(table, "resnet50") == pytest.approx(81.22)  # first row of the architecture
    assert lookup_accuracy(table, "resnet50.fb_in1k") is None
    assert lookup_accuracy(table, "vgg16") is None
    bad = tmp_path / "bad.csv"
    bad.write_text("model,acc\nresnet50,76\n")
    with pytest.raises(ValueError, match=r"bad\.csv: missing column\(s\) top1"):
        read_accuracy_csv(bad)
    bad.write_text("model,top1\nresnet50,high\n")
    with pytest.raises(ValueError, match=r"bad\.csv: line 2: top1 'high'"):
        read_accuracy_csv(bad)
