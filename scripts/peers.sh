#!/usr/bin/env bash
# Peer benchmark: gradflow vs Burn (wgpu) vs PyTorch (CPU, when installed), one run, one machine.
#
#   scripts/peers.sh [--quick] [--out DIR] [--merge-only] [--no-burn]
#
# PYTHON names the interpreter with torch (default python3). --no-burn skips building and
# running the Burn peer (13-45 min to build on 2 cores) and leaves it out of the table.
#
# Builds gradflow and benches/peers/burn in release mode, runs `gradflow bench`, `burn-peer`
# and benches/peers/torch_bench.py one after another (never concurrently: they would share
# the cores), each writing the same JSON schema into DIR (default target/peers), then prints
# a markdown table of gradflow's figures beside the peers' as ratios and saves it to
# DIR/peers.md. --merge-only skips building and running and re-renders DIR/*.json.
# On a software adapter (Mesa lavapipe, 2 cores) the full Burn run takes ~15 min, most of it
# Burn autotuning n=2048 on first use; --quick takes a few minutes for everything.
set -euo pipefail
cd "$(dirname "$0")/.."

out=target/peers
quick=()
merge_only=0
burn=1
python="${PYTHON:-python3}"
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=(--quick) ;;
    --out) out="${2:?--out needs a directory}"; shift ;;
    --merge-only) merge_only=1 ;;
    --no-burn) burn=0 ;;
    -h|--help) awk 'NR > 1 && !/^#/ {exit} NR > 1' "$0"; exit 0 ;;
    *) echo "peers.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
  shift
done
mkdir -p "$out"
cache_root="$(cd "$out" && pwd)/cache"

die() { echo "peers.sh: $*" >&2; exit 1; }

# Run one tool, keeping its output in DIR/NAME.log, and insist it produced its JSON.
# Each tool gets its own empty XDG_CACHE_HOME, so no tool starts warm from an earlier run:
# that holds the Mesa/driver shader caches and gradflow's autotune file, and keeps the
# cold-start (first_run_s / first_step_s) figures comparable and repeatable.
run_tool() {
  local name="$1"; shift
  echo "== $name: $*"
  rm -rf "$out/$name.json" "${cache_root:?}/$name"
  mkdir -p "$cache_root/$name"
  local rc=0
  env -u MESA_SHADER_CACHE_DIR XDG_CACHE_HOME="$cache_root/$name" "$@" 2>&1 \
    | tee "$out/$name.log" || rc=${PIPESTATUS[0]}
  [ "$rc" -eq 0 ] || die "$name failed (exit $rc); see $out/$name.log"
  [ -s "$out/$name.json" ] || die "$name exited 0 but wrote no $out/$name.json; see $out/$name.log"
}

if [ "$merge_only" -eq 0 ]; then
  # wgpu/Vulkan loaders complain without a runtime dir (containers, ssh sessions).
  export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
  echo "== building gradflow and the Burn peer (release)"
  cargo build --release || die "gradflow build failed"
  if [ "$burn" -eq 1 ]; then
    cargo build --release --manifest-path benches/peers/burn/Cargo.toml || die "Burn peer build failed"
  fi

  run_tool gradflow target/release/gradflow bench "${quick[@]}" --json "$out/gradflow.json"
  rm -f "$out/burn.json"
  if [ "$burn" -eq 1 ]; then
    run_tool burn benches/peers/burn/target/release/burn-peer "${quick[@]}" --json "$out/burn.json"
  fi
  rm -f "$out/torch.json"
  if "$python" -c 'import torch' 2>/dev/null; then
    run_tool torch "$python" benches/peers/torch_bench.py "${quick[@]}" --json "$out/torch.json"
  else
    echo "== torch: not installed for $(command -v "$python" || echo "$python"), skipped"
  fi
fi

[ -s "$out/gradflow.json" ] || die "no $out/gradflow.json"

cpu_model=$(grep -m1 -E '^(model name|Model|cpu model)' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//')
machine="$(nproc) cores, ${cpu_model:-unknown CPU}, $(uname -sr)"
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)

python3 - "$out" "$machine" "$(date -u -r "$out/gradflow.json" '+%Y-%m-%d %H:%M UTC')" "$commit" <<'PY' \
  > "$out/peers.md.tmp" || { rm -f "$out/peers.md.tmp"; die "merging the JSON failed"; }
