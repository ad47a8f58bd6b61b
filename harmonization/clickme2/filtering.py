"""The lab's filters, in the lab's order: duplicate submissions, click counts, participants per
image (docs/clickme2.md lists them with their defaults)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from harmonization.clickme2.reading import Trial


@dataclass(frozen=True)
class Settings:
    """The processing parameters (the lab's configuration names; defaults of its documented
    example configuration)."""

    blur_size: int = 21
    min_clicks: int = 10
    max_clicks: int = 75
    min_subjects: int = 10
    image_shape: tuple[int, int] = (256, 256)
    center_crop: tuple[int, int] = (224, 224)
    null_iterations: int = 10
    max_kernel_size: int = 51
    filter_duplicates: bool = True
    native_size: bool = False
    seed: int = 0
    include: str | None = None
    exclude: str | None = None

    def as_dict(self) -> dict:
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}


def image_key(image_path: str) -> str:
    """The lab's image id: the last two parts of the path (``n01440764/ILSVRC2012_val_00000293.JPEG``)."""
    return "/".join(image_path.replace("\\", "/").split("/")[-2:])


@dataclass
class Filtered:
    """Participants' click lists per image id (file order), the first line/row naming each image,
    and how many rows or images each filter removed."""

    images: dict[str, list[tuple[tuple[int, int], ...]]] = field(default_factory=dict)
    first_row: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)


def drop_duplicates(trials: list[Trial]) -> list[Trial]:
    """Keep the first submission of each (participant, image path) pair."""
    seen: set[tuple[int, str]] = set()
    kept = []
    for trial in trials:
        pair = (trial.user_id, trial.image_path)
        if pair not in seen:
            seen.add(pair)
            kept.append(trial)
    return kept


def filter_trials(trials: list[Trial], settings: Settings) -> Filtered:
    """Apply the row filters, group by image, and drop images with too few participants.

    Images whose id lacks ``include`` or holds ``exclude`` (substrings) are left out. A trial with
    fewer than two clicks counts as empty; one with ``min_clicks`` clicks or fewer is
    dropped; longer ones keep their first ``max_clicks`` clicks. An image keeps its trials if at
    least ``min_subjects`` remain (the in-image click check comes with the maps, ``maps.py``).
    """
    result = Filtered(counts={"rows": len(trials)})
    if settings.filter_duplicates:
        kept = drop_duplicates(trials)
        result.counts["duplicate submissions"] = len(trials) - len(kept)
        trials = kept
    empty = too_few = outside = 0
    grouped: dict[str, list[tuple[tuple[int, int], ...]]] = {}
    for trial in trials:
        key = image_key(trial.image_path)
        if (settings.include and settings.include not in key) or (settings.exclude and settings.exclude in key):
            outside += 1
            continue
        if len(trial.clicks) < 2:
            empty += 1
            continue
        if len(trial.clicks) <= settings.min_clicks:
            too_few += 1
            continue
        grouped.setdefault(key, []).append(trial.clicks[: settings.max_clicks])
        result.first_row.setdefault(key, trial.where)
    if settings.include or settings.exclude:
        result.counts["rows of images outside --include/--exclude"] = outside
    result.counts["empty click lists"] = empty
    result.counts[f"click lists with {settings.min_clicks} clicks or fewer"] = too_few
    result.images = {key: lists for key, lists in grouped.items() if len(lists) >= settings.min_subjects}
    result.counts["images"] = len(grouped)
    result.counts[f"images with fewer than {settings.min_subjects} participants (skipped)"] = len(grouped) - len(
        result.images
    )
    return result
