"""Greedy ids of llama.cpp (llama-greedy) and kvdecode (kvdecode-generate) on GGUF files.

    python3 compare.py LLAMA_GREEDY KVDECODE_GENERATE FILE.gguf...

Prints a markdown table: per file, whether llama.cpp loaded it, prompts whose ids are
equal, and the generated ids compared up to the first difference, with llama.cpp's
top-2 logit margin at that step (a near-tie is where a different order of float
additions may pick the other token).
"""
import subprocess
import sys

PROMPTS = ["In the beginning", "And the LORD said unto Moses", "Blessed are", "The kingdom of heaven is like", "12 tribes"]
NEW_TOKENS = 32


def ints(text):
    return [int(x) for x in text.split()]


def main(llama_greedy, generate, files):
    print("| file | loads in llama.cpp | prompt ids equal | greedy ids equal (32 each) | first difference |")
    print("|---|---|---:|---:|---|")
    totals = [0, 0, 0]
    for path in files:
        name = path.rsplit("/", 1)[-1]
        run = subprocess.run([llama_greedy, path, str(NEW_TOKENS)] + PROMPTS, capture_output=True, text=True)
        if run.returncode != 0:
            print(f"| {name} | no: {run.stderr.strip()} | | | |")
            continue
        same_prompt = same_ids = 0
        notes = []
        for prompt, line in zip(PROMPTS, run.stdout.splitlines()):
            prompt_ids, ids, margins = (part for part in line.split(";"))
            prompt_ids, ids, margins = ints(prompt_ids), ints(ids), [float(m) for m in margins.split()]
            ours = subprocess.run([generate, "--model", path, "--prompt", prompt, "--max-new-tokens", str(NEW_TOKENS),
                                   "--print-ids", "--threads", "1"], capture_output=True, text=True, check=True)
            ours = ints(ours.stdout)
            same_prompt += ours[:len(prompt_ids)] == prompt_ids
            generated = ours[len(prompt_ids):]
            step = next((i for i, (a, b) in enumerate(zip(generated, ids)) if a != b), None)
            if step is None and len(generated) != len(ids):
                step = min(len(generated), len(ids))
            if step is None:
                same_ids += 1
            else:
                margin = f"{margins[step]:.4f}" if step < len(margins) else "-"
                notes.append(f'"{prompt}": step {step}, margin {margin}')
        totals = [totals[0] + same_prompt, totals[1] + same_ids, totals[2] + len(PROMPTS)]
        print(f"| {name} | yes | {same_prompt}/{len(PROMPTS)} | {same_ids}/{len(PROMPTS)} | {'; '.join(notes)} |")
    print(f"\nAll files: prompt ids equal {totals[0]}/{totals[2]}, greedy ids equal {totals[1]}/{totals[2]}.")


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
