"""Every code block of README.md, run as written in a small mode, so that the README cannot drift.

Blocks run in order in one scratch folder (later blocks read what earlier ones wrote, as a reader
following the README would), with ``.venv`` linked to this checkout's. The small mode substitutes a
few sizes (``SMALL``: each text must still be in the README, so a changed README fails here rather
than running unshrunk). A block that cannot run here (the network, the published data, GPUs) carries
``<!-- readme-test: skip (why) -->`` on the line before it; there must be few of them.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from builders import python_path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SKIP = re.compile(r"<!-- readme-test: skip \((?P<why>[^)]+(?:\([^)]*\)[^)]*)*)\) -->")
FENCE = re.compile(r"^```(?P<language>[a-z]*)\n(?P<code>.*?)^```$", re.S | re.M)
RUNNABLE = ("bash", "python")
MAX_SKIPPED = 6
SMALL = {
    "harmonize mini --out data/mini --seed 0": "harmonize mini --out data/mini --seed 0 --train-size 128 --val-size 64 --conflict-size 64 "
    "--stimuli-per-class 2",
    "--num-classes 4 --epochs 8 --lambda 0.5": "--num-classes 4 --epochs 1 --lambda 0.5",
}
"""README text -> its small-mode form (sizes only: the commands stay as written)."""


@dataclasses.dataclass(frozen=True)
class Block:
    line: int
    language: str
    code: str
    skip: str | None

    def __str__(self) -> str:
        return f"README.md:{self.line}:{self.language}"


def readme_blocks(text: str) -> list[Block]:
    """The fenced blocks of ``text``, each with the reason of a skip marker right above it."""
    blocks = []
    for match in FENCE.finditer(text):
        above = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marker = SKIP.fullmatch(above.strip())
        blocks.append(
            Block(
                text.count("\n", 0, match.start()) + 1,
                match["language"],
                match["code"],
                marker["why"] if marker else None,
            )
        )
    return blocks


def small(code: str) -> str:
    for text, replacement in SMALL.items():
        code = code.replace(text, replacement)
    return code


BLOCKS = readme_blocks(README.read_text())
RUN = [block for block in BLOCKS if block.language in RUNNABLE and block.skip is None]


def test_every_block_is_code_or_text_and_the_skipped_ones_are_few_and_say_why():
    assert BLOCKS and RUN
    assert all(block.language in (*RUNNABLE, "text") for block in BLOCKS), [
        str(b) for b in BLOCKS if b.language not in (*RUNNABLE, "text")
    ]
    skipped = [block for block in BLOCKS if block.skip is not None]
    assert 0 < len(skipped) <= MAX_SKIPPED and all(len(block.skip.split()) >= 2 for block in skipped)
    assert README.read_text().count("readme-test:") == len(skipped)  # no marker off its block
    for text in SMALL:
        assert sum(text in block.code for block in RUN) == 1, f"SMALL no longer matches the README: {text!r}"
    commands = [
        line.split()[0]
        for block in BLOCKS
        if block.language == "bash"
        for line in block.code.splitlines()
        if line.strip() and not line.startswith((" ", "#"))
    ]
    assert all(c.startswith(".venv/bin/") or c in ("make", "pip") for c in commands), commands


def test_the_train_help_names_every_zoo_model():
    from harmonization.cli.train import ZOO_NAMES
    from harmonization.models import MODEL_NAMES

    assert ZOO_NAMES == MODEL_NAMES


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("readme")
    (folder / ".venv").symlink_to(ROOT / ".venv")
    return folder


def run_block(block: Block, folder: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": python_path(ROOT), "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
    env.pop("KERAS_BACKEND", None)
    code = small(block.code)
    if block.language == "bash":
        command = ["bash", "-euo", "pipefail", "-c", code]
    else:
        command = [sys.executable, "-c", code]
    return subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("block", RUN, ids=str)
def test_readme_block_runs_as_written(block, workdir):
    done = run_block(block, workdir)
    assert done.returncode == 0, f"{block} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


def test_the_report_writes_the_figures_the_docs_name(workdir):
    report = workdir / "report" / "mini"
    if not report.is_dir():
        pytest.skip("the README block writing report/mini did not run")
    text = (ROOT / "docs" / "attacks.md").read_text()
    section = text[text.index("## What the report draws") :]
    section = section[: section.index("\n## ", 1)]
    names = re.findall(r"`<attack>(_[a-z_0-9]+)`", section)
    drawn = {
        "_panels",
        "_accuracy_vs_tolerance",
        "_accuracy_vs_alignment",
        "_tolerance_vs_alignment",
        "_accuracy_vs_human_alignment",
        "_human_vs_adversarial_alignment",
    }
    assert drawn <= set(names), drawn - set(names)
    for name in drawn:  # an L2 PGD sweep with human alignment draws these (C&W's comparison needs C&W)
        assert (report / f"l2_pgd{name}.png").is_file() and (report / f"l2_pgd{name}.svg").is_file(), name
    assert (report / "statistics.json").is_file() and (report / "report.md").is_file()
