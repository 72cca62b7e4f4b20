//! ResNets as forward Euler (issue 22 §3): the engine's residual network with h = T/L folded into
//! each block's last Linear is the Euler recursion, and it converges to the ODE at first order.

use gradflow::course::resnet_ode::{convergence, engine_forward, euler, loglog_slope, Field};

const D: usize = 4;
const HORIZON: f64 = 2.0;

/// Three starting points, rows of a batch.
fn starts() -> Vec<f64> {
    vec![1.0, -0.5, 0.3, 0.8, -1.2, 0.4, 0.9, -0.1, 0.2, 0.7, -0.6, -1.0]
}

/// The engine's f32 network and the f64 recursion agree to f32 rounding: each of L blocks adds
/// a few ulps (~6e-8 relative) to states of size O(1), so 1e-5 at L = 64 is a hundredfold margin
/// that still fails on any wrong weight (one Euler step of size h = 1/32 moves x by ~3e-2).
#[test]
fn the_engine_residual_net_is_the_euler_recursion() {
    let field = Field::seeded(D, 7);
    let x0 = starts();
    let blocks = 64;
    let engine = engine_forward(&field, &x0, HORIZON, blocks).unwrap();
    for (row, x) in x0.chunks(D).enumerate() {
        let ours = euler(&field, x, HORIZON, blocks);
        for (a, b) in engine[row * D..(row + 1) * D].iter().zip(&ours[blocks]) {
            assert!((a - b).abs() < 1e-5, "row {row}: engine {a}, Euler {b}");
        }
    }
}

/// Euler's global error is e(h) = C·h + D·h² + …, so the local log-log slope is
/// 1 + D·h/C + O(h²) and the ratio e(2h)/e(h) is 2 + D·h/C·… → 2. Over L = 32…256
/// (h ≤ T/32 = 1/16) the correction D·h/C is a few percent when C and D are of one order (the
/// field and its derivatives are O(1)), so a ±0.1 band on the slope and ±0.2 on the last ratio
/// hold the first-order claim while excluding order 2 (slope 2, ratio 4) and order ½.
#[test]
fn euler_blocks_converge_to_the_ode_at_first_order() {
    let field = Field::seeded(D, 7);
    let rows = convergence(&field, &starts(), HORIZON, &[4, 8, 16, 32, 64, 128, 256]).unwrap();
    for r in &rows {
        eprintln!("L {:>4}  h {:.5}  error {:.4e}", r.blocks, r.h, r.error);
    }
    let slope = loglog_slope(&rows[3..]);
    assert!((0.9..=1.1).contains(&slope), "slope over L = 32..256 is {slope}");
    let ratio = rows[5].error / rows[6].error;
    assert!((1.8..=2.2).contains(&ratio), "error(L=128)/error(L=256) = {ratio}");
    // The error falls at every doubling (monotone convergence from L = 4 on).
    assert!(rows.windows(2).all(|w| w[1].error < w[0].error), "{rows:?}");
}
