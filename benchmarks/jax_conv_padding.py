"""Why JAX ResNet50V2 misses the harmonizer step-time target on CPU: one 3x3 convolution, its
padding done by the convolution ("same") or by an explicit zero pad before a "valid" convolution
(as keras.applications' ResNet50V2 does with ZeroPadding2D).

For each, the seconds of a jitted first-order gradient (the cross-entropy step's kind) and of a
second-order one (the gradient of the squared input gradient, the harmonizer's kind), and the
number of convolutions with a window reversal in XLA's optimized program (counted, not timed):
XLA's CPU backend runs those off its fast convolution path. Writes
benchmarks/results/jax_conv_padding.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import time

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "jax_conv_padding.json")


def seconds(function, *args, calls: int) -> float:
    function(*args).block_until_ready()  # compile
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        function(*args).block_until_ready()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(padding: str, size: int, channels: int, batch: int, calls: int) -> dict:
    import jax
    import jax.numpy as jnp

    key_x, key_w = jax.random.split(jax.random.PRNGKey(0))
    x = jax.random.normal(key_x, (batch, size, size, channels))
    kernel = 0.05 * jax.random.normal(key_w, (3, 3, channels, channels))
    numbers = ("NHWC", "HWIO", "NHWC")

    def score(kernel, x):
        if padding == "explicit":
            x, window = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0))), "VALID"
        else:
            window = "SAME"
        y = jax.lax.conv_general_dilated(x, kernel, (1, 1), window, dimension_numbers=numbers)
        return jnp.sum(jnp.tanh(y) ** 2)

    def second_order(kernel, x):
        return jnp.sum(jax.grad(score, argnums=1)(kernel, x) ** 2)

    first = jax.jit(jax.grad(score))
    second = jax.jit(jax.grad(second_order))
    first_s, second_s = seconds(first, kernel, x, calls=calls), seconds(second, kernel, x, calls=calls)
    program = second.lower(kernel, x).compile().as_text()
    return {
        "first_order_s": first_s,
        "second_order_s": second_s,
        "ratio": second_s / first_s,
        "reversed_window_convolutions": program.count("rhs_reversal"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=32, help="feature-map height and width")
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--calls", type=int, default=10, help="timed calls per gradient")
    args = parser.parse_args()
    if importlib.util.find_spec("jax") is None:
        print("jax: not installed (pip install '.[jax]'), skipped")
        return
    import jax

    from harmonization.files import write_json

    report = {
        "benchmark": "jax_conv_padding",
        "jax": jax.__version__,
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "devices": [str(d) for d in jax.devices()],
        "size": args.size,
        "channels": args.channels,
        "batch_size": args.batch_size,
        "paddings": {},
    }
    for padding in ("same", "explicit"):
        row = report["paddings"][padding] = measure(padding, args.size, args.channels, args.batch_size, args.calls)
        print(
            f"padding {padding:8s}: first order {row['first_order_s'] * 1e3:.1f} ms, second order "
            f"{row['second_order_s'] * 1e3:.1f} ms (x{row['ratio']:.1f}), "
            f"{row['reversed_window_convolutions']} reversed-window convolutions",
            flush=True,
        )
    write_json(RESULTS, report)
    print(f"wrote {RESULTS}")
    print(json.dumps(report["paddings"]))


if __name__ == "__main__":
    main()
