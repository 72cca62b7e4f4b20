//! The spectrum toolkit against exact answers: Jacobi against matrices of known spectrum, Lanczos'
//! quadrature against exact moments, Lanczos' extremes and the SLQ index against a full
//! eigendecomposition, and the random-matrix baseline against Wigner's semicircle.
//!
//! Tolerances: Jacobi and Lanczos (with full reorthogonalisation) are backward stable, so
//! eigenvalues carry errors of c·n·u·‖A‖ (Weyl), c ≤ 100 for the sweeps and reorthogonalisations
//! here; stochastic estimates are held to 4 standard deviations of their estimator, derived in
//! each test.

use gradflow::spectrum::random_matrix::standard_normal;
use gradflow::spectrum::{
    gaussian_symmetric, lanczos, lanczos_async, semicircle_density, stochastic_lanczos_quadrature,
    stochastic_lanczos_quadrature_async, symmetric_eigen, AsyncSymmetricOperator, DenseSymmetric, Lanczos,
    SymmetricOperator,
};
use rand::{rngs::StdRng, SeedableRng};

const U: f64 = f64::EPSILON / 2.0;

fn frobenius(a: &[f64]) -> f64 {
    a.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// Q·diag(λ)·Qᵀ with Q a product of two random Householder reflections: a matrix whose
/// eigenvalues are exactly (to rounding) `lambda`.
fn with_spectrum(lambda: &[f64], seed: u64) -> DenseSymmetric {
    let n = lambda.len();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut a = vec![0.0; n * n];
    for i in 0..n {
        a[i * n + i] = lambda[i];
    }
    for _ in 0..2 {
        let mut h: Vec<f64> = (0..n).map(|_| standard_normal(&mut rng)).collect();
        let s = h.iter().map(|x| x * x).sum::<f64>().sqrt();
        h.iter_mut().for_each(|x| *x /= s);
        // A ← H·A·H with H = I − 2hhᵀ.
        for _side in 0..2 {
            let mut out = a.clone();
            // Left multiply then (by symmetry) right multiply.
            let ha: Vec<f64> = (0..n).map(|c| (0..n).map(|k| h[k] * a[k * n + c]).sum()).collect();
            for r in 0..n {
                for c in 0..n {
                    out[r * n + c] = a[r * n + c] - 2.0 * h[r] * ha[c];
                }
            }
            a = (0..n * n).map(|k| out[(k % n) * n + k / n]).collect(); // transpose: next pass multiplies the other side
        }
    }
    DenseSymmetric { n, a }
}

#[test]
fn jacobi_recovers_known_spectra_and_orthonormal_eigenvectors() {
    for n in [1usize, 2, 7, 50, 131] {
        let lambda: Vec<f64> = (0..n).map(|i| ((i * 37 % n) as f64 - n as f64 / 3.0) / 7.0).collect();
        let m = with_spectrum(&lambda, n as u64);
        let (values, vectors) = symmetric_eigen(&m.a, n);
        let mut want = lambda.clone();
        want.sort_by(f64::total_cmp);
        let norm = frobenius(&m.a);
        let tol = 100.0 * n as f64 * U * norm.max(1.0);
        for (got, want) in values.iter().zip(&want) {
            assert!((got - want).abs() <= tol, "n = {n}: eigenvalue {got} vs {want} (tol {tol:e})");
        }
        let mut op = DenseSymmetric { n, a: m.a.clone() };
        let mut av = vec![0.0; n];
        for (j, v) in vectors.iter().enumerate() {
            op.apply(v, &mut av).unwrap();
            let residual = av.iter().zip(v).map(|(a, b)| (a - values[j] * b).powi(2)).sum::<f64>().sqrt();
            assert!(residual <= tol, "n = {n}: residual {residual:e} of eigenpair {j}");
            for (k, w) in vectors.iter().enumerate() {
                let d: f64 = v.iter().zip(w).map(|(a, b)| a * b).sum();
                let want = if j == k { 1.0 } else { 0.0 };
                assert!((d - want).abs() <= 100.0 * n as f64 * U, "n = {n}: vᵀw = {d} for ({j}, {k})");
            }
        }
    }
}

/// m Lanczos steps are an m-point Gauss quadrature: Σ τⱼ² θⱼᵖ = qᵀAᵖq exactly for p ≤ 2m − 1.
#[test]
fn lanczos_quadrature_integrates_low_degree_moments_exactly() {
    let n = 120;
    let mut a = gaussian_symmetric(n, 3);
    let mut rng = StdRng::seed_from_u64(4);
    let v: Vec<f64> = (0..n).map(|_| standard_normal(&mut rng)).collect();
    let m = 5;
    let (theta, first) = lanczos(&mut a, &v, m).unwrap().ritz();
    let q: Vec<f64> = {
        let s = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        v.iter().map(|x| x / s).collect()
    };
    let mut apq = q.clone();
    let mut tmp = vec![0.0; n];
    for p in 0..2 * m {
        let exact: f64 = q.iter().zip(&apq).map(|(a, b)| a * b).sum();
        let quad: f64 = theta.iter().zip(&first).map(|(t, c)| c * c * t.powi(p as i32)).sum();
        // ‖A‖₂ ≤ 3 for this matrix; p products and the Lanczos recurrence each add ~n·u·‖A‖ᵖ.
        let tol = 100.0 * n as f64 * U * 3f64.powi(p as i32);
        assert!((exact - quad).abs() <= tol, "p = {p}: quadrature {quad} vs qᵀAᵖq {exact}");
        a.apply(&apq, &mut tmp).unwrap();
        apq.copy_from_slice(&tmp);
    }
    // Degree 2m is the first the quadrature is not exact for.
    let exact: f64 = q.iter().zip(&apq).map(|(a, b)| a * b).sum();
    let quad: f64 = theta.iter().zip(&first).map(|(t, c)| c * c * t.powi(2 * m as i32)).sum();
    assert!((exact - quad).abs() > 1e-6, "p = 2m should not be exact ({exact} vs {quad})");
}

#[test]
fn lanczos_extremes_and_the_slq_index_match_a_full_eigendecomposition() {
    // A bulk on [−1, 1] and five separated outliers, like a Hessian's few large curvatures.
    let n = 200;
    let mut lambda: Vec<f64> = (0..n - 5).map(|i| -1.0 + 2.0 * i as f64 / (n - 6) as f64 + 0.1).collect();
    lambda.extend([-5.0, -4.0, 3.0, 4.0, 6.0]);
    let mut op = with_spectrum(&lambda, 9);
    let (exact, _) = symmetric_eigen(&op.a, n);
    let tol = 100.0 * n as f64 * U * frobenius(&op.a);
    let mut rng = StdRng::seed_from_u64(10);
    let start: Vec<f64> = (0..n).map(|_| standard_normal(&mut rng)).collect();

    // Every step: T is similar to A, every Ritz value an eigenvalue.
    let full = lanczos(&mut op, &start, n).unwrap();
    let (ritz, _) = full.ritz();
    assert_eq!(ritz.len(), n);
    for (r, e) in ritz.iter().zip(&exact) {
        assert!((r - e).abs() <= tol, "full Lanczos: {r} vs {e}");
    }

    // 40 steps: the separated outliers converge (Kaniel–Paige: the error falls like
    // T_m(1 + 2·gap/spread)⁻², below 1e-20 here), the bulk does not.
    let (low, high) = lanczos(&mut op, &start, 40).unwrap().extremes(3);
    let (want_low, want_high) = (&exact[..3], &exact[n - 3..]);
    for (g, w) in low[..2].iter().zip(&want_low[..2]).chain(high.iter().zip(want_high)) {
        assert!((g - w).abs() <= 1e-9, "40-step extreme {g} vs {w}");
    }

    // The index: exact fraction of negative eigenvalues against SLQ's mass below 0. With P probes
    // the estimator's standard deviation is about √(2f(1−f)/(nP)) (a Rademacher quadratic form),
    // plus the quadrature's own error at the jump, at most the weight of the node nearest 0 (~1/m).
    let index = exact.iter().filter(|&&x| x < 0.0).count() as f64 / n as f64;
    let (probes, steps) = (20, 60);
    let density = stochastic_lanczos_quadrature(&mut op, probes, steps, 11).unwrap();
    let estimate = density.fraction_below(0.0);
    let sd = (2.0 * index * (1.0 - index) / (n * probes) as f64).sqrt();
    let bound = 4.0 * sd + 1.0 / steps as f64;
    assert!((estimate - index).abs() <= bound, "index {index} vs SLQ {estimate} (bound {bound})");
    eprintln!("index {index:.3}, SLQ estimate {estimate:.3} (bound ±{bound:.3})");
    assert!((density.weights.iter().sum::<f64>() - 1.0).abs() <= 1e-12);
}

/// A dense matrix whose every product is awaited: the future is pending once (as a browser's
/// read-back is until the page yields) before it returns A·x.
struct Awaited(DenseSymmetric);

/// Pending at its first poll (waking its task at once), ready at the second.
struct YieldOnce(bool);

impl std::future::Future for YieldOnce {
    type Output = ();
    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        if self.0 {
            return std::task::Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

impl AsyncSymmetricOperator for Awaited {
    fn dim(&self) -> usize {
        self.0.n
    }

    async fn apply_async(&mut self, x: &[f64]) -> gradflow::error::Result<Vec<f64>> {
        YieldOnce(false).await;
        let mut y = vec![0.0; self.0.n];
        self.0.apply(x, &mut y)?;
        Ok(y)
    }
}

fn same_run(a: &Lanczos, b: &Lanczos) -> bool {
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    bits(&a.alpha) == bits(&b.alpha)
        && bits(&a.beta) == bits(&b.beta)
        && a.basis.len() == b.basis.len()
        && a.basis.iter().zip(&b.basis).all(|(p, q)| bits(p) == bits(q))
}

#[test]
fn awaited_lanczos_and_slq_match_the_blocking_drivers_bit_for_bit() {
    // Both drivers run one recurrence (`LanczosSteps`) on the same products: identical bits.
    let n = 60;
    let lambda: Vec<f64> = (0..n).map(|i| -2.0 + 5.0 * (i as f64 / (n - 1) as f64).powi(3)).collect();
    let mut op = with_spectrum(&lambda, 21);
    let mut awaited = Awaited(DenseSymmetric { n, a: op.a.clone() });
    let mut rng = StdRng::seed_from_u64(22);
    let start: Vec<f64> = (0..n).map(|_| standard_normal(&mut rng)).collect();
    for steps in [0, 1, 7, n, n + 5] {
        let blocking = lanczos(&mut op, &start, steps).unwrap();
        let waited = gradflow::device::wait("test Lanczos", lanczos_async(&mut awaited, &start, steps)).unwrap();
        assert_eq!(blocking.steps(), steps.min(n), "{steps} steps asked");
        assert!(same_run(&blocking, &waited), "{steps} steps: awaited Lanczos differs from blocking");
    }
    // Every step of the full run: T is similar to A, so its Ritz values are A's eigenvalues to
    // the backward-stable c·n·u·‖A‖_F (c ≤ 100, as above).
    let full = gradflow::device::wait("test Lanczos", lanczos_async(&mut awaited, &start, n)).unwrap();
    let tol = 100.0 * n as f64 * U * frobenius(&op.a);
    let mut sorted = lambda.clone();
    sorted.sort_by(f64::total_cmp);
    for (r, e) in full.ritz().0.iter().zip(&sorted) {
        assert!((r - e).abs() <= tol, "awaited full Lanczos: {r} vs {e}");
    }

    let blocking = stochastic_lanczos_quadrature(&mut op, 4, 12, 5).unwrap();
    let waited =
        gradflow::device::wait("test SLQ", stochastic_lanczos_quadrature_async(&mut awaited, 4, 12, 5)).unwrap();
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&blocking.nodes), bits(&waited.nodes));
    assert_eq!(bits(&blocking.weights), bits(&waited.weights));
    assert_eq!(blocking.nodes.len(), 4 * 12);
}

#[test]
fn lanczos_stops_at_an_invariant_subspace_with_exact_eigenvalues() {
    // Three distinct eigenvalues: the Krylov space of any start vector has dimension ≤ 3, so the
    // driver stops after 3 steps (β₃ ≈ 0) and T's eigenvalues are exactly the three, to c·n·u·‖A‖_F.
    let n = 30;
    let lambda: Vec<f64> = (0..n).map(|i| [-1.5, 0.5, 4.0][i % 3]).collect();
    let mut op = with_spectrum(&lambda, 31);
    let mut awaited = Awaited(DenseSymmetric { n, a: op.a.clone() });
    let start: Vec<f64> = (0..n).map(|i| 1.0 + i as f64 / n as f64).collect();
    let blocking = lanczos(&mut op, &start, 20).unwrap();
    let waited = gradflow::device::wait("test Lanczos", lanczos_async(&mut awaited, &start, 20)).unwrap();
    assert!(same_run(&blocking, &waited));
    assert_eq!(blocking.steps(), 3, "Lanczos should stop at the invariant subspace");
    let tol = 100.0 * n as f64 * U * frobenius(&op.a);
    for (r, e) in blocking.ritz().0.iter().zip([-1.5, 0.5, 4.0]) {
        assert!((r - e).abs() <= tol, "invariant-subspace Ritz value {r} vs {e}");
    }
}

/// H²'s trace and Frobenius norm squared (= tr H⁴) by one dense product.
fn traces_2_and_4(h: &DenseSymmetric) -> (f64, f64) {
    let n = h.n;
    let mut h2 = vec![0.0; n * n];
    for i in 0..n {
        for k in 0..n {
            let a = h.a[i * n + k];
            let row = &h.a[k * n..(k + 1) * n];
            for (o, b) in h2[i * n..(i + 1) * n].iter_mut().zip(row) {
                *o += a * b;
            }
        }
    }
    let t2 = (0..n).map(|i| h2[i * n + i]).sum::<f64>();
    let t4 = h2.iter().map(|x| x * x).sum::<f64>();
    (t2, t4)
}

#[test]
fn gaussian_symmetric_matrices_follow_the_semicircle() {
    let n = 1000;
    let mut h = gaussian_symmetric(n, 21);
    // The exact moments of this matrix against the semicircle's 1 and 2. For this ensemble
    // E tr(H²)/n = 1 + 1/n and E tr(H⁴)/n = 2 + O(1/n); linear statistics of Wigner matrices
    // fluctuate by O(1/n), so 10/n covers both.
    let (t2, t4) = traces_2_and_4(&h);
    let (m2, m4) = (t2 / n as f64, t4 / n as f64);
    assert!((m2 - 1.0).abs() <= 10.0 / n as f64, "tr(H²)/n = {m2}");
    assert!((m4 - 2.0).abs() <= 10.0 / n as f64, "tr(H⁴)/n = {m4}");

    // SLQ through the same code as the Hessian: its moments against the exact ones. For P
    // Rademacher probes, (1/n)·vᵀBv has standard deviation ≤ √(2‖B‖_F²/P)/n; ‖H²‖_F² = tr H⁴ ≈ 2n
    // and ‖H⁴‖_F² = tr H⁸ ≈ 14n (Catalan numbers).
    let (probes, steps) = (20, 80);
    let density = stochastic_lanczos_quadrature(&mut h, probes, steps, 22).unwrap();
    let sd = |frob2_over_n: f64| (2.0 * frob2_over_n * n as f64 / probes as f64).sqrt() / n as f64;
    let (s2, s4) = (density.moment(2), density.moment(4));
    assert!((s2 - m2).abs() <= 4.0 * sd(2.0), "SLQ second moment {s2} vs {m2}");
    assert!((s4 - m4).abs() <= 4.0 * sd(14.0), "SLQ fourth moment {s4} vs {m4}");
    // By symmetry half the eigenvalues are negative: the index of a random critical point.
    let index = density.fraction_below(0.0);
    assert!((index - 0.5).abs() <= 4.0 * (0.5 / (n * probes) as f64).sqrt() + 1.0 / steps as f64, "index {index}");

    // The edge: the extreme Ritz values of one probe sit at ±2 within the Tracy–Widom scale
    // n^(−2/3) ≈ 0.01 (5 of them) and no mass lies beyond ±2.1.
    let (low, high) = lanczos(&mut h, &vec![1.0; n], steps).unwrap().extremes(1);
    let edge = 5.0 * (n as f64).powf(-2.0 / 3.0);
    assert!((high[0] - 2.0).abs() <= edge && (low[0] + 2.0).abs() <= edge, "edges {} and {}", low[0], high[0]);
    let outside: f64 = density.nodes.iter().zip(&density.weights).filter(|(x, _)| x.abs() > 2.1).map(|(_, w)| w).sum();
    assert!(outside < 1e-3, "mass beyond ±2.1: {outside}");

    // And the smoothed density against the semicircle: L1 distance on a grid, the semicircle
    // smoothed by the same Gaussian (σ = 0.15) so only the estimator's error remains.
    let xs: Vec<f64> = (0..=120).map(|i| -3.0 + 6.0 * i as f64 / 120.0).collect();
    let sigma = 0.15;
    let got = density.smoothed(&xs, sigma);
    let fine: Vec<f64> = (0..4000).map(|i| -2.0 + 4.0 * (i as f64 + 0.5) / 4000.0).collect();
    let want: Vec<f64> = xs
        .iter()
        .map(|x| {
            fine.iter()
                .map(|y| {
                    semicircle_density(*y) * (4.0 / 4000.0) * (-0.5 * ((x - y) / sigma).powi(2)).exp()
                        / (sigma * (2.0 * std::f64::consts::PI).sqrt())
                })
                .sum()
        })
        .collect();
    let dx = 6.0 / 120.0;
    let l1: f64 = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).sum::<f64>() * dx;
    // The smoothed estimate at x is (1/n)·tr φ(x − H) by Hutchinson, so its standard deviation is
    // ≤ √(2·Σᵢ φ(x − λᵢ)²/P)/n ≈ √(ρ_σ(x)/(2σ√π·n·P))·√2 with ∫φ² = 1/(2σ√π); four of them,
    // integrated over the grid, bound the L1 distance (the m = 80 quadrature of a kernel wider than
    // the node spacing and the O(1/n) finite-size shift are far smaller).
    let bound: f64 = want
        .iter()
        .map(|rho| 4.0 * (rho / (sigma * std::f64::consts::PI.sqrt() * (n * probes) as f64)).sqrt() * dx)
        .sum();
    eprintln!("semicircle: tr(H²)/n {m2:.4}, tr(H⁴)/n {m4:.4}, SLQ {s2:.4} / {s4:.4}, index {index:.3}, edges {:.3} {:.3}, L1 {l1:.4} (bound {bound:.4})", low[0], high[0]);
    assert!(l1 <= bound, "L1 distance to the smoothed semicircle {l1} (bound {bound})");
}
