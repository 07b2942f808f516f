"""Summarises scripts/bench's JSON (medians of the repetitions) as the README's tables,
and with --charts draws them as PNG figures (needs matplotlib: scripts/setup charts).

    python3 scripts/bench_report.py build/bench                          # markdown tables
    python3 scripts/bench_report.py build/bench --charts docs/figures    # and the figures
"""
import argparse
import json
import os
import re
import sys


def medians(path):
    if not os.path.exists(path):
        return {}, {}
    data = json.load(open(path))
    out = {}
    for b in data["benchmarks"]:
        if b.get("aggregate_name", "median") != "median" or b.get("run_type") == "aggregate" and not b["name"].endswith("_median"):
            continue
        name = re.sub(r"_median$", "", b["run_name"] if "run_name" in b else b["name"])
        out[name] = b
    return out, data.get("context", {})


def find(results, pattern):
    """{match groups: benchmark} for every name matching pattern (a '/manual_time' tail allowed)."""
    rx = re.compile(pattern + r"(?:/manual_time|/real_time)?$")
    return {m.groups(): b for name, b in results.items() if (m := rx.match(name))}


def seconds(b):
    scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[b.get("time_unit", "ns")]
    return b["real_time"] * scale


# Storage types from most to fewest bytes per weight (bench_decode_speed's names).
TYPES = ["f32", "f16", "bf16", "q8_0", "q6_k", "q5_1", "q5_0", "q4_1", "q4_0", "q4_k", "q3_k", "q2_k"]


def type_rank(kind):
    return TYPES.index(kind) if kind in TYPES else len(TYPES)


def decode_cells(runs, cell):
    """One table cell per decode run (None: "-"), and the first run's MB read per token."""
    present = [b for b in runs if b]
    mb = present[0].get("MB_per_token", present[0]["weight_MB_per_token"]) if present else None
    return [cell(b) if b else "-" for b in runs], mb


