// The R-operator's own kernels (Pearlmutter 1994): Hessian-vector products carry R{·}, the
// derivative of every value along a parameter direction v, through the forward pass and
// differentiate the backward pass the same way. The products and the plain gradient reuse the
// training kernels (matmul.wgsl, activation.wgsl, batchnorm.wgsl, loss.wgsl); these are the
// terms that have no training counterpart. Each has a function of the same name in
// src/reference/hvp.rs computing what it computes, and tests/hvp_kernels.rs holds one against
// the other.

struct HvpParams {
    len: u32,            // elements (element-wise kernels)
    rows: u32,
    cols: u32,
    act: u32,            // the pipeline's ACT (common.wgsl codes)
    slope: f32,          // leaky ReLU negative slope
    flags: u32,          // the pipeline's HVP_FLAGS
    gamma_offset: u32,   // batch norm: γ, β in the parameter and direction buffers (and hv)
    beta_offset: u32,
}

const HVP_ACCUMULATE: u32 = 1u;   // add the result to `out` (a value with two consumers)

override ACT: u32 = 0u;
override HVP_FLAGS: u32 = 0u;

@group(0) @binding(0) var<storage, read> x: array<f32>;        // z, x or logits
@group(0) @binding(1) var<storage, read> rx: array<f32>;       // R{x}
@group(0) @binding(2) var<storage, read> g: array<f32>;        // ∂L/∂y
@group(0) @binding(3) var<storage, read> rg: array<f32>;       // R{∂L/∂y}
@group(0) @binding(4) var<storage, read> theta: array<f32>;    // parameters
@group(0) @binding(5) var<storage, read> v: array<f32>;        // the direction
@group(0) @binding(6) var<storage, read_write> stats: array<f32>;   // batch norm, see below
@group(0) @binding(7) var<storage, read_write> out: array<f32>;
@group(0) @binding(8) var<uniform> p: HvpParams;

fn store(i: u32, value: f32) {
    if ((HVP_FLAGS & HVP_ACCUMULATE) != 0u) {
        out[i] = out[i] + value;
    } else {
        out[i] = value;
    }
}

// R{act'(z)·g} = act''(z)·R{z}·g + act'(z)·R{g}: the R-value of an activation's backward pass.
@compute @workgroup_size(256, 1, 1)
fn activation_r_backward(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let i = flat_group(wg, nwg) * 256u + li;
    if (i >= p.len) {
        return;
    }
    let z = x[i];
    store(i, activate_second(z, ACT) * rx[i] * g[i] + activate_grad(z, ACT, p.slope) * rg[i]);
}

// Softmax cross-entropy, mean over rows: R{(softmax(o) − onehot)/m} = p ⊙ (R{o} − p·R{o}) / m.
@compute @workgroup_size(64, 1, 1)
fn cross_entropy_r(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let r = flat_group(wg, nwg) * 64u + li;
    if (r >= p.rows) {
        return;
    }
    let base = r * p.cols;
    var zmax = x[base];
    for (var c = 1u; c < p.cols; c++) {
        zmax = max(zmax, x[base + c]);
    }
    var s = 0.0;
    var p_ro = 0.0;
    for (var c = 0u; c < p.cols; c++) {
        let e = exp(x[base + c] - zmax);
        s += e;
        p_ro += e * rx[base + c];
    }
    p_ro = p_ro / s;
    let inv_rows = 1.0 / f32(p.rows);
    for (var c = 0u; c < p.cols; c++) {
        let prob = exp(x[base + c] - zmax) / s;
        out[base + c] = prob * (rx[base + c] - p_ro) * inv_rows;
    }
}

// Mean squared error over every element: R{2(o − t)/(m·c)} = 2·R{o}/(m·c).
@compute @workgroup_size(256, 1, 1)
fn mse_r(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let i = flat_group(wg, nwg) * 256u + li;
    if (i >= p.len) {
        return;
    }
    out[i] = 2.0 * rx[i] / f32(p.len);
}

// Batch norm (training mode). `stats` holds, per feature j of n, in blocks of n:
//   0 K, 1 d, 2 inv_std          (batchnorm_stats: mean = K + d, x̂ = ((x − K) − d)·inv_std)
//   3 R{μ}, 4 ρ = mean(x̂·R{x})  (batchnorm_r_forward; R{σ}/σ = ρ·inv_std)
//   5 Σdu, 6 Σdu·x̂, 7 ΣR{du}, 8 Σ(R{du}·x̂ + du·R{x̂})   (batchnorm_r_backward_reduce)
// with u = γx̂ + β, du = act'(u)·g. A workgroup owns 16 features; its 16 lanes sum rows lane,
// lane + 16, … and a fixed tree adds them, as batchnorm.wgsl does.
const FEATURES: u32 = 16u;
const LANES: u32 = 16u;

var<workgroup> part: array<vec4<f32>, 256>;   // [lane][feature]

fn reduce_lanes(lane: u32, f: u32) {
    for (var half = LANES / 2u; half > 0u; half /= 2u) {
        workgroupBarrier();
        if (lane < half) {
            part[lane * FEATURES + f] += part[(lane + half) * FEATURES + f];
        }
    }
    workgroupBarrier();
}

fn stat(block: u32, j: u32) -> f32 {
    return stats[block * p.cols + j];
}

