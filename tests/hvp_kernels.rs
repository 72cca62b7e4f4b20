//! hvp.wgsl kernel by kernel (`exec::ops_hvp`, launched by `Gpu::hvp_kernel` as the Hessian
//! product launches them) against the function of the same name in `reference::hvp`, run in f64
//! on the same f32 inputs: random inputs over edge shapes (1 and 2 rows, primes, one past the
//! 16-feature and 16-lane batch-norm workgroups, the 64-row cross-entropy one and the 256-element
//! element-wise one, and a large shape), every activation where a kernel takes one, and
//! HVP_ACCUMULATE where a kernel honours it (`out` starts non-zero and the result is added; the
//! other kernels must overwrite it, or for `batchnorm_r_backward_reduce` leave all but the γ, β
//! entries alone).
//!
//! Error bounds: running error analysis along each kernel's own arithmetic, with the library's
//! `reference::bounds::running`. `Ev` carries a value
//! v, computed in f64 from the exact f32 inputs, and e, a bound on how far the kernel's f32 result
//! can be from it; each bound function below transcribes its kernel operation by operation under
//! the precisions the library's error model assumes (`reference::bounds`):
//!   ×        one rounding, |fl(a·b) − a·b| ≤ u·|a·b|;
//!   /        2.5 ulp, at most 5u relative (Vulkan, WGSL);
//!   exp(x)   (3 + 2|x|) ulp (`exp_rel`);
//!   act, act'  `act_eval_bound`, `act_grad_eval_bound` at an exact argument;
//!   sums     a chain of additions and subtractions (through values used once) is a sum of its N
//!            terms in any order and grouping, fma or not, as `dot_bound` assumes: each term goes
//!            through at most N − 1 roundings, γ_{N−1}·Σ|term|. SPIR-V lets a driver regroup
//!            them, and lavapipe does: it computes `out[i] + (a·b + c·d)` as `(out[i] + a·b) + c·d`
//!            (Mesa moves a trailing addition into the FMA chain), which a fixed-order bound for
//!            HVP_ACCUMULATE missed by an ulp. The batch-norm reductions keep one fixed part, the
//!            tree over their 16 lanes in workgroup memory (`lane_tree_sum`).
//! An inexact operand carries its error exactly: |â·b̂ − ab| ≤ |a|e_b + |b|e_a + e_a·e_b;
//! |â/b̂ − a/b| ≤ (e_a + |a/b|·e_b)/(|b| − e_b); e^x̂ is within e^x·(e^{e_x} − 1); act' moves by at
//! most max|act''|·e (for ReLU and leaky ReLU by its whole jump when 0 lies within e of the
//! argument); evaluation bounds are taken at the worse end of [x − e, x + e]. Every rounding is
//! counted with u = 2^-24 plus 2^-53, the f64 reference's own rounding of the same operation, so
//! the bound holds against the reference rather than the exact value. Nothing is scaled to make
//! a case pass. `check` also holds each bound's v against the reference (to 1e-6 of the bound):
//! the bound is the bound of the formula the reference computes.

mod common;

use common::*;
use gradflow::exec::ops_hvp as ops;
use gradflow::reference::bounds::running::*;
use gradflow::reference::hvp::{self as cpu, NormLayout, NORM_STATS_BLOCKS};
use gradflow::spec::Act;

/// Holds the GPU's `got` against the reference's `want` within the bounds `ev`, after checking
/// that the bounds' transcription computes the reference's value; (worst error, worst share).
fn check(what: &str, got: &[f32], want: &[f64], ev: &[Ev]) -> (f64, f64) {
    for (i, (w, b)) in want.iter().zip(ev).enumerate() {
        assert!(
            (w - b.v).abs() <= 1e-6 * b.e + f64::MIN_POSITIVE,
            "{what}[{i}]: the bound's transcription gives {} where the reference gives {w}",
            b.v
        );
    }
    let bound: Vec<f64> = ev.iter().map(|b| b.e).collect();
    assert_within(what, got, want, &bound)
}

