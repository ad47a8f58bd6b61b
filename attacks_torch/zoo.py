"""The paper's model zoo (Table S1): timm families, their architecture class and a default list.

Each family of Table S1 maps to timm architecture-name patterns (``fnmatch`` style) and to an
architecture class, "CNN", "ViT" or "hybrid". The default list holds, per family, exactly the
number of models the table gives, as timm names with a pretrained tag whose head is ImageNet-1k:
first the models of the reference code's list (``serre-lab/Adversarial-Alignment``), renamed to
current timm names (``xception`` -> ``legacy_xception``, ``*_in21ft1k`` -> ``.fb_in22k_ft_in1k``,
``xcit_*_384_dist`` -> ``xcit_*_384.fb_dist_in1k``), then further family members in timm's order,
each with timm's default pretrained tag. Where it differs from the paper (timm 1.0.x):

- Table S1 sums to 121 CNNs, 121 ViTs and 21 hybrids (263), while the text says 127, 123 and 15
  (283 with the harmonized, baseline and robust models); the default list follows the table.
- The table's "CSPNet 3" and "EVA 5" rows lost their class column: CSPNet is a CNN, EVA a ViT.
- EfficientNet (7), ConvNext (6), General ViT (8), Swin (22), MaxViT (14), CaiT (10) and EVA (5):
  the reference list is shorter; the rest are timm's next family members, so these picks are
  ours, not the paper's.
- VOLO: the reference list has 11 models for the table's 8; the first 8 are kept.
- CoAtNet: as in the reference code, 5 of its 13 are CoaT models (``coat_*``, a different
  conv-attention design) and 8 are CoAtNet models.
- Pretrained tags are timm's current defaults, which may be newer weights than the paper's
  (e.g. ``resnet50.a1_in1k``).

The models' ImageNet accuracy, for the report, is read by ``attacks_torch.report.accuracy``.
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass

ARCH_CLASSES = ("CNN", "ViT", "hybrid")
PAPER_TOTALS = {"CNN": 127, "ViT": 123, "hybrid": 15}
"""Model counts per class given in the paper's text (Table S1 itself sums differently)."""


@dataclass(frozen=True)
class Family:
    """One row of Table S1."""

    name: str
    arch: str
    paper_count: int
    patterns: tuple[str, ...]
    models: tuple[str, ...]


