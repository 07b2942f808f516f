"""Greedy exact-number accuracy and digit error rate of a checkpoint on a test set.

    eval.py --ckpt digits.pt --testset .deps/digits_test [--device cpu] [--show 10]

Digit error rate = sum of edit distances (predicted vs true digit string) / total true digits.
"""
import argparse
import os
import sys
from collections import defaultdict

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data  # noqa: E402
from model import ids_to_text, load_checkpoint  # noqa: E402


def edit_distance(a, b):
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


@torch.no_grad()
def predict(model, images, device):
    """uint8 images of any widths -> predicted digit strings (batched by width)."""
    by_width = defaultdict(list)
    for i, img in enumerate(images):
        by_width[img.shape[1]].append(i)
    out = [None] * len(images)
    for idx in by_width.values():
        for s in range(0, len(idx), 256):
            chunk = idx[s:s + 256]
            x = torch.stack([torch.from_numpy(images[i].copy()) for i in chunk]).to(device).float().div(255)
            for i, (ids, _) in zip(chunk, model.greedy(data.to_patches(x))):
                out[i] = ids_to_text(ids)
    return out


def evaluate(model, numbers, images, device):
    """-> (exact-number accuracy, digit error rate, predictions)."""
    was_training = model.training
    model.eval()
    pred = predict(model, images, device)
    model.train(was_training)
    exact = sum(p == t for p, t in zip(pred, numbers)) / len(numbers)
    der = sum(edit_distance(p, t) for p, t in zip(pred, numbers)) / sum(len(t) for t in numbers)
    return exact, der, pred


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--testset", default=".deps/digits_test")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--show", type=int, default=10, help="print up to this many mistakes")
    args = ap.parse_args()
    model = load_checkpoint(args.ckpt).to(args.device)
    items = data.read_testset(args.testset)
    names, numbers, images = zip(*items)
    exact, der, pred = evaluate(model, numbers, images, args.device)
    wrong = [(n, t, p) for n, t, p in zip(names, numbers, pred) if p != t]
    for n, t, p in wrong[:args.show]:
        print(f"  {n}: read {p!r}")
    for L in range(1, 6):
        sel = [p == t for t, p in zip(numbers, pred) if len(t) == L]
        if sel:
            print(f"  length {L}: {sum(sel)}/{len(sel)} exact")
    print(f"{len(numbers)} numbers: exact {exact:.2%} ({len(numbers) - len(wrong)}/{len(numbers)}), "
          f"digit error rate {der:.2%}")


if __name__ == "__main__":
    main()