/// The worst share of its bound over a test's cases, printed at its end.
#[derive(Default)]
struct Worst(f64, String);

impl Worst {
    fn note(&mut self, what: &str, (err, ratio): (f64, f64)) {
        eprintln!("{what}: worst |error| {err:.2e}, {:.1}% of the bound", 100.0 * ratio);
        if ratio >= self.0 {
            *self = Worst(ratio, what.to_string());
        }
    }

    fn report(&self, test: &str) {
        eprintln!("{test}: worst share of the bound {:.1}% ({})", 100.0 * self.0, self.1);
    }
}

// ---- activation_r_backward, cross_entropy_r, mse_r ---------------------------------------------

/// activation_r_backward: act''(z)·R{z}·g + act'(z)·R{g}, added to `old` under HVP_ACCUMULATE.
fn activation_r_bound(act: Act, z: f32, rz: f32, g: f32, rg: f32, old: Option<f32>) -> Ev {
    let z = input(z);
    let mut terms = vec![act_second(act, z) * input(rz) * input(g), act_grad(act, z) * input(rg)];
    // out[i] + value: one sum of three terms (Mesa moves the addition into the FMA chain).
    terms.extend(old.map(input));
    sum(&terms)
}

#[test]
fn activation_r_backward_matches_the_reference() {
    require_gpu!();
    let mut worst = Worst::default();
    // Lengths around the 256-element workgroup, and one large.
    for (case, len) in [1usize, 2, 37, 255, 256, 257, 300_007].into_iter().enumerate() {
        let mut r = rng(100 + case as u64);
        let z = uniform(&mut r, len, -6.0, 6.0);
        let (rz, g, rg) =
            (uniform(&mut r, len, -1.0, 1.0), uniform(&mut r, len, -1.0, 1.0), uniform(&mut r, len, -1.0, 1.0));
        let old = uniform(&mut r, len, -1.0, 1.0);
        let (z64, rz64, g64, rg64) = (widen(&z), widen(&rz), widen(&g), widen(&rg));
        for act in gradflow::exec::ops::all_activations() {
            for accumulate in [false, true] {
                let mut want = widen(&old);
                cpu::activation_r_backward(&z64, &rz64, &g64, &rg64, act, &mut want, accumulate);
                let mut got = old.clone();
                ops::activation_r_backward(gpu(), &z, &rz, &g, &rg, act, &mut got, accumulate).unwrap();
                let ev: Vec<Ev> = (0..len)
                    .map(|i| activation_r_bound(act, z[i], rz[i], g[i], rg[i], accumulate.then_some(old[i])))
                    .collect();
                let what = format!("activation_r_backward {} len {len} accumulate {accumulate}", act.kind.name());
                worst.note(&what, check(&what, &got, &want, &ev));
            }
        }
    }
    worst.report("activation_r_backward");
}

/// cross_entropy_r for one row, as the kernel forms it: zmax, then s = Σe and Σe·R{o} over the
/// classes with e = exp(o − zmax), p·R{o} = Σe·R{o}/s, and prob·(R{o} − p·R{o})·(1/rows) with
/// prob = exp(o − zmax)/s.
fn cross_entropy_r_bound(o: &[f32], ro: &[f32], rows: usize) -> Vec<Ev> {
    let zmax = input(o.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)));
    let e = |c: usize| sum(&[input(o[c]), -zmax]).exp();
    let s = sum(&(0..o.len()).map(e).collect::<Vec<_>>());
    let p_ro = sum(&(0..o.len()).map(|c| e(c) * input(ro[c])).collect::<Vec<_>>()) / s;
    let inv_rows = exact(1.0) / exact(rows as f64);
    (0..o.len()).map(|c| e(c) / s * sum(&[input(ro[c]), -p_ro]) * inv_rows).collect()
}

