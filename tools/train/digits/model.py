"""The digits encoder-decoder: reads a 28 x 28n image of n handwritten digits and
writes the number. README.md states the contract that the C++ reader follows.

Parameter names are the GGUF tensor names (enc.blk.0.attn_q.weight, ...), so the
exporter writes the state_dict as it is. Attention is written out (no
scaled_dot_product_attention) so Debian's torch 1.13 runs it too.
"""
import json
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

CONFIG = dict(
    d=128, n_heads=4, n_kv_heads=2, ffn=384, eps=1e-5, rope_theta=10000.0,
    enc_layers=4, dec_layers=3, patch=7, image_height=28, digit_width=28,
    enc_context=80, dec_context=128, vocab=12, bos=10, eos=11, max_gen=6)
TOKENS = [str(i) for i in range(10)] + ["<s>", "</s>"]


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_tables(n_pos, head_dim, theta):
    """cos and sin (n_pos, head_dim/2) of pos * theta^(-2i/head_dim), computed in float64."""
    inv = theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    ang = torch.arange(n_pos, dtype=torch.float64)[:, None] * inv[None, :]
    return ang.cos().float(), ang.sin().float()


def rope(x, cos, sin):
    """Rotates the adjacent pairs (x[2i], x[2i+1]) of x (B, T, heads, head_dim)."""
    cos, sin = cos[:, None, :], sin[:, None, :]
    a, b = x[..., 0::2], x[..., 1::2]
    return torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1).flatten(-2)


