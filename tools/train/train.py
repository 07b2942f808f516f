"""Trains kvdecode's shipped model: corpus -> BPE tokenizer -> Llama -> llama2.c files.

    python3 tools/train/train.py [--out models] [--steps 1200] [--device cpu|cuda] [--corpus FILE]

Runs on the CPU (Debian's python3-torch) or a GPU; fixed seeds. Writes
OUT/kjv_llama.bin, OUT/kjv_tok1024.bin and OUT/kjv_llama_reference.json (logits
and greedy tokens of this script's own float32 forward, which the test suite
compares kvdecode against), and prints the validation loss.
"""
import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bpe  # noqa: E402
import corpus  # noqa: E402
from model import Llama  # noqa: E402

CONFIG = dict(dim=192, hidden_dim=512, n_layers=4, n_heads=6, n_kv_heads=2, vocab_size=1024, seq_len=256)
REFERENCE_PROMPTS = ["In the beginning", "And the LORD said unto Moses,", "Blessed are the"]


def batches(ids, batch, seq, gen):
    data = torch.tensor(ids, dtype=torch.long)
    while True:
        starts = torch.randint(0, len(data) - seq - 1, (batch,), generator=gen)
        x = torch.stack([data[s:s + seq] for s in starts])
        y = torch.stack([data[s + 1:s + seq + 1] for s in starts])
        yield x, y


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="models")
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--corpus", help="the `bible` program's output saved to a file (default: run the program)")
    args = ap.parse_args()
    torch.manual_seed(1234)
    gen = torch.Generator().manual_seed(1234)
    os.makedirs(args.out, exist_ok=True)
    start = time.time()

    train_docs, val_docs = corpus.split(corpus.verses(args.corpus))
    pieces, merges = bpe.train(train_docs, CONFIG["vocab_size"])
    tok = bpe.Tokenizer(pieces, merges)
    tok.write_llama2c(os.path.join(args.out, "kjv_tok1024.bin"))
    train_ids = [t for d in train_docs for t in tok.encode(d, bos=True, eos=True)]
    val_ids = [t for d in val_docs for t in tok.encode(d, bos=True, eos=True)]
    print(f"tokenizer: {len(pieces)} pieces; train {len(train_ids)} tokens, val {len(val_ids)} tokens", flush=True)

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    model = Llama(CONFIG).to(args.device)
    print(f"parameters: {sum(p.numel() for p in model.parameters())}", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
    seq = 128
    data = batches(train_ids, args.batch, seq, gen)
    for step in range(args.steps):
        lr = 1e-3 * min(1.0, (step + 1) / 200) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / args.steps)))
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = next(data)
        x, y = x.to(args.device), y.to(args.device)
        loss = F.cross_entropy(model(x).view(-1, CONFIG["vocab_size"]), y.view(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 500 == 0 or step == args.steps - 1:
            print(f"step {step} loss {loss.item():.4f} lr {lr:.2e} ({time.time() - start:.0f} s)", flush=True)

    model.eval()
    with torch.no_grad():
        v = torch.tensor(val_ids, dtype=torch.long)
        n = (len(v) - 1) // seq
        xs, ys = v[: n * seq].view(n, seq), v[1: n * seq + 1].view(n, seq)
        total = 0.0
        for i in range(0, n, 64):
            logits = model(xs[i:i + 64].to(args.device))
            total += F.cross_entropy(logits.view(-1, CONFIG["vocab_size"]), ys[i:i + 64].to(args.device).view(-1),
                                     reduction="sum").item()
        val_loss = total / (n * seq)
    print(f"validation loss {val_loss:.4f} (perplexity {math.exp(val_loss):.2f})", flush=True)

    model = model.cpu().float()
    model.export_llama2c(os.path.join(args.out, "kjv_llama.bin"))
    reference = {"config": CONFIG, "validation_loss": val_loss, "train_seconds": time.time() - start,
                 "device": args.device, "steps": args.steps, "cases": []}
    with torch.no_grad():
        for text in REFERENCE_PROMPTS:
            ids = tok.encode(text)
            logits = model(torch.tensor([ids]))[0, -1]
            seqn = list(ids)
            for _ in range(100):  # greedy, stopping at EOS
                nxt = int(model(torch.tensor([seqn[-CONFIG["seq_len"]:]]))[0, -1].argmax())
                seqn.append(nxt)
                if nxt == 2:
                    break
            reference["cases"].append({"prompt_text": text, "prompt": ids,
                                       "logits": [round(float(x), 6) for x in logits], "greedy": seqn})
    with open(os.path.join(args.out, "kjv_llama_reference.json"), "w") as f:
        json.dump(reference, f)
    print(f"done in {time.time() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