#[test]
fn cross_entropy_r_matches_the_reference() {
    require_gpu!();
    let mut worst = Worst::default();
    // Rows around the 64-row workgroup, one class, many classes, a large batch, and logits spread
    // over ±20 (e^(o − max) down to e^-40).
    let cases = [(1usize, 1usize, 8.0f32), (1, 10, 8.0), (2, 3, 8.0), (37, 7, 8.0), (64, 10, 8.0), (65, 10, 8.0)];
    let more = [(3, 1000, 8.0), (4099, 10, 8.0), (257, 13, 20.0)];
    for (case, &(rows, cols, spread)) in cases.iter().chain(&more).enumerate() {
        let mut r = rng(200 + case as u64);
        let o = uniform(&mut r, rows * cols, -spread, spread);
        let ro = uniform(&mut r, rows * cols, -1.0, 1.0);
        // The kernel overwrites whatever `out` holds.
        let old = uniform(&mut r, rows * cols, -1.0, 1.0);
        let mut want = widen(&old);
        cpu::cross_entropy_r(&widen(&o), &widen(&ro), rows, cols, &mut want);
        let mut got = old;
        ops::cross_entropy_r(gpu(), &o, &ro, rows, cols, &mut got).unwrap();
        let row = |t: usize| t * cols..(t + 1) * cols;
        let ev: Vec<Ev> = (0..rows).flat_map(|t| cross_entropy_r_bound(&o[row(t)], &ro[row(t)], rows)).collect();
        let what = format!("cross_entropy_r {rows}x{cols} logits ±{spread}");
        worst.note(&what, check(&what, &got, &want, &ev));
    }
    worst.report("cross_entropy_r");
}

#[test]
fn mse_r_matches_the_reference() {
    require_gpu!();
    let mut worst = Worst::default();
    for (case, len) in [1usize, 2, 37, 256, 257, 100_003].into_iter().enumerate() {
        let mut r = rng(300 + case as u64);
        let ro = uniform(&mut r, len, -1.0, 1.0);
        let old = uniform(&mut r, len, -1.0, 1.0);
        let mut want = widen(&old);
        cpu::mse_r(&widen(&ro), &mut want);
        let mut got = old;
        ops::mse_r(gpu(), &ro, &mut got).unwrap();
        // 2·R{o} / f32(len): f32 holds len exactly below 2^24.
        assert!(len < 1 << 24);
        let ev: Vec<Ev> = ro.iter().map(|&x| exact(2.0) * input(x) / exact(len as f64)).collect();
        let what = format!("mse_r len {len}");
        worst.note(&what, check(&what, &got, &want, &ev));
    }
    worst.report("mse_r");
}

// ---- The batch-norm kernels ----------------------------------------------------------------------

/// [rows, cols] batches: 1 and 2 rows, 16 rows (the lanes) and 17, primes, 1, 16, 17, 33 and 37
/// features (one 16-feature workgroup, just past one and two), 257·1 and 3·86 elements (just past
/// a 256-element workgroup of batchnorm_r_backward_input), and 4099·37 (257 rows per lane).
const NORM_SHAPES: &[(usize, usize)] =
    &[(1, 3), (2, 1), (2, 17), (16, 16), (17, 37), (37, 33), (64, 7), (257, 1), (3, 86), (4099, 37)];

/// One batch norm's inputs, all f32 as the kernels get them: x with per-feature centres and
/// spreads, R{x}, g, R{g}, θ and v holding γ, β at offsets with room around them, `stats` with
/// blocks 0–2 the batch's (K = first row, d = mean − K, inv_std, each rounded to f32) and the
/// rest garbage, and `hv` (the flat product) non-zero.
struct NormCase {
    l: NormLayout,
    x: Vec<f32>,
    rx: Vec<f32>,
    g: Vec<f32>,
    rg: Vec<f32>,
    theta: Vec<f32>,
    v: Vec<f32>,
    stats: Vec<f32>,
    hv: Vec<f32>,
}