def speed_tables(folder):
    """decode_speed.json and bandwidth.json: the bandwidth limit, batched steps, prefill."""
    shapes = ["stories260K", "15M", "110M"]
    bw, ctx = medians(os.path.join(folder, "bandwidth.json"))
    speed, ctx2 = medians(os.path.join(folder, "decode_speed.json"))
    ctx = ctx or ctx2
    if not (bw or speed):
        return
    if ctx:
        print(f"Machine: {ctx.get('num_cpus')} CPUs at {ctx.get('mhz_per_cpu')} MHz, run {ctx.get('date')}; "
              "medians of repetitions.\n")
    threads = sorted({int(b["threads"]) for b in list(bw.values()) + list(speed.values()) if "threads" in b})
    if bw:
        print("### Read bandwidth (1 GiB; the probe: 8 interleaved streams per thread)\n")
        print("| threads | " + " | ".join(str(t) for t in threads) + " |")
        print("|---|" + "---:|" * len(threads))
        cells = []
        for t in threads:
            b = bw.get(f"bandwidth/read_1GiB/threads:{t}/manual_time")
            cells.append(f"{b['bytes_per_second'] / 1e9:.1f} GB/s" if b else "-")
        print("| read (the probe) | " + " | ".join(cells) + " |")
        for streams in [1, 2, 4, 8, 16]:
            cells = []
            for t in threads:
                b = bw.get(f"bandwidth/streams:{streams}/threads:{t}/manual_time")
                cells.append(f"{b['bytes_per_second'] / 1e9:.1f} GB/s" if b else "-")
            if any(c != "-" for c in cells):
                print(f"| {streams} stream{'s' if streams > 1 else ''} per thread | " + " | ".join(cells) + " |")
        print()
    if any(k.startswith("decode/") for k in speed):
        print("### Decode: tokens/s and fraction of the bandwidth limit\n")
        print("One token through the model at contexts 16 to 144. Limit = read bandwidth (median of 1 GiB read")
        print("passes made during the run, between timed steps) / bytes read per token (weights and KV cache);")
        print("fraction = tokens/s / limit.\n")
        print("| shape | weights + KV read per token | " + " | ".join(f"{t} thread{'s' if t > 1 else ''}" for t in threads) + " |")
        print("|---|---:|" + "---:|" * len(threads))
        for s in shapes:
            runs = [speed.get(f"decode/{s}/threads:{t}/manual_time") for t in threads]
            cells, mb = decode_cells(runs, lambda b: f"{b['items_per_second']:.0f}/s, {b['fraction_of_limit'] * 100:.0f}% "
                                                     f"({b['bandwidth_GBps']:.0f} GB/s)")
            if mb is not None:
                print(f"| {s} | {mb:.1f} MB | " + " | ".join(cells) + " |")
        print()
    typed = {(kind or "f32", int(t)): b for (kind, t), b in find(speed, r"decode/110M/(?:([a-z0-9_]+)/)?threads:(\d+)").items()}
    if len({k for k, _ in typed}) > 1:
        print("### Decode by weight type (110M shape)\n")
        print("The same random weights stored as each type; contexts 16 to 144.\n")
        type_threads = sorted({t for _, t in typed})
        print("| type | MB read per token | " + " | ".join(f"{t} thread{'s' if t > 1 else ''}" for t in type_threads) + " |")
        print("|---|---:|" + "---:|" * len(type_threads))
        for kind in sorted({k for k, _ in typed}, key=type_rank):
            cells, mb = decode_cells([typed.get((kind, t)) for t in type_threads],
                                     lambda b: f"{b['items_per_second']:.1f}/s, {b['fraction_of_limit'] * 100:.0f}%")
            print(f"| {kind} | {mb:.1f} | " + " | ".join(cells) + " |")
        print()
    by_context = {(kind, int(t), int(c)): b
                  for (kind, c, t), b in find(speed, r"decode/110M/([a-z0-9_]+)/context:(\d+)/threads:(\d+)").items()}
    if by_context:
        print("### Decode by context (110M shape): tokens/s, fraction of the limit, MB read per token (weights + KV)\n")
        contexts = sorted({c for _, _, c in by_context})
        print("| type | threads | " + " | ".join(f"context {c}" for c in contexts) + " |")
        print("|---|---:|" + "---:|" * len(contexts))
        for kind, t in sorted({(k, t) for k, t, _ in by_context}):
            cells = []
            for c in contexts:
                b = by_context.get((kind, t, c))
                cells.append(f"{b['items_per_second']:.1f}/s, {b['fraction_of_limit'] * 100:.0f}% "
                             f"({b['weight_MB_per_token']:.0f} + {b['kv_MB_per_token']:.0f} MB)" if b else "-")
            print(f"| {kind} | {t} | " + " | ".join(cells) + " |")
        print()
    if any(k.startswith("step/") for k in speed):
        print("### Batched steps: W sequences of one token each (beams, rollouts) vs one\n")
        print("One forward of W sequences forked from a 128-token prompt; time per step and its ratio to W = 1.\n")
        widths = [1, 2, 4, 8, 10, 16]
        print("| shape | threads | " + " | ".join(f"W={w}" for w in widths) + " |")
        print("|---|---:|" + "---:|" * len(widths))
        for s in shapes:
            for t in threads:
                one = speed.get(f"step/{s}/rows:1/threads:{t}")
                if not one:
                    continue
                cells = []
                for w in widths:
                    b = speed.get(f"step/{s}/rows:{w}/threads:{t}")
                    cells.append(f"{seconds(b) / seconds(one):.2f}x ({seconds(b) * 1e3:.2f} ms)" if b else "-")
                print(f"| {s} | {t} | " + " | ".join(cells) + " |")
        print()
    if any(k.startswith("prefill/") for k in speed):
        print("### Prefill of 128 tokens: GFLOP/s, beside Eigen's GEMM on the same projections (1 thread)\n")
        print("| shape | Eigen GEMM, 1 thread | " + " | ".join(f"{t} thread{'s' if t > 1 else ''}" for t in threads) + " |")
        print("|---|---:|" + "---:|" * len(threads))
        for s in shapes:
            g = speed.get(f"gemm_eigen/{s}/tokens:128/threads:1")
            cells = []
            for t in threads:
                b = speed.get(f"prefill/{s}/tokens:128/threads:{t}")
                if b and g and t == 1:
                    cells.append(f"{b['GFLOPs']:.0f} ({b['GFLOPs'] / g['GFLOPs'] * 100:.0f}% of Eigen)")
                else:
                    cells.append(f"{b['GFLOPs']:.0f}" if b else "-")
            if g or any(c != "-" for c in cells):
                eigen = f"{g['GFLOPs']:.0f}" if g else "-"
                print(f"| {s} | {eigen} | " + " | ".join(cells) + " |")
        print()