# Per family: its key, a colon, then its default models (timm names with pretrained tags).
_DEFAULT_MODELS = """
vgg: vgg11.tv_in1k vgg11_bn.tv_in1k vgg13.tv_in1k vgg13_bn.tv_in1k vgg16.tv_in1k vgg16_bn.tv_in1k
    vgg19.tv_in1k vgg19_bn.tv_in1k
resnet: resnet18.a1_in1k resnet26.bt_in1k resnet34.a1_in1k resnet50.a1_in1k resnet101.a1_in1k
    resnet152.a1_in1k resnetv2_50.a1h_in1k resnetv2_101.a1h_in1k
efficientnet: efficientnet_b0.ra4_e3600_r224_in1k efficientnet_b1.ft_in1k efficientnet_b2.ra_in1k
    efficientnet_b3.ra2_in1k efficientnet_b4.ra2_in1k efficientnet_b1_pruned.in1k
    efficientnet_b2_pruned.in1k
convnext: convnext_base.clip_laion2b_augreg_ft_in1k convnext_tiny.fb_in1k convnext_small.fb_in1k
    convnext_large.fb_in1k convnext_xlarge.fb_in22k_ft_in1k convnext_atto.d2_in1k
mobilenet: mobilenetv2_050.lamb_in1k mobilenetv2_100.ra_in1k mobilenetv2_110d.ra_in1k
    mobilenetv2_120d.ra_in1k mobilenetv2_140.ra_in1k mobilenetv3_large_100.miil_in21k_ft_in1k
    mobilenetv3_rw.rmsp_in1k mobilenetv3_small_050.lamb_in1k mobilenetv3_small_075.lamb_in1k
    mobilenetv3_small_100.lamb_in1k
inception: inception_resnet_v2.tf_ens_adv_in1k inception_v3.gluon_in1k inception_v4.tf_in1k
densenet: densenet121.ra_in1k densenet161.tv_in1k densenet169.tv_in1k densenet201.tv_in1k
regnet: regnetv_040.ra3_in1k regnetv_064.ra3_in1k regnetx_002.pycls_in1k regnetx_040.pycls_in1k
    regnetx_064.pycls_in1k regnetx_080.pycls_in1k regnetx_120.pycls_in1k regnetx_160.pycls_in1k
    regnetx_320.pycls_in1k regnety_002.pycls_in1k regnety_040.pycls_in1k regnety_064.pycls_in1k
    regnety_080.pycls_in1k regnety_120.pycls_in1k regnety_160.deit_in1k regnety_320.pycls_in1k
    regnetz_040.ra3_in1k regnetz_040_h.ra3_in1k regnetz_d8.ra3_in1k regnetz_d8_evos.ch_in1k
    regnetz_d32.ra3_in1k regnetz_e8.ra3_in1k
xception: legacy_xception.tf_in1k xception41.tf_in1k xception65.ra3_in1k xception71.tf_in1k
mixnet: mixnet_l.ft_in1k mixnet_m.ft_in1k mixnet_s.ft_in1k mixnet_xl.ra_in1k
dpn: dpn68.mx_in1k dpn68b.mx_in1k dpn92.mx_in1k dpn98.mx_in1k dpn107.mx_in1k dpn131.mx_in1k
darknet: darknet53.c2ns_in1k
nfnet: dm_nfnet_f0.dm_in1k dm_nfnet_f1.dm_in1k dm_nfnet_f2.dm_in1k dm_nfnet_f3.dm_in1k
    dm_nfnet_f4.dm_in1k dm_nfnet_f5.dm_in1k dm_nfnet_f6.dm_in1k eca_nfnet_l0.ra2_in1k
    eca_nfnet_l1.ra2_in1k eca_nfnet_l2.ra3_in1k nfnet_l0.ra2_in1k
tinynet: tinynet_a.in1k tinynet_b.in1k tinynet_c.in1k tinynet_d.in1k tinynet_e.in1k
lcnet: lcnet_050.ra2_in1k lcnet_075.ra2_in1k lcnet_100.ra2_in1k
dla: dla34.in1k dla46_c.in1k dla46x_c.in1k dla60.in1k dla60_res2net.in1k dla60_res2next.in1k
    dla60x.in1k dla60x_c.in1k dla102.in1k dla102x.in1k dla102x2.in1k dla169.in1k
mnasnet: mnasnet_100.rmsp_in1k mnasnet_small.lamb_in1k semnasnet_075.rmsp_in1k
    semnasnet_100.rmsp_in1k
cspnet: cspdarknet53.ra_in1k cspresnet50.ra_in1k cspresnext50.ra_in1k
vit: vit_base_patch8_224.augreg2_in21k_ft_in1k vit_base_patch16_224.augreg2_in21k_ft_in1k
    vit_base_patch32_224.augreg_in1k vit_tiny_patch16_224.augreg_in21k_ft_in1k
    vit_small_patch16_224.augreg_in1k vit_small_patch32_224.augreg_in21k_ft_in1k
    vit_large_patch16_224.augreg_in21k_ft_in1k vit_base_patch16_224_miil.in21k_ft_in1k
mobilevit: mobilevit_s.cvnets_in1k mobilevit_xs.cvnets_in1k mobilevit_xxs.cvnets_in1k
    mobilevitv2_050.cvnets_in1k mobilevitv2_075.cvnets_in1k mobilevitv2_100.cvnets_in1k
    mobilevitv2_125.cvnets_in1k mobilevitv2_150.cvnets_in1k mobilevitv2_175.cvnets_in1k
    mobilevitv2_200.cvnets_in1k
swin: swin_tiny_patch4_window7_224.ms_in1k swin_small_patch4_window7_224.ms_in1k
    swin_base_patch4_window7_224.ms_in1k swin_large_patch4_window7_224.ms_in22k_ft_in1k
    swin_s3_base_224.ms_in1k swin_s3_small_224.ms_in1k swin_s3_tiny_224.ms_in1k
    swin_base_patch4_window12_384.ms_in1k swin_large_patch4_window12_384.ms_in22k_ft_in1k
    swinv2_base_window8_256.ms_in1k swinv2_base_window16_256.ms_in1k swinv2_cr_small_224.sw_in1k
    swinv2_cr_small_ns_224.sw_in1k swinv2_cr_tiny_ns_224.sw_in1k swinv2_small_window8_256.ms_in1k
    swinv2_small_window16_256.ms_in1k swinv2_tiny_window8_256.ms_in1k
    swinv2_tiny_window16_256.ms_in1k swinv2_base_window12to16_192to256.ms_in22k_ft_in1k
    swinv2_base_window12to24_192to384.ms_in22k_ft_in1k
    swinv2_large_window12to16_192to256.ms_in22k_ft_in1k
    swinv2_large_window12to24_192to384.ms_in22k_ft_in1k
maxvit: maxvit_rmlp_small_rw_224.sw_in1k maxvit_tiny_rw_224.sw_in1k maxvit_nano_rw_256.sw_in1k
    maxvit_rmlp_nano_rw_256.sw_in1k maxvit_rmlp_pico_rw_256.sw_in1k maxvit_rmlp_tiny_rw_256.sw_in1k
    maxvit_base_tf_224.in1k maxvit_base_tf_384.in1k maxvit_base_tf_512.in1k
    maxvit_large_tf_224.in1k maxvit_large_tf_384.in1k maxvit_large_tf_512.in1k
    maxvit_rmlp_base_rw_224.sw_in12k_ft_in1k maxvit_rmlp_base_rw_384.sw_in12k_ft_in1k
deit: deit3_base_patch16_224.fb_in1k deit3_base_patch16_224.fb_in22k_ft_in1k
    deit3_huge_patch14_224.fb_in1k deit3_huge_patch14_224.fb_in22k_ft_in1k
    deit3_large_patch16_224.fb_in1k deit3_large_patch16_224.fb_in22k_ft_in1k
    deit3_medium_patch16_224.fb_in1k deit3_medium_patch16_224.fb_in22k_ft_in1k
    deit3_small_patch16_224.fb_in1k deit3_small_patch16_224.fb_in22k_ft_in1k
    deit_base_distilled_patch16_224.fb_in1k deit_base_patch16_224.fb_in1k
    deit_small_distilled_patch16_224.fb_in1k deit_small_patch16_224.fb_in1k
    deit_tiny_distilled_patch16_224.fb_in1k deit_tiny_patch16_224.fb_in1k
    deit3_base_patch16_384.fb_in1k deit3_base_patch16_384.fb_in22k_ft_in1k
    deit3_large_patch16_384.fb_in1k deit3_large_patch16_384.fb_in22k_ft_in1k
    deit3_small_patch16_384.fb_in1k deit3_small_patch16_384.fb_in22k_ft_in1k
    deit_base_distilled_patch16_384.fb_in1k deit_base_patch16_384.fb_in1k
cait: cait_s24_224.fb_dist_in1k cait_xxs24_224.fb_dist_in1k cait_xxs36_224.fb_dist_in1k
    cait_m36_384.fb_dist_in1k cait_m48_448.fb_dist_in1k cait_s24_384.fb_dist_in1k
    cait_s36_384.fb_dist_in1k cait_xs24_384.fb_dist_in1k cait_xxs24_384.fb_dist_in1k
    cait_xxs36_384.fb_dist_in1k
xcit: xcit_large_24_p8_224.fb_dist_in1k xcit_large_24_p16_224.fb_dist_in1k
    xcit_medium_24_p8_224.fb_dist_in1k xcit_medium_24_p16_224.fb_dist_in1k
    xcit_nano_12_p8_224.fb_dist_in1k xcit_nano_12_p16_224.fb_dist_in1k
    xcit_small_12_p8_224.fb_dist_in1k xcit_small_12_p16_224.fb_dist_in1k
    xcit_small_24_p8_224.fb_dist_in1k xcit_small_24_p16_224.fb_dist_in1k
    xcit_tiny_12_p8_224.fb_dist_in1k xcit_tiny_12_p16_224.fb_dist_in1k
    xcit_tiny_24_p8_224.fb_dist_in1k xcit_tiny_24_p16_224.fb_dist_in1k
    xcit_large_24_p8_384.fb_dist_in1k xcit_large_24_p16_384.fb_dist_in1k
    xcit_medium_24_p8_384.fb_dist_in1k xcit_medium_24_p16_384.fb_dist_in1k
    xcit_nano_12_p8_384.fb_dist_in1k xcit_nano_12_p16_384.fb_dist_in1k
    xcit_small_12_p8_384.fb_dist_in1k xcit_small_12_p16_384.fb_dist_in1k
    xcit_small_24_p8_384.fb_dist_in1k xcit_small_24_p16_384.fb_dist_in1k
    xcit_tiny_12_p8_384.fb_dist_in1k xcit_tiny_12_p16_384.fb_dist_in1k
    xcit_tiny_24_p8_384.fb_dist_in1k xcit_tiny_24_p16_384.fb_dist_in1k
eva: eva02_base_patch14_448.mim_in22k_ft_in1k eva02_large_patch14_448.mim_in22k_ft_in1k
    eva02_small_patch14_336.mim_in22k_ft_in1k eva02_tiny_patch14_336.mim_in22k_ft_in1k
    eva_giant_patch14_224.clip_ft_in1k
volo: volo_d1_224.sail_in1k volo_d2_224.sail_in1k volo_d3_224.sail_in1k volo_d4_224.sail_in1k
    volo_d5_224.sail_in1k volo_d1_384.sail_in1k volo_d2_384.sail_in1k volo_d3_448.sail_in1k
coatnet: coat_lite_mini.in1k coat_lite_small.in1k coat_lite_tiny.in1k coat_mini.in1k coat_tiny.in1k
    coatnet_0_rw_224.sw_in1k coatnet_1_rw_224.sw_in1k coatnet_bn_0_rw_224.sw_in1k
    coatnet_nano_rw_224.sw_in1k coatnet_rmlp_1_rw_224.sw_in1k coatnet_rmlp_2_rw_224.sw_in1k
    coatnet_rmlp_nano_rw_224.sw_in1k coatnext_nano_rw_224.sw_in1k
"""

