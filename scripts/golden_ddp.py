#!/usr/bin/env python3
"""Golden data-parallel runs for tests/ddp_golden.rs: real torch DistributedDataParallel, 2 ranks.

Generated the way ../shared/golden's training runs are: float64 maths on float32 inputs (x and the
initial state are float32, the model is trained in float64), a fixed seed, the model
Linear(20,64) BN ReLU Linear(64,64) BN ReLU Linear(64,5), cross-entropy (mean), 512 rows, global
batches of 64 consecutive rows in file order, 2 epochs of 8 steps.

The data-parallel part is torch's own: two processes (torch.multiprocessing.spawn) join a gloo
process group on localhost and train a DistributedDataParallel model with its defaults
(broadcast_buffers=True). Rank r takes rows [r*32, r*32 + 32) of each global batch of 64, the
split gradflow's train_batches_on makes. Batch norm normalises each rank's 32 rows with their own
statistics (plain BatchNorm1d, not SyncBatchNorm); DDP averages the gradients over the ranks (sum,
divided by the world size), so each step is the same optimizer step on every rank. Before every
forward DDP broadcasts rank 0's buffers (running statistics, num_batches_tracked) to the other
ranks, so rank 0's buffers evolve from rank 0's shares alone.

Usage: python3 scripts/golden_ddp.py [out_dir]   (default tests/fixtures/ddp)
Needs torch (CPU is enough; gloo), safetensors, numpy.
"""

import json
import os
import socket
import sys
import tempfile

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.numpy import save_file
from torch import nn

SEED = 20261129  # the seed ../shared/golden states
ROWS, D, CLASSES = 512, 20, 5
GLOBAL_BATCH, WORLD = 64, 2
EPOCHS = 2

CASES = [
    {"name": "train_mlp_bn_ddp2_sgd", "optimizer": "SGD", "lr": 0.1},
    {"name": "train_mlp_bn_ddp2_momentum", "optimizer": "SGD", "lr": 0.05, "momentum": 0.9},
]


def make_model():
    return nn.Sequential(
        nn.Linear(D, 64), nn.BatchNorm1d(64), nn.ReLU(),
        nn.Linear(64, 64), nn.BatchNorm1d(64), nn.ReLU(),
        nn.Linear(64, CLASSES),
    )


def make_optimizer(case, params):
    return torch.optim.SGD(params, lr=case["lr"], momentum=case.get("momentum", 0.0))