def weight_matrix_table(folder):
    """weight_matrix.json: GB/s of weights one product streams, per storage type and kernel."""
    wm, _ = medians(os.path.join(folder, "weight_matrix.json"))
    if not wm:
        return
    print("### Weight matrices: GB/s of weights one product reads (one thread, weights cycled through 1 GiB)\n")
    print("prepare + multiply of 1, 4 and 8 activation rows; 768x2048 and 2048x768 are out x in (the 110M MLP shapes).")
    print("Bytes per weight: f32 4, f16 and bf16 2, q8_0 1.0625.\n")
    shapes, rows = ["768x2048", "2048x768"], [1, 4, 8]
    print("| type | kernel | " + " | ".join(f"{s}, {r} row{'s' if r > 1 else ''}" for s in shapes for r in rows) + " |")
    print("|---|---|" + "---:|" * (len(shapes) * len(rows)))
    for t in ["f32", "f16", "bf16", "q8_0"]:
        for isa in ["avx512", "avx2", "sse2", "scalar"]:
            cells = []
            for s in shapes:
                for r in rows:
                    name = f"weight_matrix/{t}/{isa}/{s}/rows:{r}"
                    b = wm.get(name + "/real_time") or wm.get(name)
                    cells.append(f"{b['bytes_per_second'] / 1e9:.1f}" if b else None)
            if any(cells):
                print(f"| {t} | {isa} | " + " | ".join(c or "-" for c in cells) + " |")
    print()