_TABLE = (  # key, Table S1 name, class, count, timm architecture patterns
    ("vgg", "VGG", "CNN", 8, ("vgg*",)),
    ("resnet", "ResNet", "CNN", 8, ("resnet[0-9]*", "resnetv2_*", "test_resnet*")),
    ("efficientnet", "EfficientNet", "CNN", 7, ("efficientnet_*", "tf_efficientnet_*", "test_efficientnet*")),
    ("convnext", "ConvNext", "CNN", 6, ("convnext*", "test_convnext*")),
    ("mobilenet", "MobileNet", "CNN", 10, ("mobilenet*",)),
    ("inception", "Inception", "CNN", 3, ("inception_*",)),
    ("densenet", "DenseNet", "CNN", 4, ("densenet*",)),
    ("regnet", "RegNet", "CNN", 22, ("regnet*",)),
    ("xception", "Xception", "CNN", 4, ("*xception*",)),
    ("mixnet", "MixNet", "CNN", 4, ("mixnet_*", "tf_mixnet_*")),
    ("dpn", "DPN", "CNN", 6, ("dpn*",)),
    ("darknet", "DarkNet", "CNN", 1, ("darknet*", "sedarknet*", "cs3*darknet*")),
    ("nfnet", "NFNet", "CNN", 11, ("*nfnet*",)),
    ("tinynet", "TinyNet", "CNN", 5, ("tinynet*",)),
    ("lcnet", "LCNet", "CNN", 3, ("lcnet*",)),
    ("dla", "DLA", "CNN", 12, ("dla*",)),
    ("mnasnet", "MnasNet", "CNN", 4, ("mnasnet*", "semnasnet*")),
    ("cspnet", "CSPNet", "CNN", 3, ("csp*",)),
    ("vit", "General ViT", "ViT", 8, ("vit_*", "test_vit*")),
    ("mobilevit", "MobileViT", "ViT", 10, ("mobilevit*",)),
    ("swin", "Swin", "ViT", 22, ("swin*",)),
    ("maxvit", "MaxViT", "ViT", 14, ("maxvit*", "maxxvit*", "test_maxvit*")),
    ("deit", "DeiT", "ViT", 24, ("deit*",)),
    ("cait", "CaiT", "ViT", 10, ("cait*",)),
    ("xcit", "XCiT", "ViT", 28, ("xcit*",)),
    ("eva", "EVA", "ViT", 5, ("eva*",)),
    ("volo", "VOLO", "hybrid", 8, ("volo*",)),
    ("coatnet", "CoAtNet", "hybrid", 13, ("coatnet*", "coatnext*", "coat_*", "test_coatnet*")),
)