fn xhat_at(i: u32, j: u32) -> f32 {
    return ((x[i] - stat(0u, j)) - stat(1u, j)) * stat(2u, j);
}

// R{x̂} = (R{x} − R{μ} − x̂·ρ)·inv_std.
fn rxhat_at(i: u32, j: u32, xh: f32) -> f32 {
    return (rx[i] - stat(3u, j) - xh * stat(4u, j)) * stat(2u, j);
}

// R{u} = v_γ·x̂ + γ·R{x̂} + v_β.
fn ru_of(j: u32, xh: f32, rxh: f32) -> f32 {
    return v[p.gamma_offset + j] * xh + theta[p.gamma_offset + j] * rxh + v[p.beta_offset + j];
}

// R{μ} and ρ per feature, then R{y} = act'(u)·R{u} for every row into `out`.
@compute @workgroup_size(16, 16, 1)
fn batchnorm_r_forward(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let n = p.cols;
    let f = lid.x;
    let lane = lid.y;
    let j = flat_group(wg, nwg) * FEATURES + f;
    let live = j < n;
    var sums = vec4<f32>(0.0);
    if (live) {
        for (var r = lane; r < p.rows; r += LANES) {
            let i = r * n + j;
            sums += vec4<f32>(rx[i], xhat_at(i, j) * rx[i], 0.0, 0.0);
        }
    }
    part[lane * FEATURES + f] = sums;
    reduce_lanes(lane, f);
    if (live && lane == 0u) {
        stats[3u * n + j] = part[f].x / f32(p.rows);
        stats[4u * n + j] = part[f].y / f32(p.rows);
    }
    storageBarrier();
    workgroupBarrier();
    if (!live) {
        return;
    }
    let gamma = theta[p.gamma_offset + j];
    let beta = theta[p.beta_offset + j];
    for (var r = lane; r < p.rows; r += LANES) {
        let i = r * n + j;
        let xh = xhat_at(i, j);
        let ru = ru_of(j, xh, rxhat_at(i, j, xh));
        out[i] = activate_grad(gamma * xh + beta, ACT, p.slope) * ru;
    }
}

// du and R{du} at row index i.
fn du_pair(i: u32, j: u32, xh: f32, rxh: f32) -> vec2<f32> {
    let u = theta[p.gamma_offset + j] * xh + theta[p.beta_offset + j];
    let d1 = activate_grad(u, ACT, p.slope);
    let du = d1 * g[i];
    let rdu = activate_second(u, ACT) * ru_of(j, xh, rxh) * g[i] + d1 * rg[i];
    return vec2<f32>(du, rdu);
}

// The four sums per feature into stats blocks 5–8, and the Hessian-vector product's γ and β
// entries, R{dγ} = Σ(R{du}·x̂ + du·R{x̂}) and R{dβ} = ΣR{du}, into `out` (the flat hv buffer).
@compute @workgroup_size(16, 16, 1)
fn batchnorm_r_backward_reduce(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let n = p.cols;
    let f = lid.x;
    let lane = lid.y;
    let j = flat_group(wg, nwg) * FEATURES + f;
    var sums = vec4<f32>(0.0);
    if (j < n) {
        for (var r = lane; r < p.rows; r += LANES) {
            let i = r * n + j;
            let xh = xhat_at(i, j);
            let rxh = rxhat_at(i, j, xh);
            let d = du_pair(i, j, xh, rxh);
            sums += vec4<f32>(d.x, d.x * xh, d.y, d.y * xh + d.x * rxh);
        }
    }
    part[lane * FEATURES + f] = sums;
    reduce_lanes(lane, f);
    if (j < n && lane == 0u) {
        let s = part[f];
        stats[5u * n + j] = s.x;
        stats[6u * n + j] = s.y;
        stats[7u * n + j] = s.z;
        stats[8u * n + j] = s.w;
        out[p.beta_offset + j] = s.z;
        out[p.gamma_offset + j] = s.w;
    }
}

// R{dx} with dx = (dx̂ − A − x̂·B)·inv_std, dx̂ = γ·du, A = mean(dx̂), B = mean(dx̂·x̂):
// R{dx} = −ρ·inv_std·dx + (R{dx̂} − R{A} − R{x̂}·B − x̂·R{B})·inv_std.
@compute @workgroup_size(256, 1, 1)
fn batchnorm_r_backward_input(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let i = flat_group(wg, nwg) * 256u + li;
    if (i >= p.rows * p.cols) {
        return;
    }
    let n = p.cols;
    let j = i % n;
    let m = f32(p.rows);
    let gamma = theta[p.gamma_offset + j];
    let vgamma = v[p.gamma_offset + j];
    let inv_std = stat(2u, j);
    let xh = xhat_at(i, j);
    let rxh = rxhat_at(i, j, xh);
    let d = du_pair(i, j, xh, rxh);
    let a = gamma * stat(5u, j) / m;
    let b = gamma * stat(6u, j) / m;
    let ra = (gamma * stat(7u, j) + vgamma * stat(5u, j)) / m;
    let rb = (gamma * stat(8u, j) + vgamma * stat(6u, j)) / m;
    let dx = (gamma * d.x - a - xh * b) * inv_std;
    let rdxh = gamma * d.y + vgamma * d.x;
    store(i, -stat(4u, j) * inv_std * dx + (rdxh - ra - rxh * b - xh * rb) * inv_std);
}
