#!/usr/bin/env python3
"""Writes data/moons.csv: two interleaved half-moons with class names, for the README's
"train on your own CSV" walkthrough. Seeded, standard library only, so the file is reproducible:
python3 scripts/make_moons.py > data/moons.csv"""
import math
import random

rng = random.Random(7)
print("length_mm,width_mm,class")
for i in range(400):
    upper = i % 2 == 0
    t = math.pi * rng.random()
    x, y = (math.cos(t), math.sin(t)) if upper else (1 - math.cos(t), 0.5 - math.sin(t))
    # Millimetres around (40, 12): raw units far from zero, so standardisation matters.
    x, y = 40 + 10 * (x + rng.gauss(0, 0.12)), 12 + 10 * (y + rng.gauss(0, 0.12))
    print(f"{x:.2f},{y:.2f},{'crescent' if upper else 'hook'}")
