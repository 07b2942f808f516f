"""scripts/bench_report.py on the small checked-in sample in bench_sample/ (a real run's
medians, cut down): `tables` checks the markdown tables against the sample's own numbers;
`charts` draws the figures (exit 77, skipped, where matplotlib is missing).

    python3 tests/scripts/bench_report_test.py tables|charts
"""
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SAMPLE = os.path.join(HERE, "bench_sample")
SCRIPTS = os.path.join(HERE, "..", "..", "scripts")
REPORT = os.path.join(SCRIPTS, "bench_report.py")
SKIPPED = 77


def sample(suite):
    data = json.load(open(os.path.join(SAMPLE, suite + ".json")))
    return {b["run_name"]: b for b in data["benchmarks"]}


def check(condition, message):
    if not condition:
        sys.exit("FAILED: " + message)


def tables():
    out = subprocess.run([sys.executable, REPORT, SAMPLE], check=True, capture_output=True, text=True).stdout
    lines = out.splitlines()

    def row(section, prefix):
        """The one row starting with prefix in the table under the heading starting with section."""
        starts = [i for i, line in enumerate(lines) if line.startswith("### " + section)]
        check(len(starts) == 1, f"one section {section!r}\n{out}")
        found = []
        for line in lines[starts[0] + 1:]:
            if line.startswith("### "):
                break
            if line.startswith(prefix):
                found.append(line)
        check(len(found) == 1, f"one row starting {prefix!r} under {section!r}, found {found}\n{out}")
        return found[0]

    bw, speed, kv = sample("bandwidth"), sample("decode_speed"), sample("kv_cache_benefit")
    probe = row("Read bandwidth", "| read (the probe) |")
    one = row("Read bandwidth", "| 1 stream per thread |")
    for t in (1, 2):
        b = bw[f"bandwidth/read_1GiB/threads:{t}/manual_time"]
        check(f"{b['bytes_per_second'] / 1e9:.1f} GB/s" in probe, f"probe bandwidth at {t} threads in {probe!r}")
        b = bw[f"bandwidth/streams:1/threads:{t}/manual_time"]
        check(f"{b['bytes_per_second'] / 1e9:.1f} GB/s" in one, f"one-stream bandwidth at {t} threads in {one!r}")
    q8 = row("Decode by weight type", "| q8_0 |")
    for t in (1, 2):
        b = speed[f"decode/110M/q8_0/threads:{t}/manual_time"]
        check(f"{b['items_per_second']:.1f}/s, {b['fraction_of_limit'] * 100:.0f}%" in q8, f"q8_0 at {t} threads in {q8!r}")
    check(q8.startswith(f"| q8_0 | {speed['decode/110M/q8_0/threads:1/manual_time']['MB_per_token']:.1f} |"),
          f"q8_0's bytes per token (weights + KV) in {q8!r}")
    b = speed["decode/110M/f32/context:2048/threads:1/manual_time"]
    ctx = row("Decode by context", "| f32 | 1 |")
    check(f"{b['fraction_of_limit'] * 100:.0f}% ({b['weight_MB_per_token']:.0f} + {b['kv_MB_per_token']:.0f} MB)" in ctx,
          f"f32 at context 2048 in {ctx!r}")
    one, eight = speed["step/110M/rows:1/threads:1"], speed["step/110M/rows:8/threads:1"]
    step = row("Batched steps", "| 110M | 1 |")
    check(f"{eight['real_time'] / one['real_time']:.2f}x" in step, f"beam-8 step ratio in {step!r}")
    c, r = kv["kv_cache/cached/stories260K/context:512"], kv["kv_cache/reference/stories260K/context:512"]
    check(f"{r['real_time'] / c['real_time']:.1f}x" in row("KV cache", "| stories260K |"), "cache vs recompute at L=512")


def charts():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("skipped: matplotlib is not installed for " + sys.executable + " (scripts/setup charts)")
        return SKIPPED
    with tempfile.TemporaryDirectory() as out:
        subprocess.run([sys.executable, REPORT, SAMPLE, "--charts", out, "--no-tables"], check=True)
        expected = ["decode_by_type", "batched_steps", "cache_vs_recompute", "decode_by_context", "bandwidth"]
        check(sorted(os.listdir(out)) == sorted(n + ".png" for n in expected), f"figures written: {os.listdir(out)}")
        for name in expected:
            png = open(os.path.join(out, name + ".png"), "rb").read()
            check(png[:8] == b"\x89PNG\r\n\x1a\n", f"{name}.png is a PNG")
            width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
            check(width >= 500 and height >= 400, f"{name}.png is {width}x{height}")
    sys.path.insert(0, SCRIPTS)
    import bench_charts
    ctx = json.load(open(os.path.join(SAMPLE, "decode_speed.json")))["context"]
    label = bench_charts.machine_label(ctx)
    for part in ["Sample CPU (AVX-512 VNNI)", "2 CPUs", "run " + ctx["date"][:10], f"load {ctx['load_avg'][0]:.1f}"]:
        check(part in label, f"{part!r} in the figures' machine label {label!r}")
    check(bench_charts.machine_label(ctx, "my laptop").startswith("my laptop, run "), "--machine replaces the CPU")
    return 0


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else ""
    if what == "tables":
        sys.exit(tables())
    if what == "charts":
        sys.exit(charts())
    sys.exit("usage: bench_report_test.py tables|charts")