def _by_family(text: str) -> dict[str, tuple[str, ...]]:
    """``{key: models}`` of text holding, per family, its key and a colon, then its models."""
    models: dict[str, list[str]] = {}
    for word in text.split():
        if word.endswith(":"):
            family = models.setdefault(word[:-1], [])
        else:
            family.append(word)
    return {key: tuple(names) for key, names in models.items()}


_DEFAULTS = _by_family(_DEFAULT_MODELS)
FAMILIES: tuple[Family, ...] = tuple(
    Family(name, arch, count, patterns, _DEFAULTS[key]) for key, name, arch, count, patterns in _TABLE
)

# Words that give away the class of a model that no family pattern matches (e.g. a Keras file
# "harmonized_vit_b16.keras"); the first class with a matching word wins.
_CLASS_WORDS = (
    ("hybrid", ("coat", "volo")),
    ("ViT", ("vit", "deit", "swin", "cait", "xcit", "eva", "beit")),
)


def _key(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def get_family(name: str) -> Family:
    """The family called ``name`` (case and punctuation ignored: "swin", "General ViT", "vit")."""
    wanted = _key(name)
    for family, (key, *_rest) in zip(FAMILIES, _TABLE):
        if wanted in (_key(family.name), key):
            return family
    raise ValueError(f"unknown family {name!r}; known: {', '.join(f.name for f in FAMILIES)}")


def _arch(arch: str | None) -> str | None:
    if arch is None:
        return None
    for known in ARCH_CLASSES:
        if arch.lower() == known.lower():
            return known
    raise ValueError(f"unknown architecture class {arch!r}; known: {', '.join(ARCH_CLASSES)}")


def select_families(family: str | None = None, arch: str | None = None) -> list[Family]:
    """Families filtered by name and by class ("cnn", "vit", "hybrid", any case)."""
    arch = _arch(arch)
    chosen = [get_family(family)] if family else list(FAMILIES)
    return [f for f in chosen if arch is None or f.arch == arch]


def default_models(family: str | None = None, arch: str | None = None) -> list[str]:
    """The default model list (timm names with pretrained tags), optionally filtered."""
    return [m for f in select_families(family, arch) for m in f.models]


def timm_models(family: str | None = None, arch: str | None = None, pretrained: bool = True) -> list[str]:
    """Every model of the installed timm whose architecture matches the families' patterns.

    With ``pretrained`` the names carry their pretrained tags (one entry per tag).
    """
    import timm

    names: list[str] = []
    for f in select_families(family, arch):
        for pattern in f.patterns:
            found = timm.list_models(pattern, pretrained=pretrained)
            names.extend(m for m in found if m not in names)
    return names


def architecture_name(model: str) -> str:
    """The bare architecture of a model spec: directory, extension and pretrained tag removed."""
    base = os.path.basename(model.rstrip("/"))
    for suffix in (".keras", ".h5"):
        if base.endswith(suffix):
            return base[: -len(suffix)]
    return base.split(".")[0]


def family_of(model: str) -> Family | None:
    """The family whose patterns match the model's architecture name, if any."""
    name = architecture_name(model).lower()
    for family in FAMILIES:
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in family.patterns):
            return family
    return None


def classify(model: str, default: str = "CNN") -> str:
    """The class ("CNN", "ViT" or "hybrid") of a timm name or model file, ``default`` if unknown."""
    family = family_of(model)
    if family is not None:
        return family.arch
    words = re.split(r"[^a-z0-9]+", architecture_name(model).lower())
    for arch, prefixes in _CLASS_WORDS:
        if any(word.startswith(prefixes) for word in words):
            return arch
    return _arch(default)
