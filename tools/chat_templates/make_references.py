#!/usr/bin/env python3
"""Renders every template of templates.json over a set of conversations with
transformers' apply_chat_template(tokenize=False) and writes the references that
tests/tokenizer/chat_template_test.cpp checks byte for byte.

    python3 tools/chat_templates/make_references.py OUT.json

Needs transformers (and tokenizers, for a stand-in tokenizer that only carries the
bos/eos texts); no network. A conversation the template refuses records the
exception's message instead of a text. The output is tests/data/chat_templates.json.
"""

import datetime
import json
import os
import sys

import jinja2
import transformers
from tokenizers import Tokenizer, models
from transformers import PreTrainedTokenizerFast

HERE = os.path.dirname(os.path.abspath(__file__))

# name -> messages. Content with newlines, leading/trailing spaces, non-ASCII text and
# the Unicode spaces Python's str.strip() removes (Jinja's trim is str.strip()).
CONVERSATIONS = {
    "system_user": [
        {"role": "system", "content": "You are a terse assistant."},
        {"role": "user", "content": "Who created the heaven and the earth?"},
    ],
    "multi_turn": [
        {"role": "user", "content": "Hello!"},
        {"role": "assistant", "content": "Hi there. How can I help?"},
        {"role": "user", "content": "Tell me about Genesis."},
    ],
    "user_only": [
        {"role": "user", "content": "What is 2+2?"},
    ],
    "system_multi_spaces": [
        {"role": "system", "content": "  Be brief.\nAnswer in English.\n"},
        {"role": "user", "content": " Line one\nLine two  "},
        {"role": "assistant", "content": "\n  An answer\twith spaces.  \n"},
        {"role": "user", "content": "\tLast one\u00a0\u2003\n"},
    ],
    "unicode_empty_assistant": [
        {"role": "user", "content": "\u00dcn\u00efc\u00f6d\u00e9 \u2713 \u4f60\u597d \U0001F44B\U0001F3FD"},
        {"role": "assistant", "content": ""},
        {"role": "user", "content": "again\x1f"},
    ],
    "ends_with_assistant": [
        {"role": "system", "content": "Sys"},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": " Hello. "},
    ],
    "system_only": [
        {"role": "system", "content": "Only a system message."},
    ],
    "two_users": [
        {"role": "user", "content": "first"},
        {"role": "user", "content": "second"},
    ],
    "assistant_first": [
        {"role": "assistant", "content": "I speak first."},
        {"role": "user", "content": "Then me."},
    ],
    "late_system": [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "system", "content": "late system"},
        {"role": "user", "content": "c"},
    ],
    "two_systems": [
        {"role": "system", "content": "one"},
        {"role": "system", "content": "two"},
        {"role": "user", "content": "u"},
    ],
    "tool_result": [
        {"role": "user", "content": "Weather?"},
        {"role": "tool", "content": "{\"temp\": 21, \"note\": \"<sunny> & \u00e9t\u00e9\\n\"}\nline\t2"},
    ],
    "other_role": [
        {"role": "user", "content": "u"},
        {"role": "narrator", "content": "n"},
    ],
}

# Templates that render a conversation in a way the C++ renderer does not follow
# (documented in chat_template.hpp): not rendered, so not checked.
SKIP = {
    ("qwen2.5", "tool_result"),  # Qwen2.5 wraps tool messages in <tool_response>
    ("qwen2.5", "other_role"),  # Qwen2.5 drops roles other than system/user/assistant/tool
}


class render_directly:
    """transformers' own renderer, where a stand-in tokenizer cannot be built."""

    def __init__(self, bos, eos):
        self.tokens = {k: v for k, v in (("bos_token", bos), ("eos_token", eos)) if v}

    def apply_chat_template(self, messages, chat_template, tokenize, add_generation_prompt, **kwargs):
        from transformers.utils.chat_template_utils import render_jinja_template
        rendered, _ = render_jinja_template(conversations=[messages], chat_template=chat_template,
                                            add_generation_prompt=add_generation_prompt, **self.tokens, **kwargs)
        return rendered[0]


def stand_in_tokenizer(bos, eos):
    try:
        return make_stand_in(bos, eos)
    except Exception as e:
        print(f"stand-in tokenizer failed ({e!r}): rendering with render_jinja_template", file=sys.stderr)
        return render_directly(bos, eos)


def make_stand_in(bos, eos):
    vocab = {"<unk>": 0}
    for t in (bos, eos):
        if t and t not in vocab:
            vocab[t] = len(vocab)
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="<unk>")),
                                  unk_token="<unk>", bos_token=bos or None, eos_token=eos or None)
    return tok


def main():
    out_path = sys.argv[1]
    with open(os.path.join(HERE, "templates.json"), encoding="utf-8") as f:
        templates = json.load(f)["templates"]
    cases = []
    for t in templates:
        tok = stand_in_tokenizer(t["bos_token"], t["eos_token"])
        runs = [dict(t["kwargs"])]
        if "strftime_now" in t["template"]:
            runs.append({})  # today's date, as transformers' strftime_now gives it
        for kwargs in runs:
            for name, messages in CONVERSATIONS.items():
                if (t["key"], name) in SKIP:
                    continue
                for agp in (True, False):
                    case = {"template": t["key"], "conversation": name, "add_generation_prompt": agp, "kwargs": kwargs}
                    if "strftime_now" in t["template"] and not kwargs:
                        case["today"] = datetime.datetime.now().strftime("%d %b %Y")
                    try:
                        case["text"] = tok.apply_chat_template(messages, chat_template=t["template"], tokenize=False,
                                                               add_generation_prompt=agp, **kwargs)
                    except Exception as e:  # the template's raise_exception, or a Jinja error
                        case["error"] = str(e)
                        case["error_type"] = type(e).__name__
                    if "today" in case and case["today"] != datetime.datetime.now().strftime("%d %b %Y"):
                        raise SystemExit("the date changed while rendering: run again")
                    cases.append(case)
    result = {
        "note": "Made by tools/chat_templates/make_references.py from tools/chat_templates/templates.json: "
                "transformers' apply_chat_template(messages, chat_template=T, tokenize=False, "
                "add_generation_prompt=A, **kwargs) with a stand-in tokenizer carrying bos_token/eos_token.",
        "versions": {"transformers": transformers.__version__, "jinja2": jinja2.__version__,
                     "python": sys.version.split()[0]},
        "templates": templates,
        "conversations": CONVERSATIONS,
        "cases": cases,
    }
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"{len(cases)} cases, {sum('error' in c for c in cases)} errors -> {out_path}")


if __name__ == "__main__":
    main()