def attend(q, k, v, mask):
    """q (B, Tq, H, hd), k and v (B, Tk, KV, hd); query head h reads kv head h // (H/KV).
    mask: None or bool (B or 1, 1, Tq or 1, Tk), True where a key may be read."""
    B, Tq, H, hd = q.shape
    KV = k.shape[2]
    # Heads grouped as (kv head, query head within the group): no copies of k and v.
    q = q.view(B, Tq, KV, H // KV, hd).permute(0, 2, 3, 1, 4)  # (B, KV, rep, Tq, hd)
    k, v = k.permute(0, 2, 1, 3)[:, :, None], v.permute(0, 2, 1, 3)[:, :, None]  # (B, KV, 1, Tk, hd)
    s = (q @ k.transpose(-2, -1)) / math.sqrt(hd)
    if mask is not None:
        s = s.masked_fill(~mask[:, :, None], float("-inf"))
    out = s.float().softmax(-1).to(v.dtype) @ v  # (B, KV, rep, Tq, hd)
    return out.permute(0, 3, 1, 2, 4).reshape(B, Tq, H * hd)  # head h at columns h*hd .. h*hd+hd-1


class Block(nn.Module):
    """Pre-norm block: self-attention (RoPE), [cross-attention (no RoPE)], SwiGLU."""

    def __init__(self, c, cross, dropout=0.0):
        super().__init__()
        d, H, KV = c["d"], c["n_heads"], c["n_kv_heads"]
        self.H, self.KV, self.hd = H, KV, d // H
        lin = lambda i, o: nn.Linear(i, o, bias=False)  # noqa: E731
        self.attn_norm = RMSNorm(d, c["eps"])
        self.attn_q, self.attn_k, self.attn_v = lin(d, H * self.hd), lin(d, KV * self.hd), lin(d, KV * self.hd)
        self.attn_output = lin(H * self.hd, d)
        if cross:
            self.cross_norm = RMSNorm(d, c["eps"])
            self.cross_q, self.cross_k, self.cross_v = lin(d, H * self.hd), lin(d, KV * self.hd), lin(d, KV * self.hd)
            self.cross_output = lin(H * self.hd, d)
        self.ffn_norm = RMSNorm(d, c["eps"])
        self.ffn_gate, self.ffn_up, self.ffn_down = lin(d, c["ffn"]), lin(d, c["ffn"]), lin(c["ffn"], d)
        self.drop = nn.Dropout(dropout)  # training only; not part of the contract

    def heads(self, t, n):
        return t.view(t.shape[0], t.shape[1], n, self.hd)

    def forward(self, x, cos, sin, mask, memory=None, memory_mask=None):
        h = self.attn_norm(x)
        q = rope(self.heads(self.attn_q(h), self.H), cos, sin)
        k = rope(self.heads(self.attn_k(h), self.KV), cos, sin)
        v = self.heads(self.attn_v(h), self.KV)
        x = x + self.drop(self.attn_output(attend(q, k, v, mask)))
        if memory is not None:
            h = self.cross_norm(x)
            q = self.heads(self.cross_q(h), self.H)
            k, v = self.heads(self.cross_k(memory), self.KV), self.heads(self.cross_v(memory), self.KV)
            x = x + self.drop(self.cross_output(attend(q, k, v, memory_mask)))
        h = self.ffn_norm(x)
        return x + self.drop(self.ffn_down(F.silu(self.ffn_gate(h)) * self.ffn_up(h)))


class Encoder(nn.Module):
    def __init__(self, c, dropout):
        super().__init__()
        self.input = nn.Linear(c["patch"] ** 2, c["d"], bias=True)
        self.blk = nn.ModuleList(Block(c, False, dropout) for _ in range(c["enc_layers"]))
        self.output_norm = RMSNorm(c["d"], c["eps"])


class Decoder(nn.Module):
    def __init__(self, c, dropout):
        super().__init__()
        self.token_embd = nn.Embedding(c["vocab"], c["d"])
        self.blk = nn.ModuleList(Block(c, True, dropout) for _ in range(c["dec_layers"]))
        self.output_norm = RMSNorm(c["d"], c["eps"])
        self.output = nn.Linear(c["d"], c["vocab"], bias=False)


class DigitsModel(nn.Module):
    def __init__(self, c=CONFIG, dropout=0.0):
        super().__init__()
        self.c = c
        self.enc, self.dec = Encoder(c, dropout), Decoder(c, dropout)
        cos, sin = rope_tables(max(c["enc_context"], c["dec_context"]), c["d"] // c["n_heads"], c["rope_theta"])
        self.register_buffer("cos", cos, persistent=False)  # not in the state_dict / GGUF
        self.register_buffer("sin", sin, persistent=False)
        n_res = 2 * c["enc_layers"] + 3 * c["dec_layers"]  # residual branches feeding the stream
        for name, p in self.named_parameters():
            if p.dim() == 2:
                out_proj = name.endswith(("attn_output.weight", "cross_output.weight", "ffn_down.weight"))
                nn.init.normal_(p, std=0.02 / math.sqrt(n_res) if out_proj else 0.02)
            elif name.endswith("input.bias"):
                nn.init.zeros_(p)

    def encode(self, patches, mask=None):
        """patches (B, P, 49) in [0, 1] -> memory (B, P, d). mask (B, P), True for real
        patches, lets a batch mix lengths; one image alone needs none (the contract)."""
        P = patches.shape[1]
        x = self.enc.input(patches)
        m = None if mask is None else mask[:, None, None, :]
        for blk in self.enc.blk:
            x = blk(x, self.cos[:P], self.sin[:P], m)
        return self.enc.output_norm(x)

    def decode(self, ids, memory, memory_mask=None):
        """ids (B, T) from BOS on -> logits (B, T, vocab)."""
        T = ids.shape[1]
        x = self.dec.token_embd(ids)
        causal = torch.ones(T, T, dtype=torch.bool, device=ids.device).tril()[None, None]
        mm = None if memory_mask is None else memory_mask[:, None, None, :]
        for blk in self.dec.blk:
            x = blk(x, self.cos[:T], self.sin[:T], causal, memory, mm)
        return self.dec.output(self.dec.output_norm(x))

    def forward(self, patches, ids, mask=None):
        return self.decode(ids, self.encode(patches, mask), mask)

    @torch.no_grad()
    def greedy(self, patches):
        """Greedy decoding of a batch of images of one width. Returns, per image, the
        generated ids (BOS excluded, EOS included if reached) and their logits (steps, vocab)."""
        c = self.c
        memory = self.encode(patches)
        ids = torch.full((patches.shape[0], 1), c["bos"], dtype=torch.long, device=patches.device)
        steps = []
        for _ in range(c["max_gen"]):
            logits = self.decode(ids, memory)[:, -1]
            steps.append(logits)
            ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], 1)
            if (ids == c["eos"]).any(1).all():
                break
        logits = torch.stack(steps, 1)
        out = []
        for row, lg in zip(ids[:, 1:].tolist(), logits):
            n = row.index(c["eos"]) + 1 if c["eos"] in row else len(row)
            out.append((row[:n], lg[:n]))
        return out


def ids_to_text(ids, eos=CONFIG["eos"]):
    """Generated ids -> digit string (stops at EOS; a stray BOS is dropped)."""
    s = []
    for t in ids:
        if t == eos:
            break
        if t < 10:
            s.append(str(t))
    return "".join(s)


def config_path(ckpt):
    """train.py writes the config beside the state_dict: digits.pt -> digits.json."""
    return os.path.splitext(ckpt)[0] + ".json"


def load_checkpoint(ckpt):
    """-> DigitsModel in eval mode with the weights of train.py's checkpoint."""
    c = CONFIG
    if os.path.exists(config_path(ckpt)):
        with open(config_path(ckpt)) as f:
            c = json.load(f)["config"]
    model = DigitsModel(c)
    model.load_state_dict(torch.load(ckpt, map_location="cpu"))
    return model.eval()
