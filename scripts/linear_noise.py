#!/usr/bin/env python3
"""Writes data/linear_noise.csv: y = 2·x1 − 3·x2 + 0.5 + Gaussian noise (σ = 0.1), x uniform in
[−1, 1]², 200 rows, for regression runs (data.targets = ["y"]). Seeded, standard library only:
python3 scripts/linear_noise.py > data/linear_noise.csv"""
import random

rng = random.Random(22)
print("x1,x2,y")
for _ in range(200):
    x1, x2 = rng.uniform(-1, 1), rng.uniform(-1, 1)
    y = 2 * x1 - 3 * x2 + 0.5 + rng.gauss(0, 0.1)
    print(f"{x1:.4f},{x2:.4f},{y:.4f}")
