"""The README's figures, drawn from scripts/bench's JSON with matplotlib.

Called by `python3 scripts/bench_report.py build/bench --charts docs/figures`. Each
figure is drawn only from the suites it needs, when their JSON holds its benchmarks,
and is labelled with the machine and the date of the run that made its numbers.
"""
import os
import re

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

from bench_report import TYPES, find, medians, seconds, type_rank  # noqa: E402
COLORS = plt.rcParams["axes.prop_cycle"].by_key()["color"]


def machine_label(ctx, machine=None):
    """'<cpu> (<isa>), N CPUs, run YYYY-MM-DD, load L': the run's own context."""
    cpu = machine or ctx.get("cpu") or f"{ctx.get('num_cpus', '?')} CPUs at {ctx.get('mhz_per_cpu', '?')} MHz"
    parts = [cpu + (f" ({ctx['isa']})" if ctx.get("isa") and not machine else "")]
    if ctx.get("num_cpus") and not (machine or "CPUs at" in cpu):
        parts.append(f"{ctx['num_cpus']} CPUs")
    if ctx.get("date"):
        parts.append("run " + ctx["date"][:10])
    if ctx.get("load_avg"):
        parts.append(f"load {ctx['load_avg'][0]:.1f} at start")
    return ", ".join(parts)