impl NormCase {
    fn new(seed: u64, rows: usize, cols: usize, act: Act) -> NormCase {
        let mut r = rng(seed);
        let (m, n) = (rows, cols);
        let centres = uniform(&mut r, n, -4.0, 4.0);
        let spread = uniform(&mut r, n, 0.1, 2.0);
        let noise = uniform(&mut r, m * n, -1.0, 1.0);
        let x: Vec<f32> = (0..m * n).map(|i| centres[i % n] + spread[i % n] * noise[i]).collect();
        let (gamma, beta) = (4, 4 + n + 3);
        let len = beta + n + 5;
        let mut theta = uniform(&mut r, len, -1.0, 1.0);
        for (j, s) in uniform(&mut r, n, -1.0, 1.0).iter().enumerate() {
            theta[gamma + j] = s.signum() * (0.5 + 1.5 * s.abs()); // |γ| in [0.5, 2]
        }
        let mut stats = uniform(&mut r, NORM_STATS_BLOCKS * n, -1.0, 1.0);
        for j in 0..n {
            let col: Vec<f64> = (0..m).map(|i| x[i * n + j] as f64).collect();
            let mean = col.iter().sum::<f64>() / m as f64;
            let var = col.iter().map(|c| (c - mean).powi(2)).sum::<f64>() / m as f64;
            stats[j] = x[j];
            stats[n + j] = (mean - x[j] as f64) as f32;
            stats[2 * n + j] = (1.0 / (var + 1e-5).sqrt()) as f32;
        }
        NormCase {
            l: NormLayout { rows, cols, gamma, beta, act },
            rx: uniform(&mut r, m * n, -1.0, 1.0),
            g: uniform(&mut r, m * n, -1.0, 1.0),
            rg: uniform(&mut r, m * n, -1.0, 1.0),
            v: uniform(&mut r, len, -1.0, 1.0),
            hv: uniform(&mut r, len, -1.0, 1.0),
            x,
            theta,
            stats,
        }
    }

    /// Stats blocks `blocks` set to the f32 rounding of the reference's (the next kernel's input).
    fn set_blocks(&mut self, from: &[f64], blocks: std::ops::Range<usize>) {
        let at = blocks.start * self.l.cols..blocks.end * self.l.cols;
        for (s, &f) in self.stats[at.clone()].iter_mut().zip(&from[at]) {
            *s = f as f32;
        }
    }

    /// The reference's batchnorm_r_forward: (stats after, R{y}).
    fn forward(&self) -> (Vec<f64>, Vec<f64>) {
        let mut stats = widen(&self.stats);
        let mut out = vec![0.0; self.x.len()];
        let (x, rx, th, v) = (widen(&self.x), widen(&self.rx), widen(&self.theta), widen(&self.v));
        cpu::batchnorm_r_forward(&self.l, &x, &rx, &th, &v, &mut stats, &mut out);
        (stats, out)
    }

    /// The reference's batchnorm_r_backward_reduce: (stats after, hv after).
    fn reduce(&self) -> (Vec<f64>, Vec<f64>) {
        let (mut stats, mut hv) = (widen(&self.stats), widen(&self.hv));
        let (x, rx, g, rg) = (widen(&self.x), widen(&self.rx), widen(&self.g), widen(&self.rg));
        cpu::batchnorm_r_backward_reduce(
            &self.l,
            &x,
            &rx,
            &g,
            &rg,
            &widen(&self.theta),
            &widen(&self.v),
            &mut stats,
            &mut hv,
        );
        (stats, hv)
    }

    /// What the kernels read of feature j, exactly.
    fn feature(&self, j: usize) -> FeatureEv {
        let (n, l) = (self.l.cols, &self.l);
        let stat = |b: usize| input(self.stats[b * n + j]);
        FeatureEv {
            shift: stat(0),
            d: stat(1),
            inv_std: stat(2),
            gamma: input(self.theta[l.gamma + j]),
            beta: input(self.theta[l.beta + j]),
            vgamma: input(self.v[l.gamma + j]),
            vbeta: input(self.v[l.beta + j]),
            act: l.act,
        }
    }
}

