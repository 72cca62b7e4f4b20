// A whole training step's forward and backward pass of a small dense network in one launch, one
// workgroup per model (a batch of same-shaped models side by side, each with its own parameters,
// gradient, values, totals and batch rows; one model is a batch of one): for models so small that the per-op path's ~10 launches per step cost more than
// their arithmetic. The optimizer's update is a launch of its own (optim.wgsl) after this one,
// or, where the adapter binds enough buffers, part of the same launch (small_net_train.wgsl). Same sums in the same order as the per-op
// kernels: each product element is summed over k from 0 (bias added after), the weight gradient
// over rows in order, dX·act'(z) as the fused matmul epilogue; the loss is loss_rows.wgsl's.
//
// A layer is a stage of the model: a Linear (with its activation), a BatchNorm1d in training
// mode (with its activation: batchnorm.wgsl's statistics, normalisation and backward, the same
// sums in the same order, 16 strided row partials per feature added by the same tree, its running
// statistics kept in the model's slice of `values`, as the binding count is at WebGPU's default
// limit of 8), an activation on its own, or the sum that ends a residual block. Each reads a
// value (the input, or an earlier layer's output) and, for a sum, a second (the skip). Backward,
// each value's gradient has its own slot: a layer turns its output's gradient into dZ in place
// (⊙ act'(z)), then stores into its inputs' slots, or adds where a later layer already stored
// (a value read twice, the input of a residual block).
//
// Layers run one after another, separated by storage barriers; within a layer the workgroup's
// LANES invocations share the outputs. The host sets LANES to 1 on a CPU adapter: llvmpipe runs a
// workgroup's invocations as coroutines and every barrier switches between them, which cost more
// than the arithmetic of such a step. Values, pre-activations and gradients of each layer live in
// `values`, at offsets the host lays out (kernels/small_net.rs).
//
// The parameters are a read-only storage buffer, not a uniform: lavapipe (Mesa 22) recompiles a
// shader whose loop bounds come from a uniform with those values inlined, at every dispatch
// until it gives up, which made a step of the XOR-sized net cost 4.5 ms instead of 0.1 ms.

struct SmallNetParams {
    rows: u32,            // batch rows
    cols: u32,            // network outputs
    use_targets: u32,     // always 0: classes from labels
    layers: u32,
    inputs: u32,          // input width
    src_rows: u32,        // rows of src_x / src_labels
    gathered: u32,        // 1: batch row r is data row indices[r]; 0: src_x, src_labels hold the batch
    loss: u32,            // LOSS_CROSS_ENTROPY or LOSS_MSE
    logits_at: u32,       // offsets into `values`: the outputs, their gradient, the row statistics,
    logit_grads_at: u32,  // and the two halves the backward pass alternates between
    stats_at: u32,
    models: u32,          // workgroups: model m's slices start at m times these strides
    param_stride: u32,    // in params and grads
    values_stride: u32,   // in values
    index_stride: u32,    // in indices (the batch rows of each model)
    param_len: u32,       // the model's parameters: small_net_train.wgsl's update loops to it
    shape: array<vec4<u32>, 32>,   // per layer: inputs, outputs, weight offset, bias offset (NO_BIAS: none);
                                  // a batch norm: width, width, γ offset, β offset
    act: array<vec4<u32>, 32>,     // per layer: activation code, leaky slope as f32 bits, z at, output at
                                  // (a batch norm's z is γ·x̂ + β, before its activation)
    norm: array<vec4<u32>, 32>,    // per layer: LAYER_DENSE or LAYER_NORM, running mean at, running
                                  // variance at, statistics (shift, d, inv_std per feature) at
    blend: array<vec4<f32>, 32>,   // per batch norm: eps, keep, take (running ← keep·running + take·batch)
    link: array<vec4<u32>, 32>,    // per layer: its input at (NONE: the network input), a sum's skip at,
                                  // and the gradient slots of those two (NONE: no gradient wanted)
    grad: array<vec4<u32>, 32>,    // per layer: its output's gradient slot, GRAD_ADD_* flags
}

const LAYER_DENSE: u32 = 0u;
const LAYER_NORM: u32 = 1u;
const LAYER_ACT: u32 = 2u;
const LAYER_ADD: u32 = 3u;
const NONE: u32 = 0xffffffffu;
// The layer adds its input's (skip's) gradient to the slot, which a later layer already wrote.
const GRAD_ADD_IN: u32 = 1u;
const GRAD_ADD_SKIP: u32 = 2u;
// batchnorm.wgsl's lanes: each feature's sums are 16 strided partials added by a fixed tree.
const NORM_LANES: u32 = 16u;

