"""The wheel holds every module and data file of the packages and both console scripts
(scripts/check_wheel.py), so that an install outside the repository runs."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("check_wheel", ROOT / "scripts" / "check_wheel.py")
check_wheel = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_wheel)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # the installed setuptools builds it, offline (no build isolation)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (built,) = out.glob("*.whl")
    return built


def test_the_wheel_has_every_package_file_and_both_scripts(wheel):
    files = check_wheel.package_files()
    assert "harmonization/extras.py" in files and "attacks_torch/cli.py" in files
    assert check_wheel.missing(wheel) == []


def test_a_wheel_without_a_data_file_is_caught(wheel, tmp_path):
    (tmp_path / "harmonization").mkdir()
    (tmp_path / "harmonization" / "table.json").write_text("{}")  # a data file a module would read
    (tmp_path / "attacks_torch").mkdir()
    stripped = tmp_path / "stripped.whl"
    with zipfile.ZipFile(wheel) as source, zipfile.ZipFile(stripped, "w") as target:
        for item in source.infolist():
            if not item.filename.endswith("entry_points.txt"):
                target.writestr(item, source.read(item))
    assert check_wheel.missing(stripped, tmp_path) == [
        "harmonization/table.json",
        "console script harmonize = harmonization.extras:harmonize",
        "console script adv-align = harmonization.extras:adv_align",
    ]
