#!/usr/bin/env python3
"""PyTorch peer for `gradflow bench`: same matmul and MLP workloads, same JSON schema.

usage: torch_bench.py [--quick] [--json FILE] [--device cpu|cuda]
Exits 0 with a one-line note when torch is not installed, so scripts/peers.sh can skip it.
"""
import argparse, json, os, sys, time

try:
    import torch
except ImportError:
    print("torch not available, skipped")
    sys.exit(0)


def reps_for(one_s, target_s, minimum):
    return max(minimum, int(target_s / max(one_s, 1e-6)) + 1)


DEVICE = "cpu"


def sync():
    # CUDA launches are asynchronous: drain the queue before reading the clock.
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def bench_matmul(n, target_s):
    a, b = torch.rand(n, n, device=DEVICE), torch.rand(n, n, device=DEVICE)
    t = time.perf_counter()
    a @ b
    sync()
    first = time.perf_counter() - t
    t = time.perf_counter()
    a @ b
    sync()
    reps = reps_for(time.perf_counter() - t, target_s, 2)
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync()
    secs = time.perf_counter() - t
    return 2 * n**3 * reps / secs / 1e9, first


def bench_mlp(batch, target_s, rows=8192):
    nn = torch.nn
    model = nn.Sequential(
        nn.Linear(784, 512), nn.BatchNorm1d(512), nn.ReLU(),
        nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(),
        nn.Linear(512, 10),
    ).to(DEVICE)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    xs, ys = torch.rand(rows, 784, device=DEVICE), torch.arange(rows, device=DEVICE) % 10
    cursor = 0

    def step():
        nonlocal cursor
        start = cursor * batch % rows
        cursor += 1
        opt.zero_grad(set_to_none=True)
        loss_fn(model(xs[start:start + batch]), ys[start:start + batch]).backward()
        opt.step()

    t = time.perf_counter()
    step()
    sync()
    first = time.perf_counter() - t
    for _ in range(5):
        step()
    sync()
    t = time.perf_counter()
    step()
    sync()
    steps = reps_for(time.perf_counter() - t, target_s, 5)
    t = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return steps * batch / (time.perf_counter() - t), first


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = ap.parse_args()
    global DEVICE
    DEVICE = args.device
    torch.set_num_threads(os.cpu_count())
    torch.manual_seed(0)
    target = 1.0 if args.quick else 2.0
    if DEVICE == "cuda":
        # TF32 off: the same FP32 arithmetic gradflow's kernels do.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        adapter = f"CUDA {torch.cuda.get_device_name()}"
    else:
        adapter = f"CPU ({torch.get_num_threads()} threads)"
    print(f"torch {torch.__version__} on {adapter}")
    results = []
    for n in ([256, 512] if args.quick else [256, 512, 1024, 2048]):
        gflops, first = bench_matmul(n, target)
        print(f"matmul {n:>6} {gflops:>10.2f} GFLOP/s  first {first:.3f}s")
        results.append({"bench": "matmul", "n": n, "gflops": gflops, "first_run_s": first})
    for batch in (256, 1024):
        sps, first = bench_mlp(batch, target)
        print(f"mlp    {batch:>6} {sps:>10.1f} samples/s first {first:.3f}s")
        results.append({"bench": "mlp", "batch": batch, "samples_per_s": sps, "first_step_s": first})
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"tool": "torch", "version": torch.__version__, "adapter": adapter,
                       "results": results}, f)
            f.write("\n")


if __name__ == "__main__":
    main()