def worker(rank, case, x, y, init, port, out_dir):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    torch.set_num_threads(1)
    model = make_model().double()
    model.load_state_dict({k: v.double() if v.is_floating_point() else v for k, v in init.items()})
    ddp = nn.parallel.DistributedDataParallel(model)  # broadcast_buffers=True, the default
    assert ddp.broadcast_buffers
    opt = make_optimizer(case, ddp.parameters())
    xd = x.double()
    share = GLOBAL_BATCH // WORLD
    losses = []
    for _ in range(EPOCHS):
        for start in range(0, ROWS, GLOBAL_BATCH):
            lo = start + rank * share
            opt.zero_grad()
            loss = nn.functional.cross_entropy(ddp(xd[lo:lo + share]), y[lo:lo + share])
            loss.backward()  # DDP all-reduces the gradients here: the mean over the ranks
            opt.step()
            losses.append(loss.item())
    model.eval()
    with torch.no_grad():
        logits = model(xd)  # the module itself: no DDP broadcast, rank r's own buffers
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    torch.save({"losses": losses, "state": state, "eval_logits": logits}, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.barrier()
    dist.destroy_process_group()


def simulate(case, x, y, init):
    """The semantics the manifest states, in one process without torch.distributed: two model
    copies, rank 0's buffers copied to rank 1 before every forward, the gradients averaged. The
    DDP run must agree with it to rounding (main asserts 1e-12), so the file records what it says."""
    models = [make_model().double() for _ in range(WORLD)]
    for m in models:
        m.load_state_dict({k: v.double() if v.is_floating_point() else v for k, v in init.items()})
    opts = [make_optimizer(case, m.parameters()) for m in models]
    xd, share, losses = x.double(), GLOBAL_BATCH // WORLD, []
    for _ in range(EPOCHS):
        for start in range(0, ROWS, GLOBAL_BATCH):
            with torch.no_grad():
                for m in models[1:]:
                    for b0, b in zip(models[0].buffers(), m.buffers()):
                        b.copy_(b0)
            step = []
            for r, (m, opt) in enumerate(zip(models, opts)):
                opt.zero_grad()
                lo = start + r * share
                loss = nn.functional.cross_entropy(m(xd[lo:lo + share]), y[lo:lo + share])
                loss.backward()
                step.append(loss.item())
            for ps in zip(*(m.parameters() for m in models)):
                mean = sum(p.grad for p in ps) / WORLD
                for p in ps:
                    p.grad = mean.clone()
            for opt in opts:
                opt.step()
            losses.append(step)
    models[0].eval()
    with torch.no_grad():
        logits = models[0](xd)
    return np.array(losses).T, [m.state_dict() for m in models], logits


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spec(arrays):
    return {k: {"dtype": str(v.dtype), "shape": list(v.shape)} for k, v in arrays.items()}


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/ddp"
    os.makedirs(out_dir, exist_ok=True)
    torch.manual_seed(SEED)
    x = torch.randn(ROWS, D, dtype=torch.float32)
    teacher = torch.randn(D, CLASSES, dtype=torch.float32)
    y = (x.double() @ teacher.double() + 0.5 * torch.randn(ROWS, CLASSES, dtype=torch.float64)).argmax(1)
    manifest = {
        "generator": f"PyTorch {torch.__version__}, float64 maths on float32 inputs, "
        f"torch.nn.parallel.DistributedDataParallel over {WORLD} processes (gloo, localhost)",
        "seed": SEED,
        "script": "scripts/golden_ddp.py",
        "self_check": "the script reruns every case in one process without torch.distributed (two model copies, "
        "rank 0's buffers copied to rank 1 before each forward, gradients averaged) and asserts the DDP "
        "run's losses, states and logits agree to 1e-12",
        "cases": [],
    }
    for case in CASES:
        torch.manual_seed(SEED + 1)
        init = {k: v.detach().clone() for k, v in make_model().state_dict().items()}  # float32
        with tempfile.TemporaryDirectory() as tmp:
            mp.spawn(worker, args=(case, x, y, init, free_port(), tmp), nprocs=WORLD, join=True)
            ranks = [torch.load(os.path.join(tmp, f"rank{r}.pt")) for r in range(WORLD)]
        for k, v in ranks[0]["state"].items():
            if k.endswith(("weight", "bias")):
                assert torch.equal(v, ranks[1]["state"][k]), f"{k} differs between the ranks"
        rank_losses = np.array([r["losses"] for r in ranks], dtype=np.float64)
        sim_losses, sim_states, sim_logits = simulate(case, x, y, init)
        gaps = [np.abs(sim_losses - rank_losses).max(), (sim_logits - ranks[0]["eval_logits"]).abs().max().item()]
        for r in range(WORLD):
            gaps += [(v.double() - ranks[r]["state"][k].double()).abs().max().item() for k, v in sim_states[r].items()]
        assert max(gaps) < 1e-12, f"{case['name']}: the DDP run and the stated semantics differ by {max(gaps)}"
        t = {
            "x": x.numpy(),
            "y": y.numpy().astype(np.int64),
            "losses": rank_losses.mean(0),
            "rank_losses": rank_losses,
            "eval_logits": ranks[0]["eval_logits"].numpy(),
        }
        for k, v in init.items():
            t[f"init.{k}"] = v.numpy()
        for k, v in ranks[0]["state"].items():
            t[f"final.{k}"] = v.numpy()
        for k, v in ranks[1]["state"].items():
            if "running" in k or "num_batches" in k:
                t[f"final_rank1.{k}"] = v.numpy()
        t = {k: np.ascontiguousarray(v) for k, v in t.items()}
        fname = f"{case['name']}.safetensors"
        save_file(t, os.path.join(out_dir, fname))
        params = {
            "model": str(make_model()).replace("\n", "").replace("  ", ""),
            "layer_sizes": [D, 64, 64, CLASSES],
            "loss": "cross_entropy (mean)",
            **{k: v for k, v in case.items() if k != "name"},
            "batch_size": GLOBAL_BATCH,
            "epochs": EPOCHS,
            "shuffle": False,
            "world_size": WORLD,
            "per_rank_batch": GLOBAL_BATCH // WORLD,
            "batches": "global batches of 64 consecutive rows in file order; rank r takes rows "
            "[r*32, r*32+32) of each (gradflow's train_batches_on split)",
            "batch_norm": "per rank: BatchNorm1d normalises each rank's 32 rows with their own statistics "
            "(DDP's default, not SyncBatchNorm); running_var uses the unbiased variance of the 32 rows",
            "gradients": "DDP all-reduce: the mean over the ranks of each rank's mean-loss gradient "
            "(= the global batch's mean-loss gradient only without batch norm)",
            "broadcast_buffers": "True (DDP's default): rank 0's buffers are broadcast before every forward, so "
            "rank 0's running statistics come from rank 0's shares alone; final_rank1.* are rank 1's buffers "
            "at the end (rank 0's after step 15, updated with rank 1's share of step 16)",
            "losses": "per step, the mean of the two ranks' losses (the global batch's mean loss); "
            "rank_losses[r] is rank r's own mean loss on its 32 rows",
            "state_dict_names": "as torch.nn.Sequential.state_dict(); init.* (float32) is both ranks' initial "
            "state, final.* rank 0's after training",
            "eval_logits": "rank 0's model in eval mode (its running statistics) on all of x after training",
            "labels": "argmax of x @ teacher + 0.5·noise, teacher and noise standard normal",
        }
        manifest["cases"].append({"name": case["name"], "kind": "ddp_training_run", "file": fname,
                                  "params": params, "tensors": spec(t)})
        print(f"{case['name']}: DDP run = stated semantics within {max(gaps):.1e}; losses {rank_losses.mean(0)}")
    with open(os.path.join(out_dir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