const LOSS_CROSS_ENTROPY: u32 = 0u;
const LOSS_MSE: u32 = 1u;
const NO_BIAS: u32 = 0xffffffffu;
const MAX_LAYERS: u32 = 32u;

// Each model's totals take this many words (TOTALS_LEN, rounded up).
const TOTALS_STRIDE: u32 = 8u;

// Invocations sharing one model in `small_net_forward_backward`: 64 (ONE_GROUP_ROWS), or 1 on a
// CPU adapter; `small_net_models` is compiled with 1.
override LANES: u32 = 64u;
// Models per workgroup in `small_net_models`, one per invocation.
override MODEL_GROUP: u32 = 64u;

@group(0) @binding(0) var<storage, read_write> params: array<f32>;   // written by small_net_train.wgsl's update
@group(0) @binding(1) var<storage, read_write> grads: array<f32>;
@group(0) @binding(2) var<storage, read_write> values: array<f32>;
@group(0) @binding(3) var<storage, read_write> totals: array<f32>;
@group(0) @binding(4) var<storage, read> src_x: array<f32>;
@group(0) @binding(5) var<storage, read> src_labels: array<u32>;
@group(0) @binding(6) var<storage, read> indices: array<u32>;
@group(0) @binding(7) var<storage, read> p: SmallNetParams;   // storage, not uniform: see the top

// This invocation's model, and where its slices start.
var<private> model: u32;
var<private> pbase: u32;
var<private> vbase: u32;

// The data row behind batch row r (clamped: indices are data).
fn data_row(r: u32) -> u32 {
    if (p.gathered != 0u) {
        return min(indices[model * p.index_stride + r], p.src_rows - 1u);
    }
    return r;
}

fn total_at(t: u32) -> u32 {
    return model * TOTALS_STRIDE + t;
}

// loss_rows.wgsl's accessors.
fn logit(i: u32) -> f32 {
    return values[vbase + p.logits_at + i];
}

fn set_logit_grad(i: u32, v: f32) {
    values[vbase + p.logit_grads_at + i] = v;
}

fn row_label(r: u32) -> u32 {
    return src_labels[data_row(r)];
}

fn row_target(i: u32) -> f32 {
    return 0.0;   // never read: use_targets is 0
}

fn set_row_stats(r: u32, s: vec2<f32>) {
    values[vbase + p.stats_at + 2u * r] = s.x;
    values[vbase + p.stats_at + 2u * r + 1u] = s.y;
}

fn slope(l: u32) -> f32 {
    return bitcast<f32>(p.act[l].y);
}

// Element (r, i) of the value at `at` (NONE: the network input), `width` wide.
fn read_value(at: u32, width: u32, r: u32, i: u32) -> f32 {
    if (at == NONE) {
        return src_x[data_row(r) * p.inputs + i];
    }
    return values[vbase + at + r * width + i];
}

// Element (r, i) of layer l's input.
fn layer_input(l: u32, r: u32, i: u32) -> f32 {
    return read_value(p.link[l].x, p.shape[l].x, r, i);
}

fn is_norm(l: u32) -> bool {
    return p.norm[l].x == LAYER_NORM;
}

// Stores v at slot element `at` (absolute), or adds it to what a later layer stored there.
fn put_grad(at: u32, v: f32, add: bool) {
    if (add) {
        values[at] = values[at] + v;
    } else {
        values[at] = v;
    }
}

// Layer l's forward (a batch norm's after `norm_stats`).
fn forward(l: u32, li: u32) {
    switch p.norm[l].x {
        case LAYER_NORM: { norm_apply(l, li); }
        case LAYER_ACT: { act_forward(l, li); }
        case LAYER_ADD: { add_forward(l, li); }
        default: { dense_forward(l, li); }
    }
}

// A Linear's or a batch norm's dZ = dY ⊙ act'(z), in place over its output's gradient.
fn layer_dz(l: u32, li: u32) {
    let kind = p.norm[l].x;
    if (kind != LAYER_DENSE && kind != LAYER_NORM) {
        return;
    }
    let a = p.act[l];
    let g = vbase + p.grad[l].x;
    for (var e = li; e < p.rows * p.shape[l].y; e += LANES) {
        values[g + e] = values[g + e] * activate_grad(values[vbase + a.z + e], a.x, slope(l));
    }
}

// Layer l's backward from its dZ (after `layer_dz`, and for a batch norm `norm_sums`): its
// parameters' gradients, and its inputs' gradients into their slots.
fn backward(l: u32, li: u32) {
    switch p.norm[l].x {
        case LAYER_NORM: { norm_input_grad(l, li); }
        case LAYER_ACT: { act_backward(l, li); }
        case LAYER_ADD: { add_backward(l, li); }
        default: { dense_backward(l, li); }
    }
}

