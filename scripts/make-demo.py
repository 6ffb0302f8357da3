#!/usr/bin/python3
"""Write the bundled demo data with fixed seeds (deterministic output).

conf/demo/: a value [1,28,28,3], filters [5,5,3,8] and bias [8] for the
`atrous conv2d` demo.  Run from the source root; the files are committed.
"""
import os

import numpy as np


def main():
    rng = np.random.default_rng(2026)
    os.makedirs("conf/demo", exist_ok=True)
    np.save("conf/demo/value.npy", rng.standard_normal((1, 28, 28, 3)).astype(np.float32))
    np.save("conf/demo/filters.npy",
            (0.2 * rng.standard_normal((5, 5, 3, 8))).astype(np.float32))
    np.save("conf/demo/bias.npy", (0.1 * rng.standard_normal(8)).astype(np.float32))


if __name__ == "__main__":
    main()
