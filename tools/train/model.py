"""A Llama-architecture model in PyTorch laid out exactly as llama2.c's legacy
checkpoint: RMSNorm, RoPE on interleaved pairs (x[2i], x[2i+1]), grouped-query
attention, SwiGLU, classifier shared with the token embedding."""
import math
import struct

import torch
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope(x, cos, sin):  # x: (B, T, H, hd); pairs (2i, 2i+1)
    a, b = x[..., 0::2], x[..., 1::2]
    out = torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1)
    return out.flatten(-2)


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        hd = c["dim"] // c["n_heads"]
        self.wq = nn.Linear(c["dim"], c["n_heads"] * hd, bias=False)
        self.wk = nn.Linear(c["dim"], c["n_kv_heads"] * hd, bias=False)
        self.wv = nn.Linear(c["dim"], c["n_kv_heads"] * hd, bias=False)
        self.wo = nn.Linear(c["n_heads"] * hd, c["dim"], bias=False)
        self.w1 = nn.Linear(c["dim"], c["hidden_dim"], bias=False)
        self.w2 = nn.Linear(c["hidden_dim"], c["dim"], bias=False)
        self.w3 = nn.Linear(c["dim"], c["hidden_dim"], bias=False)
        self.attention_norm = RMSNorm(c["dim"])
        self.ffn_norm = RMSNorm(c["dim"])

    def forward(self, x, cos, sin):
        B, T, _ = x.shape
        H, KV = self.c["n_heads"], self.c["n_kv_heads"]
        hd = self.c["dim"] // H
        h = self.attention_norm(x)
        q = rope(self.wq(h).view(B, T, H, hd), cos, sin)
        k = rope(self.wk(h).view(B, T, KV, hd), cos, sin)
        v = self.wv(h).view(B, T, KV, hd)
        k = k.repeat_interleave(H // KV, dim=2)
        v = v.repeat_interleave(H // KV, dim=2)
        # Written out (not scaled_dot_product_attention) so Debian's torch 1.13 runs it too.
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(hd)
        mask = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
        att = att.masked_fill(mask, float("-inf")).softmax(-1)
        x = x + self.wo((att @ v).transpose(1, 2).reshape(B, T, H * hd))
        h = self.ffn_norm(x)
        return x + self.w2(F.silu(self.w1(h)) * self.w3(h))


class Llama(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.tok = nn.Embedding(c["vocab_size"], c["dim"])
        self.layers = nn.ModuleList(Block(c) for _ in range(c["n_layers"]))
        self.norm = RMSNorm(c["dim"])
        hd = c["dim"] // c["n_heads"]
        freq = 1.0 / (10000.0 ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
        ang = torch.arange(c["seq_len"], dtype=torch.float64)[:, None] * freq[None, :]
        self.register_buffer("cos", ang.cos().float()[None, :, None, :], persistent=False)
        self.register_buffer("sin", ang.sin().float()[None, :, None, :], persistent=False)
        for n, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * c["n_layers"]) if n.endswith(("wo.weight", "w2.weight")) else 0.02
                nn.init.normal_(p, mean=0.0, std=std)

    def forward(self, ids):
        T = ids.shape[1]
        x = self.tok(ids)
        cos, sin = self.cos[:, :T].to(x.dtype), self.sin[:, :T].to(x.dtype)
        for layer in self.layers:
            x = layer(x, cos, sin)
        return self.norm(x) @ self.tok.weight.T  # shared classifier

    def export_llama2c(self, path):
        c = self.c
        def w(t):
            return t.detach().float().cpu().contiguous().numpy().tobytes()
        with open(path, "wb") as f:
            f.write(struct.pack("<7i", c["dim"], c["hidden_dim"], c["n_layers"], c["n_heads"], c["n_kv_heads"],
                                c["vocab_size"], c["seq_len"]))  # positive vocab: shared classifier
            f.write(w(self.tok.weight))
            for name in ["attention_norm", "wq", "wk", "wv", "wo", "ffn_norm", "w1", "w2", "w3"]:
                for layer in self.layers:
                    f.write(w(getattr(layer, name).weight))
            f.write(w(self.norm.weight))
            hd = c["dim"] // c["n_heads"]
            f.write(bytes(4 * c["seq_len"] * hd))  # the legacy freq_cis tables (unused by readers)
