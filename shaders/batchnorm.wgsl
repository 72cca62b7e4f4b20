// Batch normalisation over the rows of an [m, n] batch (torch.nn.BatchNorm1d), with the
// activation after it fused: y = act(γ·x̂ + β), the course's H = max(0, γẐ + β).
//
// Statistics are per feature and deterministic: a workgroup owns 16 features, its 16 row lanes
// each sum rows lane, lane + 16, … in order, and the 16 partial sums are added by a fixed tree.
// The mean is the shift K = x[0, j] plus the mean of x − K (the shifted-data algorithm), and the
// variance a second pass over (x − K) − d, so a mean of 10⁴ with a spread of 1 loses nothing
// to cancellation. x̂ is formed as ((x − K) − d)·inv_std and never through a rounded f32 mean.

struct BnParams {
    rows: u32,
    cols: u32,
    gamma_offset: u32,   // γ and β in the flat parameter buffer; dγ, dβ at the same offsets in grads
    beta_offset: u32,
    mean_offset: u32,    // running mean and variance in the flat running buffer
    var_offset: u32,
    flags: u32,          // BN_* below
    act: u32,            // activation after the norm (common.wgsl codes)
    slope: f32,
    eps: f32,
    keep: f32,           // running ← keep·running + take·batch; keep = 1 − take rounded once on the host
    take: f32,
    // A batch of models (workgroup z is the model), each binding's slice its model stride after
    // the previous model's. `models` (0 or 1: one) is the host's, for the bounds check and grid.
    models: u32,
    x_model_stride: u32,
    dy_model_stride: u32,
    params_model_stride: u32,
    running_model_stride: u32,
    stats_model_stride: u32,
    out_model_stride: u32,
    grads_model_stride: u32,
}

const BN_TRAIN: u32 = 1u;        // batch statistics (else the running ones: eval mode)
const BN_ACCUMULATE: u32 = 2u;   // dx is added to `out` (the input value has another consumer)
const BN_SYNC: u32 = 4u;         // with BN_TRAIN: one rank's share of a synchronised batch norm
                                 // (stats get its biased variance; the host combines the ranks'
                                 // and writes inv_std and the running statistics)

// The activation after the normalisation, as a pipeline constant (`BnParams::constants` on the
// host) so the driver compiles only its branch; `p.act` holds the same code for the host.
override ACT: u32 = 0u;
// BN_TRAIN / BN_ACCUMULATE, fixed per launch: a pipeline constant too (`p.flags` holds the same).
override BN_FLAGS: u32 = 0u;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> params: array<f32>;
@group(0) @binding(3) var<storage, read_write> running: array<f32>;
@group(0) @binding(4) var<storage, read_write> stats: array<f32>;   // [K (n), d (n), inv_std (n)]
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<storage, read_write> grads: array<f32>;
@group(0) @binding(7) var<uniform> p: BnParams;

const FEATURES: u32 = 16u;
const LANES: u32 = 16u;

var<workgroup> partial_a: array<f32, 256>;   // [lane][feature]
var<workgroup> partial_b: array<f32, 256>;

// This workgroup's model's bases (`set_model`, which every entry point calls first).
var<private> x_base: u32;
var<private> dy_base: u32;
var<private> params_base: u32;
var<private> running_base: u32;
var<private> stats_base: u32;
var<private> out_base: u32;
var<private> grads_base: u32;

fn set_model(model: u32) {
    x_base = model * p.x_model_stride;
    dy_base = model * p.dy_model_stride;
    params_base = model * p.params_model_stride;
    running_base = model * p.running_model_stride;
    stats_base = model * p.stats_model_stride;
    out_base = model * p.out_model_stride;
    grads_base = model * p.grads_model_stride;
}

// Sums partial_a and partial_b over the 16 lanes of feature column `f`, by a fixed tree.
fn reduce_lanes(lane: u32, f: u32) {
    for (var half = LANES / 2u; half > 0u; half /= 2u) {
        workgroupBarrier();
        if (lane < half) {
            partial_a[lane * FEATURES + f] += partial_a[(lane + half) * FEATURES + f];
            partial_b[lane * FEATURES + f] += partial_b[(lane + half) * FEATURES + f];
        }
    }
    workgroupBarrier();
}

// A feature's statistics, read once by each invocation rather than once per element: on
// CPU-backed adapters every storage load is a per-lane loop, so per-element re-reads of the
// same numbers cost more than the data itself.
struct FeatureStats {
    shift: f32,
    d: f32,
    inv_std: f32,
}

fn feature_stats(j: u32) -> FeatureStats {
    let n = p.cols;
    return FeatureStats(stats[stats_base + j], stats[stats_base + n + j], stats[stats_base + 2u * n + j]);
}

fn xhat_of(v: f32, s: FeatureStats) -> f32 {
    return ((v - s.shift) - s.d) * s.inv_std;
}

// The element-wise kernels give each invocation one feature and a run of rows: a workgroup is
// 64 features (lanes along features, so a row's loads are contiguous) × 4 runs of 16 rows.
const EW_COLS: u32 = 64u;
const EW_RUNS: u32 = 4u;
const EW_ROWS: u32 = 16u;

