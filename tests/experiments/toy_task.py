"""A deterministic, cheap task for the sweep-runner tests: y = a x² + noise(seed), slept on."""

from __future__ import annotations

import time

import numpy as np


def square(params: dict) -> dict:
    time.sleep(float(params.get("sleep", 0.0)))
    rng = np.random.default_rng(int(params["seed"]))
    x = float(params["x"])
    return {"y": x * x + rng.normal() * 1e-3, "third": x / 3.0}
