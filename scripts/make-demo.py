#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Write the bundled demo data with fixed seeds (deterministic output).

conf/demo/: a value [1,28,28,3], filters [5,5,3,8] and bias [8] for the
`atrous conv2d` example.
conf/models/demo/: a small DeepLab-style ASPP head on 8 input channels:
image pooling (8->4), a 1x1 branch and 3x3 branches at rates 2 and 4 (8->4
each), a 1x1 projection 16->6, ReLU throughout.
Run from the source root; the files are committed.
"""
import json
import os

import numpy as np


def save(path, array):
    np.save(path, np.ascontiguousarray(array, dtype=np.float32))


def main():
    rng = np.random.default_rng(2026)
    os.makedirs("conf/demo", exist_ok=True)
    save("conf/demo/value.npy", rng.standard_normal((1, 28, 28, 3)))
    save("conf/demo/filters.npy", 0.2 * rng.standard_normal((5, 5, 3, 8)))
    save("conf/demo/bias.npy", 0.1 * rng.standard_normal(8))

    d = "conf/models/demo"
    os.makedirs(d, exist_ok=True)
    cin = 8
    save(d + "/pool.npy", 0.3 * rng.standard_normal((1, 1, cin, 4)))
    save(d + "/pool_bias.npy", 0.1 * rng.standard_normal(4))
    save(d + "/b0.npy", 0.3 * rng.standard_normal((1, 1, cin, 4)))
    save(d + "/b0_bias.npy", 0.1 * rng.standard_normal(4))
    save(d + "/b1.npy", 0.1 * rng.standard_normal((3, 3, cin, 4)))
    save(d + "/b2.npy", 0.1 * rng.standard_normal((3, 3, cin, 4)))
    save(d + "/proj.npy", 0.2 * rng.standard_normal((1, 1, 16, 6)))
    save(d + "/proj_bias.npy", 0.1 * rng.standard_normal(6))
    save("conf/demo/aspp_input.npy", rng.standard_normal((1, 17, 17, cin)))
    model = {
        "description": "demo: a small DeepLab-style ASPP head",
        "input": {"name": "input", "channels": cin},
        "output": {"name": "output"},
        "layers": [{
            "type": "aspp",
            "image_pooling": {"filters": {"npy": "pool.npy"}, "bias": {"npy": "pool_bias.npy"},
                              "activation": "relu"},
            "branches": [
                {"filters": {"npy": "b0.npy"}, "rate": 1, "bias": {"npy": "b0_bias.npy"},
                 "activation": "relu"},
                {"filters": {"npy": "b1.npy"}, "rate": 2, "activation": "relu"},
                {"filters": {"npy": "b2.npy"}, "rate": 4, "activation": "relu"},
            ],
            "projection": {"filters": {"npy": "proj.npy"}, "bias": {"npy": "proj_bias.npy"},
                           "activation": "relu"},
        }],
    }
    with open(d + "/model.json", "w") as f:
        json.dump(model, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
