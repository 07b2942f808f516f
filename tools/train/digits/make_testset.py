"""Writes a test set of held-out numbers as binary PGM files NNNN_<digits>.pgm.

    make_testset.py --mnist .deps/mnist --out .deps/digits_test --count 300 --seed 1

count/5 numbers of each length 1..5 (shuffled), uniform digits, leading zeros allowed;
each digit one random held-out image of its class (data.py: index % 10 == 0), placed
side by side with no distortion: height 28, width 28n, 0 background, 255 ink.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mnist", default=".deps/mnist")
    ap.add_argument("--out", default=".deps/digits_test")
    ap.add_argument("--count", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    assert args.count % 5 == 0, "--count must be a multiple of 5 (equal numbers of each length)"
    _, held = data.split(data.load_mnist(args.mnist))
    rng = np.random.default_rng(args.seed)
    os.makedirs(args.out, exist_ok=True)
    for f in os.listdir(args.out):  # a rerun replaces the set, never mixes two
        if f.endswith(".pgm"):
            os.remove(os.path.join(args.out, f))
    for i, number in enumerate(data.random_numbers(rng, args.count // 5)):
        data.write_pgm(os.path.join(args.out, f"{i:04d}_{number}.pgm"), data.compose(number, held, rng))
    print(f"wrote {args.count} images to {args.out} ({sum(len(a) for a in held)} held-out digit images)")


if __name__ == "__main__":
    main()