// An activation on its own: y = act(x).
fn act_forward(l: u32, li: u32) {
    let a = p.act[l];
    let n = p.shape[l].y;
    for (var e = li; e < p.rows * n; e += LANES) {
        values[vbase + a.w + e] = activate(layer_input(l, e / n, e % n), a.x, slope(l));
    }
}

// dX = dY ⊙ act'(x).
fn act_backward(l: u32, li: u32) {
    let link = p.link[l];
    if (link.z == NONE) {
        return;
    }
    let a = p.act[l];
    let n = p.shape[l].y;
    let g = vbase + p.grad[l].x;
    let add = (p.grad[l].y & GRAD_ADD_IN) != 0u;
    for (var e = li; e < p.rows * n; e += LANES) {
        let d = values[g + e] * activate_grad(layer_input(l, e / n, e % n), a.x, slope(l));
        put_grad(vbase + link.z + e, d, add);
    }
}

// The end of a residual block: y = x + skip.
fn add_forward(l: u32, li: u32) {
    let a = p.act[l];
    let n = p.shape[l].y;
    let skip = p.link[l].y;
    for (var e = li; e < p.rows * n; e += LANES) {
        let r = e / n;
        let j = e % n;
        values[vbase + a.w + e] = layer_input(l, r, j) + read_value(skip, n, r, j);
    }
}

// dX = dSkip = dY.
fn add_backward(l: u32, li: u32) {
    let link = p.link[l];
    let n = p.shape[l].y;
    let g = vbase + p.grad[l].x;
    let flags = p.grad[l].y;
    for (var e = li; e < p.rows * n; e += LANES) {
        let d = values[g + e];
        if (link.z != NONE) {
            put_grad(vbase + link.z + e, d, (flags & GRAD_ADD_IN) != 0u);
        }
        if (link.w != NONE) {
            put_grad(vbase + link.w + e, d, (flags & GRAD_ADD_SKIP) != 0u);
        }
    }
}

// batchnorm.wgsl's `reduce_lanes` on one feature's 16 partials: the same pairs, in order.
fn tree16(v: ptr<function, array<f32, 16>>) {
    for (var half = NORM_LANES / 2u; half > 0u; half /= 2u) {
        for (var lane = 0u; lane < half; lane++) {
            (*v)[lane] += (*v)[lane + half];
        }
    }
}

struct NormStats {
    shift: f32,
    d: f32,
    inv_std: f32,
}

fn norm_stats_of(l: u32, j: u32) -> NormStats {
    let at = vbase + p.norm[l].w;
    let n = p.shape[l].y;
    return NormStats(values[at + j], values[at + n + j], values[at + 2u * n + j]);
}

fn xhat_of(v: f32, s: NormStats) -> f32 {
    return ((v - s.shift) - s.d) * s.inv_std;
}

// batchnorm_stats in training mode: per feature the shift K = x[0, j], d = mean(x − K), inv_std
// from the biased variance of (x − K) − d, and the running statistics' blend.
fn norm_stats(l: u32, li: u32) {
    let n = p.shape[l].y;
    let m = p.rows;
    let nm = p.norm[l];
    let b = p.blend[l];
    for (var j = li; j < n; j += LANES) {
        let shift = layer_input(l, 0u, j);
        var part: array<f32, 16>;
        for (var lane = 0u; lane < NORM_LANES; lane++) {
            var s = 0.0;
            for (var r = lane; r < m; r += NORM_LANES) {
                s += layer_input(l, r, j) - shift;
            }
            part[lane] = s;
        }
        tree16(&part);
        let d = part[0] / f32(m);
        for (var lane = 0u; lane < NORM_LANES; lane++) {
            var q = 0.0;
            for (var r = lane; r < m; r += NORM_LANES) {
                let c = (layer_input(l, r, j) - shift) - d;
                q += c * c;
            }
            part[lane] = q;
        }
        tree16(&part);
        let var_biased = part[0] / f32(m);
        let at = vbase + nm.w;
        values[at + j] = shift;
        values[at + n + j] = d;
        values[at + 2u * n + j] = 1.0 / sqrt(var_biased + b.x);
        let mean = shift + d;
        let unbiased = var_biased * (f32(m) / f32(m - 1u));
        values[vbase + nm.y + j] = b.y * values[vbase + nm.y + j] + b.z * mean;
        values[vbase + nm.z + j] = b.y * values[vbase + nm.z + j] + b.z * unbiased;
    }
}