def finish(fig, path, ctx, machine, note=None):
    text = machine_label(ctx, machine) + (f"\n{note}" if note else "")
    fig.text(0.01, 0.005, text, fontsize=7, color="0.35", va="bottom")
    fig.tight_layout(rect=(0, 0.05 if note else 0.035, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def decode_by_type(speed, ctx, out, machine, shape="110M"):
    """(a) tokens/s per weight type and thread count, the bandwidth limit drawn over each bar."""
    runs = {}
    for (kind, t), b in find(speed, rf"decode/{re.escape(shape)}/(?:([a-z0-9_]+)/)?threads:(\d+)").items():
        runs[(kind or "f32", int(t))] = b
    if not runs:
        return None
    types = [k for k in TYPES if any(k == kind for kind, _ in runs)]
    threads = sorted({t for _, t in runs})
    width = 0.8 / len(threads)
    fig, ax = plt.subplots(figsize=(9, 4.8))
    for j, t in enumerate(threads):
        xs, ys, limits, fractions = [], [], [], []
        for i, kind in enumerate(types):
            b = runs.get((kind, t))
            if b:
                xs.append(i + (j - (len(threads) - 1) / 2) * width)
                ys.append(b["items_per_second"])
                limits.append(b["limit_tokens_per_s"])
                fractions.append(b["fraction_of_limit"])
        ax.bar(xs, ys, width * 0.92, color=COLORS[j % len(COLORS)],
               label=f"{t} thread{'s' if t > 1 else ''}")
        ax.hlines(limits, [x - width * 0.46 for x in xs], [x + width * 0.46 for x in xs], colors="black",
                  linewidth=1.6, label="bandwidth limit" if j == 0 else None)
        for x, y, f in zip(xs, ys, fractions):
            ax.annotate(f"{f * 100:.0f}%", (x, y), textcoords="offset points", xytext=(0, 2), ha="center",
                        fontsize=7)
    ax.set_xticks(range(len(types)))
    ax.set_xticklabels(types)
    ax.set_xlabel("weight storage type")
    ax.set_ylabel("tokens/s")
    ax.set_title(f"Decode speed by weight type, {shape} shape (bars: measured, % of the limit above each;\n"
                 "black line: limit = probe read bandwidth / bytes read per token)", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return finish(fig, os.path.join(out, "decode_by_type.png"), ctx, machine,
                  "Median of repetitions; contexts 16 to 144; bytes = weights + KV cache; "
                  "bandwidth measured during each run (bench_bandwidth's multi-stream probe).")


def batched_steps(speed, ctx, out, machine, shape="110M"):
    """(b) one forward of W sequences (beams, rollouts) relative to one greedy step."""
    runs = {}
    for (kind, w, t), b in find(speed, rf"step/{re.escape(shape)}/(?:([a-z0-9_]+)/)?rows:(\d+)/threads:(\d+)").items():
        runs.setdefault((kind or "f32", int(t)), {})[int(w)] = b
    runs = {k: v for k, v in runs.items() if 1 in v}
    if not runs:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    widths = sorted({w for v in runs.values() for w in v})
    ax.plot(widths, widths, color="0.75", linestyle=":", label="W separate steps")
    for i, ((kind, t), v) in enumerate(sorted(runs.items(), key=lambda kv: (type_rank(kv[0][0]), kv[0][1]))):
        ws = sorted(v)
        ax.plot(ws, [seconds(v[w]) / seconds(v[1]) for w in ws], marker="o", color=COLORS[i % len(COLORS)],
                linestyle="-" if t == 1 else "--",
                label=f"{kind}, {t} thread{'s' if t > 1 else ''} (greedy {seconds(v[1]) * 1e3:.1f} ms)")
    ax.plot([8], [1.5], marker="v", color="red", markersize=9, linestyle="none", label="targets: beam-8 1.5x")
    ax.plot([10], [2.0], marker="v", color="darkred", markersize=9, linestyle="none", label="10 rollouts 2x")
    top = max(seconds(v[w]) / seconds(v[1]) for v in runs.values() for w in v)
    ax.set_ylim(0, max(2.5, top * 1.15))
    ax.set_xscale("log", base=2)
    ax.set_xticks(widths)
    ax.set_xticklabels([str(w) for w in widths])
    ax.set_xlabel("sequences per step W (beams, rollouts)")
    ax.set_ylabel("step time / greedy step time")
    ax.set_title(f"Batched decode steps, {shape} shape: W sequences forked from a 128-token prompt", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return finish(fig, os.path.join(out, "batched_steps.png"), ctx, machine)


def cache_vs_recompute(kv, ctx, out, machine):
    """(c) time per generated token with the KV cache and recomputing from the tokens."""
    runs = {}
    for (mode, s, L), b in find(kv, r"kv_cache/(cached|reference)/([^/]+)/context:(\d+)").items():
        runs.setdefault(s, {}).setdefault(mode, {})[int(L)] = b
    runs = {s: v for s, v in runs.items() if "cached" in v and "reference" in v}
    if not runs:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    order = ["stories260K", "15M", "110M"]
    for i, s in enumerate(sorted(runs, key=lambda s: order.index(s) if s in order else 99)):
        for mode, style in [("cached", "-"), ("reference", "--")]:
            pts = sorted(runs[s][mode].items())
            ax.plot([L for L, _ in pts], [seconds(b) * 1e3 for _, b in pts], style, marker="o", markersize=3,
                    color=COLORS[i % len(COLORS)], label=f"{s}, {'KV cache' if mode == 'cached' else 'recompute'}")
        both = sorted(set(runs[s]["cached"]) & set(runs[s]["reference"]))
        if both:
            L = both[-1]
            ratio = seconds(runs[s]["reference"][L]) / seconds(runs[s]["cached"][L])
            ax.annotate(f"{ratio:.0f}x", (L, seconds(runs[s]["cached"][L]) * 1e3), textcoords="offset points",
                        xytext=(4, -10), fontsize=8, color=COLORS[i % len(COLORS)])
    ax.set_xscale("log")
    ax.set_yscale("log")
    lengths = sorted({L for v in runs.values() for m in v.values() for L in m})
    ax.set_xticks(lengths)
    ax.set_xticklabels([str(L) for L in lengths], fontsize=8)
    ax.minorticks_off()
    ax.set_xlabel("context length L (tokens)")
    ax.set_ylabel("ms per generated token")
    ax.set_title("KV cache vs recomputing the context: time per generated token (1 thread)", fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    return finish(fig, os.path.join(out, "cache_vs_recompute.png"), ctx, machine,
                  "Solid: cached decode step; dashed: the no-cache reference model over the whole context; "
                  "ratio at the longest context.")


def decode_by_context(speed, ctx, out, machine, shape="110M"):
    """(c) decode speed against context length, and what a token's bytes are made of."""
    runs = {}
    for (kind, c, t), b in find(speed, rf"decode/{re.escape(shape)}/([a-z0-9_]+)/context:(\d+)/threads:(\d+)").items():
        runs.setdefault((kind, int(t)), {})[int(c)] = b
    if not runs:
        return None
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.8), gridspec_kw={"width_ratios": [3, 2]})
    keys = sorted(runs, key=lambda k: (type_rank(k[0]), k[1]))
    contexts = sorted({c for v in runs.values() for c in v})
    for i, (kind, t) in enumerate(keys):
        v = runs[(kind, t)]
        cs = sorted(v)
        color = COLORS[i % len(COLORS)]
        ax.plot(cs, [v[c]["items_per_second"] for c in cs], marker="o", color=color,
                label=f"{kind}, {t} thread{'s' if t > 1 else ''}")
        ax.plot(cs, [v[c]["limit_tokens_per_s"] for c in cs], linestyle="--", color=color, alpha=0.6)
    ax.plot([], [], linestyle="--", color="0.4", label="its bandwidth limit")
    ax.set_xscale("log", base=2)
    ax.set_xticks(contexts)
    ax.set_xticklabels([str(c) for c in contexts])
    ax.set_ylim(bottom=0)
    ax.set_xlabel("context (tokens)")
    ax.set_ylabel("tokens/s")
    ax.set_title(f"Decode speed vs context, {shape} shape", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    # Bytes per token: one bar per (type, context), weights below, KV cache on top.
    kinds = [k for k in TYPES if any(k == kind for kind, _ in runs)]
    labels, weights, kvs = [], [], []
    for kind in kinds:
        v = next(runs[k] for k in keys if k[0] == kind)
        for c in contexts:
            if c in v:
                labels.append(f"{kind}\n{c}")
                weights.append(v[c]["weight_MB_per_token"])
                kvs.append(v[c]["kv_MB_per_token"])
    xs = range(len(labels))
    bx.bar(xs, weights, color="0.55", label="weights")
    bx.bar(xs, kvs, bottom=weights, color=COLORS[3], label="KV cache")
    bx.set_xticks(list(xs))
    bx.set_xticklabels(labels, fontsize=7)
    bx.set_ylabel("MB read per token")
    bx.set_title("Bytes read per token (weight type, context)", fontsize=10)
    bx.legend(fontsize=7)
    bx.grid(axis="y", alpha=0.3)
    return finish(fig, os.path.join(out, "decode_by_context.png"), ctx, machine,
                  "KV bytes = layers x 2 x kv_heads x head_dim x context x 4 (float32 cache); "
                  "limit = probe bandwidth / (weight + KV bytes).")


def bandwidth_probe(bw, ctx, out, machine):
    """The probe itself: GB/s against streams per thread, one line per thread count."""
    runs = {}
    for (s, t), b in find(bw, r"bandwidth/streams:(\d+)/threads:(\d+)").items():
        runs.setdefault(int(t), {})[int(s)] = b
    if not runs:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for i, t in enumerate(sorted(runs)):
        ss = sorted(runs[t])
        ax.plot(ss, [runs[t][s]["bytes_per_second"] / 1e9 for s in ss], marker="o", color=COLORS[i % len(COLORS)],
                label=f"{t} thread{'s' if t > 1 else ''}")
        probe = find(bw, rf"bandwidth/read_1GiB/threads:{t}")
        if probe:
            b = next(iter(probe.values()))
            ax.plot([b["streams"]], [b["bytes_per_second"] / 1e9], marker="*", markersize=12, linestyle="none",
                    color=COLORS[i % len(COLORS)], label="the probe (measured apart)" if i == 0 else None)
    ax.set_xscale("log", base=2)
    ss = sorted({s for v in runs.values() for s in v})
    ax.set_xticks(ss)
    ax.set_xticklabels([str(s) for s in ss])
    ax.set_ylim(0, max(line.get_ydata().max() for line in ax.get_lines()) * 1.12)
    ax.set_xlabel("streams per thread (regions read in lockstep)")
    ax.set_ylabel("GB/s read")
    ax.set_title("Read bandwidth over 1 GiB by streams per thread", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return finish(fig, os.path.join(out, "bandwidth.png"), ctx, machine)


def seq2seq_cache(seq, ctx, out, machine):
    """The encoder-decoder's decode steps: cache vs recompute by output length (batch 1 and 32)."""
    runs = {}
    for (L, batch, mode), b in find(seq, r"seq2seq/steps/length:(\d+)/batch:(\d+)/(cache|recompute)").items():
        runs.setdefault(int(batch), {}).setdefault(mode, {})[int(L)] = b
    runs = {k: v for k, v in runs.items() if "cache" in v and "recompute" in v}
    if not runs:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for i, batch in enumerate(sorted(runs)):
        for mode, style in [("cache", "-"), ("recompute", "--")]:
            pts = sorted(runs[batch][mode].items())
            ax.plot([L for L, _ in pts], [seconds(b) / (L * batch) * 1e6 for L, b in pts], style, marker="o",
                    markersize=3, color=COLORS[i % len(COLORS)], label=f"batch {batch}, {mode}")
        for L in sorted(set(runs[batch]["cache"]) & set(runs[batch]["recompute"])):
            ratio = seconds(runs[batch]["recompute"][L]) / seconds(runs[batch]["cache"][L])
            ax.annotate(f"{ratio:.1f}x", (L, seconds(runs[batch]["cache"][L]) / (L * batch) * 1e6),
                        textcoords="offset points", xytext=(-8, -12 - 9 * i), fontsize=7, color=COLORS[i % len(COLORS)])
    ax.set_xscale("log")
    ax.set_yscale("log")
    lengths = sorted({L for v in runs.values() for m in v.values() for L in m})
    ax.set_xticks(lengths)
    ax.set_xticklabels([str(L) for L in lengths], fontsize=8)
    ax.minorticks_off()
    ax.set_xlabel("output length (tokens)")
    ax.set_ylabel("microseconds per generated token")
    ax.set_title("Encoder-decoder (digits reader's shape): self-attention cache vs recompute", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return finish(fig, os.path.join(out, "seq2seq_cache.png"), ctx, machine,
                  "Solid: cached steps; dashed: each step recomputes the whole prefix; ratio recompute / cache. "
                  "Cross K/V computed once per source in both.")


def draw_all(folder, out, machine=None):
    """Every figure whose benchmarks are in folder; returns the paths written."""
    os.makedirs(out, exist_ok=True)
    speed, speed_ctx = medians(os.path.join(folder, "decode_speed.json"))
    kv, kv_ctx = medians(os.path.join(folder, "kv_cache_benefit.json"))
    bw, bw_ctx = medians(os.path.join(folder, "bandwidth.json"))
    seq, seq_ctx = medians(os.path.join(folder, "seq2seq.json"))
    written = [seq2seq_cache(seq, seq_ctx, out, machine), decode_by_type(speed, speed_ctx, out, machine), batched_steps(speed, speed_ctx, out, machine),
               cache_vs_recompute(kv, kv_ctx, out, machine), decode_by_context(speed, speed_ctx, out, machine),
               bandwidth_probe(bw, bw_ctx, out, machine)]
    return [p for p in written if p]
