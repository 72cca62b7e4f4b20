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


# The small models of `gradflow bench` (src/bench/small_models.rs): same shapes, optimizers,
# batch and data size; random inputs, labels i % classes, batches in order through the rows.
SMALL = {
    "digits": dict(sizes=[64, 128, 64, 10], act="relu", rows=1440, batch=32, loss="ce", opt="sgd_momentum"),
    "xor": dict(sizes=[2, 16, 2], act="tanh", rows=400, batch=32, loss="ce", opt="adam"),
    "higham": dict(sizes=[2, 2, 3, 2], act="sigmoid", rows=10, batch=1, loss="mse", opt="sgd"),
}
# The 16-run digits sweep: these four optimizers x 4 seeds, reshuffled batches of 32.
SWEEP_OPTS = ["sgd_momentum", "adam", "rmsprop", "adagrad"]


def small_model(case):
    nn = torch.nn
    sizes, layers = case["sizes"], []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        last = i == len(sizes) - 2
        if not last or case["act"] == "sigmoid":  # Higham's net ends in a sigmoid too
            layers.append({"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}[case["act"]]())
    return nn.Sequential(*layers).to(DEVICE)


def optimizer(name, params):
    o = torch.optim
    return {"sgd": lambda: o.SGD(params, lr=0.05),
            "sgd_momentum": lambda: o.SGD(params, lr=0.05, momentum=0.9),
            "adam": lambda: o.Adam(params, lr=0.01),
            "rmsprop": lambda: o.RMSprop(params, lr=0.001),
            "adagrad": lambda: o.Adagrad(params, lr=0.01)}[name]()


def small_data(case, classes):
    rows = case["rows"]
    xs = torch.rand(rows, case["sizes"][0], device=DEVICE) * 2 - 1
    ys = torch.arange(rows, device=DEVICE) % classes
    if case["loss"] == "mse":
        ys = torch.nn.functional.one_hot(ys, classes).float()
    return xs, ys


def small_step_fn(case, model, opt, xs, ys):
    loss_fn = torch.nn.CrossEntropyLoss() if case["loss"] == "ce" else torch.nn.MSELoss()
    rows, batch = case["rows"], case["batch"]
    cursor = 0

    def step(idx=None):
        nonlocal cursor
        if idx is None:
            # Rows in order, wrapping at the end (as gradflow's bench): every batch is full.
            idx = (torch.arange(batch, device=DEVICE) + cursor * batch) % rows
            cursor += 1
        x, y = xs[idx], ys[idx]
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()

    return step


def bench_small(name, target_s):
    """Samples/s of one small model trained step by step, as a user's loop would."""
    case = SMALL[name]
    model = small_model(case)
    step = small_step_fn(case, model, optimizer(case["opt"], model.parameters()), *small_data(case, case["sizes"][-1]))
    for _ in range(20):
        step()
    t = time.perf_counter()
    for _ in range(20):
        step()
    sync()
    steps = reps_for((time.perf_counter() - t) / 20, target_s, 50)
    t = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    secs = time.perf_counter() - t
    return steps * case["batch"] / secs, secs / steps * 1e6


def bench_sweep(epochs, seeds=4):
    """Aggregate samples/s of the 16-run digits sweep, the runs one after another."""
    case = SMALL["digits"]
    samples = 0
    t = time.perf_counter()
    for opt_name in SWEEP_OPTS:
        for seed in range(seeds):
            torch.manual_seed(seed)
            model = small_model(case)
            xs, ys = small_data(case, 10)
            step = small_step_fn(case, model, optimizer(opt_name, model.parameters()), xs, ys)
            batch = case["batch"]
            for _ in range(epochs):
                order = torch.randperm(case["rows"], device=DEVICE)
                for b in range(case["rows"] // batch):
                    step(order[b * batch:(b + 1) * batch])
                    samples += batch
    sync()
    return samples / (time.perf_counter() - t)


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
    for name in SMALL:
        sps, us = bench_small(name, target)
        print(f"small  {name:>6} {sps:>10.1f} samples/s {us:8.1f} us/step")
        results.append({"bench": "small", "model": name, "samples_per_s": sps, "us_per_step": us})
    epochs = 3 if args.quick else 30
    sps = bench_sweep(epochs)
    print(f"sweep  digits x16 ({epochs} epochs) {sps:>10.1f} samples/s in all, one after another")
    results.append({"bench": "small_sweep", "model": "digits x16", "epochs": epochs, "samples_per_s": sps})
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"tool": "torch", "version": torch.__version__, "adapter": adapter,
                       "results": results}, f)
            f.write("\n")


if __name__ == "__main__":
    main()