def main(folder):
    shapes = ["stories260K", "15M", "110M"]
    speed_tables(folder)
    weight_matrix_table(folder)
    kv, ctx = medians(os.path.join(folder, "kv_cache_benefit.json"))
    if ctx:
        print(f"Machine: {ctx.get('num_cpus')} CPUs at {ctx.get('mhz_per_cpu')} MHz, "
              f"{ctx.get('library_build_type')} benchmark library, run {ctx.get('date')}; medians of repetitions.\n")
    lengths = [1, 5, 10, 20, 30, 50, 80, 128, 256, 512]
    if kv:
        print("### KV cache: time per generated token at context length L\n")
        print("Reference (no cache) time / cached time, and the cached time per token:\n")
        print("| shape | " + " | ".join(f"L={L}" for L in lengths) + " |")
        print("|---|" + "---:|" * len(lengths))
        for s in shapes:
            cells = []
            for L in lengths:
                c, r = kv.get(f"kv_cache/cached/{s}/context:{L}"), kv.get(f"kv_cache/reference/{s}/context:{L}")
                cells.append(f"{seconds(r) / seconds(c):.1f}x ({seconds(c) * 1e3:.2f} ms)" if c and r else "-")
            print(f"| {s} | " + " | ".join(cells) + " |")
        print()
    batch, _ = medians(os.path.join(folder, "batch.json"))
    cases = ["batch1", "batch3_mixed", "batch4_short_medium"]
    if batch:
        print("### Greedy generation of 5 tokens per prompt, prefill included: time per call (generated tokens/s)\n")
        print("| shape | 1 prompt (16) | 3 prompts (8, 32, 128) | 4 prompts (16, 16, 64, 64) |")
        print("|---|---:|---:|---:|")
        for s in shapes:
            cells = []
            for case in cases:
                b = batch.get(f"greedy_5_tokens/{s}/{case}")
                cells.append(f"{seconds(b) * 1e3:.2f} ms ({b['items_per_second']:.0f}/s)" if b else "-")
            print(f"| {s} | " + " | ".join(cells) + " |")
        print()
    mask, _ = medians(os.path.join(folder, "mask.json"))
    chunks = [8, 32, 128, 512]
    if mask:
        layers = {"stories260K": 5, "15M": 6, "110M": 12}
        print("### Prefill of one chunk: what a mask built for every layer would cost\n")
        print("Share = layers x (time to build one T x T mask) / (prefill time + that); the prefill time with the")
        print("cached mask in brackets. (The suite also times a prefill that really rebuilds the masks,")
        print("prefill/mask_every_layer; the difference is within this machine's noise.)\n")
        print("| shape | " + " | ".join(f"chunk {t}" for t in chunks) + " |")
        print("|---|" + "---:|" * len(chunks))
        for s in shapes:
            cells = []
            for t in chunks:
                a = mask.get(f"prefill/cached_mask/{s}/chunk:{t}")
                b = mask.get(f"mask/build/chunk:{t}")
                if a and b:
                    rebuild = layers[s] * seconds(b)
                    cells.append(f"{rebuild / (seconds(a) + rebuild) * 100:.2f}% ({seconds(a) * 1e3:.2f} ms)")
                else:
                    cells.append("-")
            print(f"| {s} | " + " | ".join(cells) + " |")
        print()
    beam, _ = medians(os.path.join(folder, "beam_search.json"))
    if beam:
        print("### Beam search: one step relative to one greedy step, and peak KV-cache memory\n")
        print("Prompt of 128 tokens, 32 new tokens, no EOS. Step time = search time / forward steps. Shared: beams fork")
        print("their parent's blocks; copied: the naive baseline that copies a parent's whole cache at each reorder.")
        print("Peak KV: the most cache blocks in use at any moment of the search, in MiB.\n")
        for s in ["stories260K", "110M"]:
            g = beam.get(f"beam/{s}/greedy")
            if not g:
                continue
            g_step = seconds(g) / g["steps"]
            print(f"**{s}**: greedy step {g_step * 1e3:.3f} ms, peak KV {g['peak_kv_MiB']:.2f} MiB\n")
            print("| beams | shared step / greedy step | copied step / greedy step | shared peak KV | copied peak KV | copied / shared memory |")
            print("|---:|---:|---:|---:|---:|---:|")
            for w in [1, 2, 4, 5, 8, 10, 16]:
                a, b = beam.get(f"beam/shared/{s}/beams:{w}"), beam.get(f"beam/copied/{s}/beams:{w}")
                if not (a and b):
                    continue
                sa, sb = seconds(a) / a["steps"], seconds(b) / b["steps"]
                print(f"| {w} | {sa / g_step:.2f}x ({sa * 1e3:.2f} ms) | {sb / g_step:.2f}x ({sb * 1e3:.2f} ms) | "
                      f"{a['peak_kv_MiB']:.2f} MiB | {b['peak_kv_MiB']:.2f} MiB | {b['peak_kv_MiB'] / a['peak_kv_MiB']:.2f}x |")
            print()

    tree, _ = medians(os.path.join(folder, "maxent_ts.json"))
    if tree:
        print("### MaxEnt-TS: time per search (tokens computed per search)\n")
        print("Prompt of 32 tokens, no EOS. Shared: nodes and rollouts fork cached prefixes; recompute: every")
        print("expansion and rollout recomputes from the prompt. Batched: all rollouts of a search generate together.\n")
        variants = ["shared/one_at_a_time", "shared/batched", "recompute/one_at_a_time", "recompute/batched"]
        print("| shape | rollouts x tokens | " + " | ".join(variants) + " |")
        print("|---|---|" + "---:|" * len(variants))
        for s in ["stories260K", "110M"]:
            for r in [5, 10, 20]:
                for t in [30, 50, 100]:
                    cells = []
                    for v in variants:
                        b = tree.get(f"tree/{s}/rollouts:{r}/tokens:{t}/{v}")
                        cells.append(f"{seconds(b) * 1e3:.1f} ms ({b['tokens_computed']:.0f})" if b else None)
                    if any(cells):
                        print(f"| {s} | {r} x {t} | " + " | ".join(c or "-" for c in cells) + " |")
        print()

    seq, _ = medians(os.path.join(folder, "seq2seq.json"))
    if seq:
        lengths = [5, 10, 20, 30, 50, 80]
        print("### Encoder-decoder: the cache against recomputation, by output length\n")
        print("The digits reader's shape, random weights; EOS suppressed to force the length. Recompute: every step")
        print("runs each sequence's whole prefix through the decoder (the cross K/V still computed once). Cell:")
        print("recompute time / cache time, and the cache's time per generated token.\n")
        print("| batch | " + " | ".join(f"{L} tokens" for L in lengths) + " |")
        print("|---:|" + "---:|" * len(lengths))
        for batch in [1, 32]:
            cells = []
            for L in lengths:
                c = seq.get(f"seq2seq/steps/length:{L}/batch:{batch}/cache")
                r = seq.get(f"seq2seq/steps/length:{L}/batch:{batch}/recompute")
                cells.append(f"{seconds(r) / seconds(c):.1f}x ({seconds(c) / (L * batch) * 1e6:.0f} us)" if c and r else "-")
            print(f"| {batch} | " + " | ".join(cells) + " |")
        print()
        enc = [(b, seq.get(f"seq2seq/encode/batch:{b}")) for b in [1, 32]]
        print("Encoder and cross K/V, per source: " + ", ".join(
            f"batch {b}: {seconds(e) / b * 1e6:.0f} us" for b, e in enc if e) + "\n")
        print("| threads | samples/s, batch 1 | samples/s, batch 64 | batch 64 / batch 1 |")
        print("|---:|---:|---:|---:|")
        for t in [1, 2]:
            a, b = seq.get(f"seq2seq/samples/batch:1/threads:{t}"), seq.get(f"seq2seq/samples/batch:64/threads:{t}")
            if a and b:
                print(f"| {t} | {a['items_per_second']:.0f} | {b['items_per_second']:.0f} | "
                      f"{b['items_per_second'] / a['items_per_second']:.2f}x |")
        print()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Tables (and with --charts, PNG figures) from scripts/bench's JSON.")
    parser.add_argument("folder", nargs="?", default="build/bench", help="where scripts/bench wrote *.json")
    parser.add_argument("--charts", metavar="DIR", help="also draw the figures into DIR (PNG; needs matplotlib)")
    parser.add_argument("--machine", help="the machine's name in the figures (default: the JSON's cpu context, "
                                          "which scripts/bench records, else its CPU count and clock)")
    parser.add_argument("--no-tables", action="store_true", help="figures only")
    args = parser.parse_args()
    if not args.no_tables:
        main(args.folder)
    if args.charts:
        try:
            import bench_charts
        except ImportError as e:
            sys.exit(f"bench_report.py: --charts needs matplotlib ({e}); on Debian: scripts/setup charts")
        for path in bench_charts.draw_all(args.folder, args.charts, args.machine):
            print(f"wrote {path}", file=sys.stderr)
