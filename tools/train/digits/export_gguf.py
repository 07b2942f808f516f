"""Writes a train.py checkpoint as a GGUF v3 file (all tensors F32), then reads the file
back with its own parser and checks that every key and tensor round-trips.

    export_gguf.py --ckpt digits.pt --out digits.gguf

Layout (little-endian): "GGUF", u32 version 3, u64 tensor count, u64 KV count; the KVs
(u64-length key, u32 type, value); the tensor infos (name, u32 n_dims, u64 ne[] with
ne[0] the contiguous dimension, u32 type 0 = F32, u64 offset into the data section, a
multiple of 32); zero padding to a multiple of 32; the data. A PyTorch tensor of shape
(out, in) is written row-major with ne = [in, out], so ne is always the shape reversed.
"""
import argparse
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model import TOKENS, load_checkpoint  # noqa: E402

ALIGN = 32
UINT32, FLOAT32, STRING, ARRAY = 4, 6, 8, 9
F32 = 0


def metadata(c):
    """The GGUF key/values: (key, type, value); arrays are (ARRAY, (element type, list))."""
    u = lambda k, v: (k, UINT32, int(v))  # noqa: E731
    return [
        ("general.architecture", STRING, "encdec"),
        ("general.name", STRING, "digits"),
        u("general.alignment", ALIGN),
        u("encdec.embedding_length", c["d"]),
        u("encdec.feed_forward_length", c["ffn"]),
        u("encdec.attention.head_count", c["n_heads"]),
        u("encdec.attention.head_count_kv", c["n_kv_heads"]),
        ("encdec.attention.layer_norm_rms_epsilon", FLOAT32, c["eps"]),
        ("encdec.rope.freq_base", FLOAT32, c["rope_theta"]),
        u("encdec.encoder.block_count", c["enc_layers"]),
        u("encdec.encoder.input_length", c["patch"] ** 2),
        u("encdec.encoder.context_length", c["enc_context"]),
        u("encdec.decoder.block_count", c["dec_layers"]),
        u("encdec.context_length", c["dec_context"]),
        u("encdec.vocab_size", c["vocab"]),
        ("tokenizer.ggml.tokens", ARRAY, (STRING, TOKENS)),
        u("tokenizer.ggml.bos_token_id", c["bos"]),
        u("tokenizer.ggml.eos_token_id", c["eos"]),
        u("encdec.patch_size", c["patch"]),
        u("encdec.image_height", c["image_height"]),
        u("encdec.digit_width", c["digit_width"]),
    ]


def pack_str(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def pack_value(t, v):
    if t == UINT32:
        return struct.pack("<I", v)
    if t == FLOAT32:
        return struct.pack("<f", v)
    if t == STRING:
        return pack_str(v)
    if t == ARRAY:
        et, items = v
        return struct.pack("<IQ", et, len(items)) + b"".join(pack_value(et, x) for x in items)
    raise ValueError(f"unsupported GGUF value type {t}")


def pad(n):
    return (-n) % ALIGN


def write_gguf(path, kvs, tensors):
    """tensors: list of (name, float32 numpy array in PyTorch's shape)."""
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs))
    for key, t, v in kvs:
        head += pack_str(key) + struct.pack("<I", t) + pack_value(t, v)
    offset, blobs = 0, []
    for name, a in tensors:
        ne = a.shape[::-1]
        head += pack_str(name) + struct.pack("<I", len(ne)) + struct.pack(f"<{len(ne)}Q", *ne)
        head += struct.pack("<IQ", F32, offset)
        blob = np.ascontiguousarray(a, dtype="<f4").tobytes()
        blobs.append(blob + bytes(pad(len(blob))))
        offset += len(blobs[-1])
    with open(path, "wb") as f:
        f.write(head + bytes(pad(len(head))))
        for b in blobs:
            f.write(b)


def read_gguf(path):
    """-> (dict key -> value, dict name -> float32 array in PyTorch's shape)."""
    with open(path, "rb") as f:
        buf = f.read()
    pos = 0

    def take(fmt):
        nonlocal pos
        vals = struct.unpack_from("<" + fmt, buf, pos)
        pos += struct.calcsize("<" + fmt)
        return vals if len(vals) > 1 else vals[0]

    def string():
        nonlocal pos
        n = take("Q")
        pos += n
        return buf[pos - n:pos].decode("utf-8")

    def value(t):
        if t == UINT32:
            return take("I")
        if t == FLOAT32:
            return take("f")
        if t == STRING:
            return string()
        if t == ARRAY:
            et, n = take("IQ")
            return [value(et) for _ in range(n)]
        raise ValueError(f"unsupported GGUF value type {t}")

    assert buf[:4] == b"GGUF", "not a GGUF file"
    pos = 4
    version, n_tensors, n_kv = take("IQQ")
    assert version == 3
    kv = {}
    for _ in range(n_kv):
        key = string()
        kv[key] = value(take("I"))
    infos = []
    for _ in range(n_tensors):
        name = string()
        n_dims = take("I")
        ne = [take("Q") for _ in range(n_dims)]
        t, off = take("IQ")
        assert t == F32 and off % ALIGN == 0, name
        infos.append((name, ne, off))
    data_start = pos + pad(pos)
    tensors = {}
    for name, ne, off in infos:
        count = int(np.prod(ne))
        a = np.frombuffer(buf, "<f4", count, data_start + off)
        tensors[name] = a.reshape(ne[::-1])
    return kv, tensors


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--out", default="digits.gguf")
    args = ap.parse_args()
    model = load_checkpoint(args.ckpt)
    kvs = metadata(model.c)
    tensors = [(k, v.detach().float().numpy()) for k, v in model.state_dict().items()]
    write_gguf(args.out, kvs, tensors)

    kv, back = read_gguf(args.out)
    for key, t, v in kvs:
        want = v[1] if t == ARRAY else (float(np.float32(v)) if t == FLOAT32 else v)
        assert kv[key] == want, f"{key}: wrote {want!r}, read {kv[key]!r}"
    assert list(back) == [n for n, _ in tensors], "tensor names or order differ"
    for name, a in tensors:
        assert back[name].shape == a.shape and np.array_equal(back[name], a), f"{name} differs"
    print(f"wrote {args.out}: {len(kvs)} keys, {len(tensors)} tensors, {os.path.getsize(args.out):,} bytes; "
          f"read back: all equal")
    for name, a in tensors[:3]:
        print(f"  {name}: ne {list(a.shape[::-1])}")


if __name__ == "__main__":
    main()