import json, os, sys

out, machine, date, commit = sys.argv[1:]
# bench -> (size key, throughput key, unit, cold-start key), as in the shared JSON schema.
KINDS = {"matmul": ("n", "gflops", "GFLOP/s", "first_run_s"),
         "mlp": ("batch", "samples_per_s", "samples/s", "first_step_s"),
         # The small models trained one step at a time, and the 16-run digits sweep in all.
         "small": ("model", "samples_per_s", "samples/s", None),
         "small_sweep": ("model", "samples_per_s", "samples/s", None)}

def load(tool):
    path = os.path.join(out, tool + ".json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        doc = json.load(f)
    rows = {}
    for r in doc["results"]:
        if r.get("bench") in KINDS:  # other figures a tool reports are not compared here
            rows[(r["bench"], r[KINDS[r["bench"]][0]])] = r
    return doc, rows

tools = [t for t in ("gradflow", "burn", "torch") if load(t)]
docs = {t: load(t) for t in tools}
peers = tools[1:]

# Every (bench, size) any tool measured, matmul before mlp, small to large.
keys = sorted({k for t in tools for k in docs[t][1]}, key=lambda k: (list(KINDS).index(k[0]), k[1]))

def fmt(x):
    return "–" if x is None else f"{x:,.{0 if x >= 1000 else 1}f}"

def secs(x):  # cold starts span µs (cached) to minutes (autotuning on a CPU adapter)
    return "–" if x is None else f"{x:.3g}" if x < 100 else f"{x:.0f}"

def val(tool, key, field):
    r = docs[tool][1].get(key)
    return None if r is None or r.get(field) is None else float(r[field])

print("# gradflow peer benchmark\n")
print(f"- date: {date}")
print(f"- machine: {machine}")
print(f"- gradflow commit: {commit}")
for t in tools:
    ver = docs[t][0].get("version")
    print(f"- {t}{' ' + ver if ver else ''}: {docs[t][0].get('adapter', '?')}")
print("\nThroughput (higher is better); ratio > 1 means gradflow is faster.\n")
head = ["bench", "size", "unit", "gradflow"]
for p in peers:
    head += [p, f"gradflow/{p}"]
print("| " + " | ".join(head) + " |")
print("|" + "---|" * len(head))
for key in keys:
    bench, size = key
    size_key, field, unit, _ = KINDS[bench]
    g = val("gradflow", key, field)
    cells = [bench, f"{size_key}={size}", unit, fmt(g)]
    for p in peers:
        v = val(p, key, field)
        cells += [fmt(v), f"{g / v:.2f}×" if g is not None and v else "–"]
    print("| " + " | ".join(cells) + " |")
print("\nCold start in seconds: the first product / first training step (shader compilation,"
      " autotuning, first allocation), each tool run with an empty XDG_CACHE_HOME. Work a tool"
      " does before it (e.g. when opening the device) is not in it.\n")
print("| bench | size | " + " | ".join(tools) + " |")
print("|" + "---|" * (2 + len(tools)))
for key in keys:
    bench, size = key
    size_key, _, _, cold = KINDS[bench]
    if cold is None:
        continue
    print(f"| {bench} | {size_key}={size} | " +
          " | ".join(secs(val(t, key, cold)) for t in tools) + " |")
small = docs["gradflow"][1]
rows = [(k, r) for k, r in small.items() if k[0] in ("small", "small_sweep")]
if rows:
    print("\ngradflow's small models on each of its paths (samples/s): the GPU figure above is the"
          " step the GPU path chooses by itself; the sweep's is the faster of its GPU runs one after"
          " another and its CPU reference runs one per core.\n")
    print("| bench | model | GPU | CPU reference | CPU reference, one run per core |")
    print("|---|---|---|---|---|")
    for (bench, model), r in sorted(rows):
        gpu = r.get("gpu_samples_per_s", r.get("samples_per_s")) if bench == "small_sweep" else r.get("samples_per_s")
        print(f"| {bench} | {model} | {fmt(gpu)} | {fmt(r.get('cpu_reference_samples_per_s'))} | "
              f"{fmt(r.get('cpu_threads_samples_per_s'))} |")
PY
mv "$out/peers.md.tmp" "$out/peers.md"
echo
cat "$out/peers.md"
echo
echo "(written to $out/peers.md)"
