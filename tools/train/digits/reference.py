"""Reference outputs for the C++ tests: greedy ids and per-step logits of PyTorch's own
float32 forward, one image at a time (no batching, no padding), on the CPU.

    reference.py --ckpt digits.pt --testset .deps/digits_test --out reference.json [--count 8]

For the first COUNT test images (sorted by name): the file name, the number it shows,
the greedy ids (BOS excluded, EOS included) and the 12 logits at every greedy step; for
the first image also the first 8 values of memory row 0 (the encoder's normalized output).
"""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data  # noqa: E402
from model import TOKENS, ids_to_text, load_checkpoint  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--testset", default=".deps/digits_test")
    ap.add_argument("--out", default="reference.json")
    ap.add_argument("--count", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(1)  # one fixed summation order on any machine's CPU
    model = load_checkpoint(args.ckpt)
    items = data.read_testset(args.testset)[:args.count]
    cases = []
    with torch.no_grad():
        for name, number, img in items:
            ((ids, logits),) = model.greedy(data.image_patches(img))
            # float(float32) is exact in JSON: Python prints the shortest repr of the double.
            cases.append(dict(file=name, number=number, predicted=ids_to_text(ids), ids=ids,
                              logits=[[float(v) for v in row] for row in logits]))
        name, _, img = items[0]
        memory = model.encode(data.image_patches(img))
    out = dict(bos=model.c["bos"], eos=model.c["eos"], tokens=TOKENS, cases=cases,
               memory=dict(file=name, row=0, values=[float(v) for v in memory[0, 0, :8]]))
    with open(args.out, "w") as f:  # one line per case
        parts = [f' "{k}": {json.dumps(v)}' for k, v in out.items() if k != "cases"]
        parts.append(' "cases": [\n  ' + ",\n  ".join(json.dumps(c) for c in cases) + "\n ]")
        f.write("{\n" + ",\n".join(parts) + "\n}\n")
    right = sum(c["predicted"] == c["number"] for c in cases)
    print(f"wrote {args.out}: {len(cases)} images ({right} read right)")


if __name__ == "__main__":
    main()
