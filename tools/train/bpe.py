"""A byte-fallback BPE tokenizer trained from scratch, written in llama2.c's
tokenizer format (which kvdecode reads): ids 0 <unk>, 1 BOS, 2 EOS, 3..258 the
byte pieces <0x00>..<0xFF>, then every character of the corpus, then merges with
score -rank (the first merge scores highest). Words carry their leading space, so
no piece ever spans a word boundary and llama2.c's greedy-by-score encoding equals
applying the merges in rank order, word by word.
"""
import collections
import re
import struct

SPECIALS = ["<unk>", "\n<s>\n", "\n</s>\n"]


def words_of(text):
    # The dummy-prefix space, then each word with its leading space.
    return re.findall(r" ?[^ ]+| +", " " + text)


def train(docs, vocab_size):
    freq = collections.Counter(w for d in docs for w in words_of(d))
    chars = sorted({c for w in freq for c in w})
    pieces = SPECIALS + [f"<0x{b:02X}>" for b in range(256)] + chars
    words = {w: tuple(w) for w in freq}
    merges = []
    while len(pieces) < vocab_size:
        pairs = collections.Counter()
        for w, syms in words.items():
            f = freq[w]
            for a, b in zip(syms, syms[1:]):
                pairs[(a, b)] += f
        if not pairs:
            break
        best = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))[0]
        merged = best[0] + best[1]
        merges.append(best)
        pieces.append(merged)
        for w, syms in words.items():
            if len(syms) < 2:
                continue
            out, i = [], 0
            while i < len(syms):
                if i + 1 < len(syms) and syms[i] == best[0] and syms[i + 1] == best[1]:
                    out.append(merged)
                    i += 2
                else:
                    out.append(syms[i])
                    i += 1
            words[w] = tuple(out)
    return pieces, merges


class Tokenizer:
    def __init__(self, pieces, merges):
        self.pieces = pieces
        self.ids = {p: i for i, p in enumerate(pieces)}
        self.rank = {m: r for r, m in enumerate(merges)}
        self.cache = {}

    def _word(self, w):
        if w in self.cache:
            return self.cache[w]
        syms = list(w)
        while len(syms) > 1:
            best, at = None, -1
            for i, pair in enumerate(zip(syms, syms[1:])):
                r = self.rank.get(pair)
                if r is not None and (best is None or r < best):
                    best, at = r, i
            if at < 0:
                break
            syms[at:at + 2] = [syms[at] + syms[at + 1]]
        ids = []
        for s in syms:
            if s in self.ids:
                ids.append(self.ids[s])
            else:
                ids.extend(3 + b for b in s.encode("utf-8"))
        self.cache[w] = ids
        return ids

    def encode(self, text, bos=True, eos=False):
        ids = [1] if bos else []
        for w in words_of(text) if text else []:
            ids.extend(self._word(w))
        if eos:
            ids.append(2)
        return ids

    def write_llama2c(self, path):
        data = [p.encode("utf-8") for p in self.pieces]
        with open(path, "wb") as f:
            f.write(struct.pack("<i", max(len(d) for d in data)))
            for i, d in enumerate(data):
                f.write(struct.pack("<fi", self._score(i), len(d)))
                f.write(d)

    def _score(self, i):
        # Merged pieces score -rank; the base pieces never need a score to be looked up.
        n_base = len(self.pieces) - len(self.rank)
        return 0.0 if i < n_base else -float(i - n_base)