/// hvp.wgsl's per-element batch-norm helpers, transcribed: x̂, R{x̂}, R{u}, u, du and R{du}'s
/// two terms.
struct FeatureEv {
    shift: Ev,
    d: Ev,
    inv_std: Ev,
    gamma: Ev,
    beta: Ev,
    vgamma: Ev,
    vbeta: Ev,
    act: Act,
}

impl FeatureEv {
    fn xhat(&self, x: f32) -> Ev {
        sum(&[input(x), -self.shift, -self.d]) * self.inv_std
    }

    fn rxhat(&self, rx: f32, xh: Ev, rmu: Ev, rho: Ev) -> Ev {
        sum(&[input(rx), -rmu, -(xh * rho)]) * self.inv_std
    }

    fn ru(&self, xh: Ev, rxh: Ev) -> Ev {
        sum(&[self.vgamma * xh, self.gamma * rxh, self.vbeta])
    }

    fn u(&self, xh: Ev) -> Ev {
        sum(&[self.gamma * xh, self.beta])
    }

    /// du, and R{du} = act''(u)·R{u}·g + act'(u)·R{g} as its two terms (a sum may take them in).
    fn du_pair(&self, xh: Ev, rxh: Ev, g: f32, rg: f32) -> (Ev, [Ev; 2]) {
        let u = self.u(xh);
        let d1 = act_grad(self.act, u);
        (d1 * input(g), [act_second(self.act, u) * self.ru(xh, rxh) * input(g), d1 * input(rg)])
    }
}

/// batchnorm_r_forward's bounds: (R{μ}, ρ) per feature and R{y} per element.
fn batchnorm_r_forward_bound(c: &NormCase) -> (Vec<Ev>, Vec<Ev>, Vec<Ev>) {
    let (m, n) = (c.l.rows, c.l.cols);
    let (mut rmu, mut rho, mut out) = (Vec::new(), Vec::new(), vec![exact(0.0); m * n]);
    for j in 0..n {
        let f = c.feature(j);
        let at = |r: usize| r * n + j;
        let rows = exact(m as f64);
        let mu = lane_tree_sum((0..m).map(|r| vec![input(c.rx[at(r)])])) / rows;
        let p = lane_tree_sum((0..m).map(|r| vec![f.xhat(c.x[at(r)]) * input(c.rx[at(r)])])) / rows;
        for r in 0..m {
            let xh = f.xhat(c.x[at(r)]);
            let ru = f.ru(xh, f.rxhat(c.rx[at(r)], xh, mu, p));
            out[at(r)] = act_grad(c.l.act, f.u(xh)) * ru;
        }
        rmu.push(mu);
        rho.push(p);
    }
    (rmu, rho, out)
}

fn block(stats: &[f64], n: usize, b: usize) -> &[f64] {
    &stats[b * n..(b + 1) * n]
}

#[test]
fn batchnorm_r_forward_matches_the_reference() {
    require_gpu!();
    let mut worst = Worst::default();
    for (case, &(rows, cols)) in NORM_SHAPES.iter().enumerate() {
        for act in gradflow::exec::ops::all_activations() {
            let c = NormCase::new(400 + case as u64, rows, cols, act);
            let (want_stats, want) = c.forward();
            // `out` starts non-zero: the kernel overwrites it.
            let (mut stats, mut got) = (c.stats.clone(), vec![7.0f32; rows * cols]);
            ops::batchnorm_r_forward(gpu(), &c.l, &c.x, &c.rx, &c.theta, &c.v, &mut stats, &mut got).unwrap();
            let (rmu, rho, ev) = batchnorm_r_forward_bound(&c);
            let n = cols;
            let what = format!("batchnorm_r_forward {} {rows}x{cols}", act.kind.name());
            for b in [0, 1, 2, 5, 6, 7, 8] {
                assert_eq!(stats[b * n..(b + 1) * n], c.stats[b * n..(b + 1) * n], "{what}: stats block {b} written");
            }
            let g = |b: usize| stats[b * n..(b + 1) * n].to_vec();
            worst.note(&format!("{what} R{{mu}}"), check(&what, &g(3), block(&want_stats, n, 3), &rmu));
            worst.note(&format!("{what} rho"), check(&what, &g(4), block(&want_stats, n, 4), &rho));
            worst.note(&format!("{what} R{{y}}"), check(&what, &got, &want, &ev));
        }
    }
    worst.report("batchnorm_r_forward");
}

