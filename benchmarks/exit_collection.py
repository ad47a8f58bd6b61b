"""How long a process that loaded a framework takes to shut down, with and without
``harmonization.memory.skip_collection_at_exit`` (which the console scripts call).

Each child imports what a ``harmonize`` / ``adv-align`` command imports on one Keras backend, prints
the time at the end of its script, and exits; the shutdown is the time from that print to the
parent seeing it exit. The two variants alternate, ``ROUNDS`` times per backend.
"""

import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

ROUNDS = 5
CHILD = """
import sys, time
import keras, harmonization.training, attacks_torch.cli
if sys.argv[1] == "skip":
    from harmonization.memory import skip_collection_at_exit
    skip_collection_at_exit()
print(time.time(), flush=True)
"""


def shutdown_seconds(backend: str, variant: str) -> float:
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
    child = subprocess.Popen([sys.executable, "-c", CHILD, variant], env=env, stdout=subprocess.PIPE, text=True)
    ended = float(child.stdout.readline())
    child.wait()
    return time.time() - ended


result = {"rounds": ROUNDS, "backends": {}}
for backend in ("tensorflow", "torch", "jax"):
    times = {"collect": [], "skip": []}
    for _ in range(ROUNDS):
        for variant in times:
            times[variant].append(shutdown_seconds(backend, variant))
    medians = {variant: statistics.median(values) for variant, values in times.items()}
    result["backends"][backend] = {"seconds": times, "median": medians, "saved_s": medians["collect"] - medians["skip"]}
    print(
        f"{backend}: shutdown {medians['collect']:.2f} s with the exit collection, {medians['skip']:.2f} s "
        f"without (median of {ROUNDS}; saves {medians['collect'] - medians['skip']:.2f} s per command)"
    )
out = pathlib.Path(__file__).parent / "results" / "exit_collection.json"
out.parent.mkdir(exist_ok=True)
out.write_text(json.dumps(result, indent=2))
