"""Check a built wheel against the source tree: every file of the packages (modules and the data
files they read beside themselves) is in it, and so are both console scripts.

    python scripts/check_wheel.py dist/harmonization_adversarial_alignment-0.1.0-py3-none-any.whl

Exit code 0 when complete; 1 with one line per missing file or script.
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("harmonization", "attacks_torch")
SCRIPTS = ("harmonize = harmonization.extras:harmonize", "adv-align = harmonization.extras:adv_align")


def package_files(root: Path = ROOT) -> set[str]:
    """The files under the packages' folders (relative, '/'-separated), compiled caches left out."""
    return {
        path.relative_to(root).as_posix()
        for package in PACKAGES
        for path in (root / package).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


def missing(wheel: Path, root: Path = ROOT) -> list[str]:
    """What the wheel lacks: package files, then console scripts (as 'console script NAME = TARGET')."""
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(
            (archive.read(name).decode() for name in names if name.endswith(".dist-info/entry_points.txt")), ""
        )
    lacking = sorted(package_files(root) - names)
    lacking += [f"console script {script}" for script in SCRIPTS if script not in entry_points]
    return lacking


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: check_wheel.py WHEEL", file=sys.stderr)
        return 2
    lacking = missing(Path(argv[0]))
    for item in lacking:
        print(f"{argv[0]}: missing {item}", file=sys.stderr)
    return 1 if lacking else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