/// batchnorm_r_backward_reduce's bounds: the four sums per feature (stats blocks 5–8), from
/// stats blocks 0–4 as the case holds them.
fn batchnorm_r_backward_reduce_bound(c: &NormCase) -> Vec<[Ev; 4]> {
    let (m, n) = (c.l.rows, c.l.cols);
    (0..n)
        .map(|j| {
            let f = c.feature(j);
            let (rmu, rho) = (input(c.stats[3 * n + j]), input(c.stats[4 * n + j]));
            // Per row, the additive terms of Σdu, Σdu·x̂, ΣR{du}, Σ(R{du}·x̂ + du·R{x̂}).
            let terms: Vec<[Vec<Ev>; 4]> = (0..m)
                .map(|r| {
                    let i = r * n + j;
                    let xh = f.xhat(c.x[i]);
                    let rxh = f.rxhat(c.rx[i], xh, rmu, rho);
                    let (du, rdu) = f.du_pair(xh, rxh, c.g[i], c.rg[i]);
                    [vec![du], vec![du * xh], rdu.to_vec(), vec![sum(&rdu) * xh, du * rxh]]
                })
                .collect();
            std::array::from_fn(|k| lane_tree_sum(terms.iter().map(|t| t[k].clone())))
        })
        .collect()
}

#[test]
fn batchnorm_r_backward_reduce_matches_the_reference() {
    require_gpu!();
    let mut worst = Worst::default();
    for (case, &(rows, cols)) in NORM_SHAPES.iter().enumerate() {
        for act in gradflow::exec::ops::all_activations() {
            let mut c = NormCase::new(500 + case as u64, rows, cols, act);
            let (after_forward, _) = c.forward();
            c.set_blocks(&after_forward, 3..5);
            let (want_stats, want_hv) = c.reduce();
            let (mut stats, mut hv) = (c.stats.clone(), c.hv.clone());
            let (l, n) = (c.l, cols);
            ops::batchnorm_r_backward_reduce(gpu(), &l, &c.x, &c.rx, &c.g, &c.rg, &c.theta, &c.v, &mut stats, &mut hv)
                .unwrap();
            let what = format!("batchnorm_r_backward_reduce {} {rows}x{cols}", act.kind.name());
            assert_eq!(stats[..5 * n], c.stats[..5 * n], "{what}: stats blocks 0-4 written");
            for (t, (a, b)) in hv.iter().zip(&c.hv).enumerate() {
                let ours = (l.gamma..l.gamma + n).contains(&t) || (l.beta..l.beta + n).contains(&t);
                assert!(ours || a == b, "{what}: hv[{t}] is not γ's or β's and was written");
            }
            let sums = batchnorm_r_backward_reduce_bound(&c);
            for k in 0..4 {
                let ev: Vec<Ev> = sums.iter().map(|s| s[k]).collect();
                let got = &stats[(5 + k) * n..(6 + k) * n];
                worst.note(&format!("{what} block {}", 5 + k), check(&what, got, block(&want_stats, n, 5 + k), &ev));
            }
            // The product's entries: R{dβ} = ΣR{du} (block 7), R{dγ} = block 8.
            for (at, k) in [(l.beta, 2), (l.gamma, 3)] {
                let ev: Vec<Ev> = sums.iter().map(|s| s[k]).collect();
                let label = format!("{what} hv at {at}");
                worst.note(&label, check(&label, &hv[at..at + n], &want_hv[at..at + n], &ev));
            }
        }
    }
    worst.report("batchnorm_r_backward_reduce");
}

