#!/usr/bin/env bash
# Runs `gradflow check` and `gradflow bench --json` on one adapter and writes a short markdown
# report: the adapter, whether every kernel is inside its error bound, and every figure, with the
# share of the GPU's peak where the GPU is one we know.
#
#   scripts/gpu-report.sh [--bin PATH] [--out DIR] [--quick] [--adapter NAME]
#
# --bin   a gradflow binary (default: build target/release/gradflow here)
# --out   where report.md, bench.json, check.txt and bench.txt go (default target/gpu-report)
set -euo pipefail
cd "$(dirname "$0")/.."

bin="" out="target/gpu-report" quick="" adapter=()
while [ $# -gt 0 ]; do
    case "$1" in
        --bin) bin="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        --quick) quick="--quick"; shift ;;
        --adapter) adapter=(--adapter "$2"); shift 2 ;;
        *) echo "gpu-report.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
if [ -z "$bin" ]; then
    cargo build --release --quiet
    bin="target/release/gradflow"
fi
mkdir -p "$out"

echo "==> $bin check ${adapter[*]}"
check_status=0
"$bin" check "${adapter[@]}" 2>&1 | tee "$out/check.txt" || check_status=$?
echo "==> $bin bench ${adapter[*]} $quick --json $out/bench.json"
"$bin" bench "${adapter[@]}" $quick --json "$out/bench.json" 2>&1 | tee "$out/bench.txt"

python3 - "$out" "$check_status" <<'PY'
import json, os, platform, sys
out, check_status = sys.argv[1], int(sys.argv[2])
doc = json.load(open(os.path.join(out, "bench.json")))
adapter = doc["adapter"]
# Dense FP32 (no tensor cores) TFLOP/s and memory TB/s, from the vendors' data sheets.
peaks = {"H200": (67.0, 4.8), "H100": (67.0, 3.35), "A100": (19.5, 2.0), "L4": (30.3, 0.3), "RTX 4090": (82.6, 1.0)}
peak = next((v for k, v in peaks.items() if k in adapter), None)
lines = [f"# gradflow on {adapter}", "",
         f"- host: {platform.node() or '?'}, {os.cpu_count()} CPUs; {doc.get('matmul_schedule', '')}",
         f"- `gradflow check`: {'every kernel inside its bound' if check_status == 0 else 'FAILED (see check.txt)'}",
         ""]
if peak:
    lines.append(f"Peak used for the shares: {peak[0]} TFLOP/s FP32, {peak[1]} TB/s.")
    lines.append("")
lines += ["| benchmark | size | figure | share of peak |", "|---|---|---|---|"]
for r in doc["results"]:
    b = r["bench"]
    if "m" in r:
        size = f"{r['m']}×{r['k']}·{r['k']}×{r['n']}"
    elif "n" in r:
        size = f"n={r['n']}"
    elif "batch" in r:
        size = f"batch {r['batch']}"
    else:
        size = r.get("kernel") or r.get("model", "")
    if "gflops" in r:
        fig, share = f"{r['gflops']:.1f} GFLOP/s", peak and f"{100 * r['gflops'] / 1000 / peak[0]:.1f}%"
    elif "samples_per_s" in r:
        fig, share = f"{r['samples_per_s']:.0f} samples/s (first step {r['first_step_s']:.2f} s)", None
    elif "gbps" in r:
        fig, share = f"{r['gbps']:.1f} GB/s", peak and f"{100 * r['gbps'] / 1000 / peak[1]:.1f}%"
    elif "host_us" in r:
        fig, share = f"{r['host_us']:.1f} µs host, {r['submit_us']:.1f} µs submit, {r['wall_us']:.1f} µs wall", None
    else:
        fig, share = json.dumps(r), None
    lines.append(f"| {b} | {size} | {fig} | {share or '—'} |")
open(os.path.join(out, "report.md"), "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
echo "==> wrote $out/report.md"
exit "$check_status"
