"""An independent encoder for the llama2.c tokenizer format, written from llama2.c's
run.c `encode` (BPE by score, dummy prefix, byte fallback at id 3 + byte). The
expected pieces in tests/io/llama2c_tokenizer_test.cpp come from this script:

    python3 tools/llama2c_encode.py ../shared/models/aidreams_tok512.bin "Hello world"
"""
import struct
import sys


def load(path):
    raw = open(path, "rb").read()
    off = 4
    pieces, scores = [], []
    while off < len(raw):
        score, n = struct.unpack("<fi", raw[off:off + 8])
        off += 8
        pieces.append(raw[off:off + n])
        scores.append(score)
        off += n
    return pieces, scores


def encode(pieces, scores, text):
    lookup = {}
    for i, p in enumerate(pieces):
        lookup.setdefault(p, i)
    data = text.encode("utf-8")
    ids = [lookup[b" "]] if data else []
    i = 0
    while i < len(data):
        j = i + 1
        while j < len(data) and (data[j] & 0xC0) == 0x80 and j - i < 4:
            j += 1
        unit = data[i:j]
        if unit in lookup:
            ids.append(lookup[unit])
        else:
            ids.extend(3 + b for b in unit)
        i = j
    while True:
        best, at = None, -1
        for k in range(len(ids) - 1):
            merged = pieces[ids[k]] + pieces[ids[k + 1]]
            if merged in lookup and (best is None or scores[lookup[merged]] > best):
                best, at = scores[lookup[merged]], k
        if at < 0:
            return ids
        ids[at:at + 2] = [lookup[pieces[ids[at]] + pieces[ids[at + 1]]]]


if __name__ == "__main__":
    pieces, scores = load(sys.argv[1])
    for text in sys.argv[2:]:
        ids = encode(pieces, scores, text)
        print(repr(text), ids, [pieces[i].decode("utf-8", "replace") for i in ids])
