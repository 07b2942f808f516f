"""The training corpus: the King James Bible (public domain), as shipped by Debian's
bible-kjv-text package and printed by its `bible` program (package bible-kjv).

One document per verse. Every 20th verse is held out for validation (5%).
"""
import re
import subprocess


def bible_text():
    """The whole text as the `bible` program prints it (one verse per line)."""
    return subprocess.run(["bible", "-l100000", "Genesis 1:1-Revelation 22:21"],
                          check=True, capture_output=True, text=True).stdout


def verses(path=None):
    """The verses, from `path` (a saved bible_text() output) or from the `bible` program."""
    out = open(path, encoding="utf-8").read() if path else bible_text()
    docs = []
    for line in out.splitlines():
        m = re.match(r"^\s+\d+ (.+)$", line)
        if m:
            docs.append(m.group(1).strip())
    return docs


def split(docs):
    train = [d for i, d in enumerate(docs) if i % 20 != 19]
    val = [d for i, d in enumerate(docs) if i % 20 == 19]
    return train, val