// (feature, first row) of this invocation, or a feature ≥ cols when it has nothing to do.
fn elementwise_start(wg: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> vec2<u32> {
    let tiles_n = (p.cols + EW_COLS - 1u) / EW_COLS;
    let tile = flat_group(wg, nwg);
    let j = (tile % tiles_n) * EW_COLS + lid.x;
    let r0 = ((tile / tiles_n) * EW_RUNS + lid.y) * EW_ROWS;
    return vec2<u32>(j, r0);
}

// Training: per-feature shift, mean and inverse standard deviation of the batch, and the running
// statistics' update. Eval: the same three numbers from the running statistics.
@compute @workgroup_size(16, 16, 1)
fn batchnorm_stats(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    set_model(wg.z);
    let n = p.cols;
    let m = p.rows;
    let f = lid.x;
    let lane = lid.y;
    let j = flat_group(wg, nwg) * FEATURES + f;
    let live = j < n;
    if ((BN_FLAGS & BN_TRAIN) == 0u) {
        if (live && lane == 0u) {
            stats[stats_base + j] = running[running_base + p.mean_offset + j];
            stats[stats_base + n + j] = 0.0;
            stats[stats_base + 2u * n + j] = 1.0 / sqrt(running[running_base + p.var_offset + j] + p.eps);
        }
        return;
    }
    var shift = 0.0;
    var s = 0.0;
    if (live) {
        shift = x[x_base + j];
        for (var r = lane; r < m; r += LANES) {
            s += x[x_base + r * n + j] - shift;
        }
    }
    partial_a[lane * FEATURES + f] = s;
    partial_b[lane * FEATURES + f] = 0.0;
    reduce_lanes(lane, f);
    let d = partial_a[f] / f32(m);
    workgroupBarrier();
    var q = 0.0;
    if (live) {
        for (var r = lane; r < m; r += LANES) {
            let c = (x[x_base + r * n + j] - shift) - d;
            q += c * c;
        }
    }
    partial_a[lane * FEATURES + f] = q;
    reduce_lanes(lane, f);
    if (live && lane == 0u) {
        let var_biased = partial_a[f] / f32(m);
        stats[stats_base + j] = shift;
        stats[stats_base + n + j] = d;
        if ((BN_FLAGS & BN_SYNC) != 0u) {
            stats[stats_base + 2u * n + j] = var_biased;
            return;
        }
        stats[stats_base + 2u * n + j] = 1.0 / sqrt(var_biased + p.eps);
        let mean = shift + d;
        let unbiased = var_biased * (f32(m) / f32(m - 1u));
        running[running_base + p.mean_offset + j] = p.keep * running[running_base + p.mean_offset + j] + p.take * mean;
        running[running_base + p.var_offset + j] = p.keep * running[running_base + p.var_offset + j] + p.take * unbiased;
    }
}

// y = act(γ·x̂ + β), element-wise, from the statistics `batchnorm_stats` left.
@compute @workgroup_size(64, 4, 1)
fn batchnorm_forward(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    set_model(wg.z);
    let start = elementwise_start(wg, nwg, lid);
    let j = start.x;
    if (j >= p.cols || start.y >= p.rows) {
        return;
    }
    let n = p.cols;
    let st = feature_stats(j);
    let gamma = params[params_base + p.gamma_offset + j];
    let beta = params[params_base + p.beta_offset + j];
    let end = min(start.y + EW_ROWS, p.rows);
    for (var r = start.y; r < end; r++) {
        let i = r * n + j;
        out[out_base + i] = activate(gamma * xhat_of(x[x_base + i], st) + beta, ACT, p.slope);
    }
}

// dβ = Σ du and dγ = Σ du·x̂ per feature, with du = dy ⊙ act'(γx̂ + β) recomputed, written to the
// gradient buffer; the same fixed-order reduction as the statistics.
@compute @workgroup_size(16, 16, 1)
fn batchnorm_backward_reduce(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    set_model(wg.z);
    let n = p.cols;
    let f = lid.x;
    let lane = lid.y;
    let j = flat_group(wg, nwg) * FEATURES + f;
    var sum_du = 0.0;
    var sum_du_xhat = 0.0;
    if (j < n) {
        let gamma = params[params_base + p.gamma_offset + j];
        let beta = params[params_base + p.beta_offset + j];
        let st = feature_stats(j);
        for (var r = lane; r < p.rows; r += LANES) {
            let xh = xhat_of(x[x_base + r * n + j], st);
            let du = dy[dy_base + r * n + j] * activate_grad(gamma * xh + beta, ACT, p.slope);
            sum_du += du;
            sum_du_xhat += du * xh;
        }
    }
    partial_a[lane * FEATURES + f] = sum_du;
    partial_b[lane * FEATURES + f] = sum_du_xhat;
    reduce_lanes(lane, f);
    if (j < n && lane == 0u) {
        grads[grads_base + p.beta_offset + j] = partial_a[f];
        grads[grads_base + p.gamma_offset + j] = partial_b[f];
    }
}

// dx = γ·inv_std/m · (m·du − Σdu − x̂·Σ(du·x̂)), element-wise, from the sums just written.
@compute @workgroup_size(64, 4, 1)
fn batchnorm_backward_input(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    set_model(wg.z);
    let start = elementwise_start(wg, nwg, lid);
    let j = start.x;
    if (j >= p.cols || start.y >= p.rows) {
        return;
    }
    let n = p.cols;
    let m = f32(p.rows);
    let st = feature_stats(j);
    let gamma = params[params_base + p.gamma_offset + j];
    let beta = params[params_base + p.beta_offset + j];
    let scale = gamma * st.inv_std / m;
    let sum_du = grads[grads_base + p.beta_offset + j];
    let sum_du_xhat = grads[grads_base + p.gamma_offset + j];
    let accumulate = (BN_FLAGS & BN_ACCUMULATE) != 0u;
    let end = min(start.y + EW_ROWS, p.rows);
    for (var r = start.y; r < end; r++) {
        let i = r * n + j;
        let xh = xhat_of(x[x_base + i], st);
        let du = dy[dy_base + i] * activate_grad(gamma * xh + beta, ACT, p.slope);
        var dx = scale * (m * du - sum_du - xh * sum_du_xhat);
        if (accumulate) {
            dx += out[out_base + i];
        }
        out[out_base + i] = dx;
    }
}