// batchnorm_forward: z = γ·x̂ + β and act(z).
fn norm_apply(l: u32, li: u32) {
    let s = p.shape[l];
    let a = p.act[l];
    for (var e = li; e < p.rows * s.y; e += LANES) {
        let r = e / s.y;
        let j = e % s.y;
        let st = norm_stats_of(l, j);
        let gamma = params[pbase + s.z + j];
        let beta = params[pbase + s.w + j];
        let z = gamma * xhat_of(layer_input(l, r, j), st) + beta;
        values[vbase + a.z + e] = z;
        values[vbase + a.w + e] = activate(z, a.x, slope(l));
    }
}

// batchnorm_backward_reduce: dβ = Σ du and dγ = Σ du·x̂ per feature, du (= dy ⊙ act'(z)) in the
// output's gradient slot.
fn norm_sums(l: u32, li: u32) {
    let s = p.shape[l];
    let n = s.y;
    let dz = vbase + p.grad[l].x;
    for (var j = li; j < n; j += LANES) {
        let st = norm_stats_of(l, j);
        var sum_du: array<f32, 16>;
        var sum_du_xhat: array<f32, 16>;
        for (var lane = 0u; lane < NORM_LANES; lane++) {
            var a = 0.0;
            var b = 0.0;
            for (var r = lane; r < p.rows; r += NORM_LANES) {
                let xh = xhat_of(layer_input(l, r, j), st);
                let du = values[dz + r * n + j];
                a += du;
                b += du * xh;
            }
            sum_du[lane] = a;
            sum_du_xhat[lane] = b;
        }
        tree16(&sum_du);
        tree16(&sum_du_xhat);
        grads[pbase + s.w + j] = sum_du[0];
        grads[pbase + s.z + j] = sum_du_xhat[0];
    }
}

// batchnorm_backward_input: dx = γ·inv_std/m · (m·du − Σdu − x̂·Σ(du·x̂)) into the input's slot.
fn norm_input_grad(l: u32, li: u32) {
    let link = p.link[l];
    if (link.z == NONE) {
        return;
    }
    let s = p.shape[l];
    let n = s.y;
    let m = f32(p.rows);
    let dz = vbase + p.grad[l].x;
    let add = (p.grad[l].y & GRAD_ADD_IN) != 0u;
    for (var e = li; e < p.rows * n; e += LANES) {
        let r = e / n;
        let j = e % n;
        let st = norm_stats_of(l, j);
        let gamma = params[pbase + s.z + j];
        let scale = gamma * st.inv_std / m;
        let sum_du = grads[pbase + s.w + j];
        let sum_du_xhat = grads[pbase + s.z + j];
        let xh = xhat_of(layer_input(l, r, j), st);
        let du = values[dz + e];
        let dx = scale * (m * du - sum_du - xh * sum_du_xhat);
        put_grad(vbase + link.z + e, dx, add);
    }
}

// z = x·Wᵀ + b and act(z), rows × outputs; the last layer's go to the logits.
fn dense_forward(l: u32, li: u32) {
    let s = p.shape[l];
    let a = p.act[l];
    for (var e = li; e < p.rows * s.y; e += LANES) {
        let r = e / s.y;
        let j = e % s.y;
        var acc = 0.0;
        for (var i = 0u; i < s.x; i++) {
            acc += layer_input(l, r, i) * params[pbase + s.z + j * s.x + i];
        }
        var z = acc;
        if (s.w != NO_BIAS) {
            z += params[pbase + s.w + j];
        }
        values[vbase + a.z + e] = z;
        values[vbase + a.w + e] = activate(z, a.x, slope(l));
    }
}

// Layer l's dW = dZᵀ·X and db = Σ_rows dZ into the gradient, and dX = dZ·W into its input's
// slot (whose layer multiplies by its act' in turn: the same product, rounded the same, as the
// per-op dX·act'(z) epilogue).
fn dense_backward(l: u32, li: u32) {
    let s = p.shape[l];
    let dz = vbase + p.grad[l].x;
    for (var e = li; e < s.y * s.x; e += LANES) {
        let j = e / s.x;
        let i = e % s.x;
        var acc = 0.0;
        for (var r = 0u; r < p.rows; r++) {
            acc += values[dz + r * s.y + j] * layer_input(l, r, i);
        }
        grads[pbase + s.z + e] = acc;
    }
    if (s.w != NO_BIAS) {
        for (var j = li; j < s.y; j += LANES) {
            var acc = 0.0;
            for (var r = 0u; r < p.rows; r++) {
                acc += values[dz + r * s.y + j];
            }
            grads[pbase + s.w + j] = acc;
        }
    }
    let link = p.link[l];
    if (link.z != NONE) {
        let add = (p.grad[l].y & GRAD_ADD_IN) != 0u;
        for (var e = li; e < p.rows * s.x; e += LANES) {
            let r = e / s.x;
            let i = e % s.x;
            var acc = 0.0;
            for (var j = 0u; j < s.y; j++) {
                acc += values[dz + r * s.y + j] * params[pbase + s.z + j * s.x + i];
            }
            put_grad(vbase + link.z + e, acc, add);
        }
    }
}