/// batchnorm_r_backward_input's bound per element, from stats blocks 0–8 as the case holds them,
/// added to `old` under HVP_ACCUMULATE.
fn batchnorm_r_backward_input_bound(c: &NormCase, old: Option<&[f32]>) -> Vec<Ev> {
    let (m, n) = (c.l.rows, c.l.cols);
    let mut out = vec![exact(0.0); m * n];
    for j in 0..n {
        let f = c.feature(j);
        let s = |b: usize| input(c.stats[b * n + j]);
        let rows = exact(m as f64);
        let (gamma, vgamma) = (f.gamma, f.vgamma);
        let a = gamma * s(5) / rows;
        let b = gamma * s(6) / rows;
        let ra = sum(&[gamma * s(7), vgamma * s(5)]) / rows;
        let rb = sum(&[gamma * s(8), vgamma * s(6)]) / rows;
        for r in 0..m {
            let i = r * n + j;
            let xh = f.xhat(c.x[i]);
            let rxh = f.rxhat(c.rx[i], xh, s(3), s(4));
            let (du, rdu) = f.du_pair(xh, rxh, c.g[i], c.rg[i]);
            let dx = sum(&[gamma * du, -a, -(xh * b)]) * f.inv_std;
            // R{dx̂} = γ·R{du} + v_γ·du is used once: a sum may take its terms in.
            let inner = sum(&[gamma * sum(&rdu), vgamma * du, -ra, -(rxh * b), -(xh * rb)]);
            let mut terms = vec![-s(4) * f.inv_std * dx, inner * f.inv_std];
            terms.extend(old.map(|o| input(o[i])));
            out[i] = sum(&terms);
        }
    }
    out
}

#[test]
fn batchnorm_r_backward_input_matches_the_reference() {
    require_gpu!();
    let mut worst = Worst::default();
    for (case, &(rows, cols)) in NORM_SHAPES.iter().enumerate() {
        for act in gradflow::exec::ops::all_activations() {
            let mut c = NormCase::new(600 + case as u64, rows, cols, act);
            let (after_forward, _) = c.forward();
            c.set_blocks(&after_forward, 3..5);
            let (after_reduce, _) = c.reduce();
            c.set_blocks(&after_reduce, 5..9);
            let old = uniform(&mut rng(700 + case as u64), rows * cols, -1.0, 1.0);
            let (x, rx, g, rg, th, v) =
                (widen(&c.x), widen(&c.rx), widen(&c.g), widen(&c.rg), widen(&c.theta), widen(&c.v));
            for accumulate in [false, true] {
                let mut want = widen(&old);
                cpu::batchnorm_r_backward_input(
                    &c.l,
                    &x,
                    &rx,
                    &g,
                    &rg,
                    &th,
                    &v,
                    &widen(&c.stats),
                    &mut want,
                    accumulate,
                );
                let mut got = old.clone();
                ops::batchnorm_r_backward_input(
                    gpu(),
                    &c.l,
                    &c.x,
                    &c.rx,
                    &c.g,
                    &c.rg,
                    &c.theta,
                    &c.v,
                    &c.stats,
                    &mut got,
                    accumulate,
                )
                .unwrap();
                let ev = batchnorm_r_backward_input_bound(&c, accumulate.then_some(&old[..]));
                let what =
                    format!("batchnorm_r_backward_input {} {rows}x{cols} accumulate {accumulate}", act.kind.name());
                worst.note(&what, check(&what, &got, &want, &ev));
            }
        }
    }
    worst.report("batchnorm_r_backward_input");
}