// Row r's loss and whether it was right (loss_rows.wgsl), with its gradient.
fn loss_row(r: u32) -> vec2<f32> {
    if (p.loss == LOSS_MSE) {
        return mse_row(r);
    }
    return cross_entropy_row(r);
}

// loss.wgsl's partial sums: a batch of at most 64 rows is one row per part, summed by the
// 64-wide tree of `cross_entropy_reduced`; a larger one 256 strided parts (part i sums rows i,
// i + 256, …), summed by `loss_reduce`'s 256-wide tree. (For 64 rows or fewer the two give the
// same bits: the wider tree's first levels only add zeros.)
const LOSS_PARTS: u32 = 256u;

fn loss_parts() -> u32 {
    return select(LOSS_PARTS, ONE_GROUP_ROWS, p.rows <= ONE_GROUP_ROWS);
}

fn loss_part(i: u32, parts: u32) -> vec2<f32> {
    var s = vec2<f32>(0.0);
    for (var r = i; r < p.rows; r += parts) {
        s += loss_row(r);
    }
    return s;
}

@compute @workgroup_size(LANES, 1, 1)
fn small_net_forward_backward(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
) {
    forward_backward(wg.x, li);
}

// Model `m`'s step on its workgroup, this invocation being lane `li` of LANES; every lane has
// passed a storage barrier after its last write.
fn forward_backward(m: u32, li: u32) {
    model = m;
    pbase = model * p.param_stride;
    vbase = model * p.values_stride;
    for (var l = 0u; l < p.layers; l++) {
        if (is_norm(l)) {
            norm_stats(l, li);
            storageBarrier();
        }
        forward(l, li);
        storageBarrier();
    }
    // loss_rows.wgsl's row statistics, summed as loss.wgsl sums them.
    let parts = loss_parts();
    for (var i = li; i < parts; i += LANES) {
        let s = loss_part(i, parts);
        part_loss[i] = s.x;
        part_correct[i] = s.y;
    }
    workgroupBarrier();
    reduce_parts(li, parts / 2u, LANES);
    storageBarrier();
    // The last layer's output gradient slot is the logits' gradient the loss just wrote.
    for (var k = 0u; k < p.layers; k++) {
        let l = p.layers - 1u - k;
        layer_dz(l, li);
        storageBarrier();
        if (is_norm(l)) {
            norm_sums(l, li);
            storageBarrier();
        }
        backward(l, li);
        storageBarrier();
    }
}

// A model per invocation, MODEL_GROUP models per workgroup, no barriers (compiled with LANES = 1):
// for batches of tiny models, where one invocation's work is a model's whole step. Same sums in
// the same order as `small_net_forward_backward`; the loss tree runs the same pairs, in order,
// on the invocation's own rows.
var<private> row_loss: array<f32, 256>;
var<private> row_correct: array<f32, 256>;

@compute @workgroup_size(MODEL_GROUP, 1, 1)
fn small_net_models(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
) {
    let m = wg.x * MODEL_GROUP + li;
    if (m < p.models) {
        model_forward_backward(m);
    }
}

// Model `m`'s step on this invocation alone.
fn model_forward_backward(m: u32) {
    model = m;
    pbase = model * p.param_stride;
    vbase = model * p.values_stride;
    for (var l = 0u; l < p.layers; l++) {
        if (is_norm(l)) {
            norm_stats(l, 0u);
        }
        forward(l, 0u);
    }
    let parts = loss_parts();
    for (var i = 0u; i < parts; i++) {
        let s = loss_part(i, parts);
        row_loss[i] = s.x;
        row_correct[i] = s.y;
    }
    for (var stride = parts / 2u; stride > 0u; stride >>= 1u) {
        for (var i = 0u; i < stride; i++) {
            row_loss[i] += row_loss[i + stride];
            row_correct[i] += row_correct[i + stride];
        }
    }
    add_to_totals(row_loss[0], row_correct[0]);
    for (var k = 0u; k < p.layers; k++) {
        let l = p.layers - 1u - k;
        layer_dz(l, 0u);
        if (is_norm(l)) {
            norm_sums(l, 0u);
        }
        backward(l, 0u);
    }
}
