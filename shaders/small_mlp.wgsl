// A whole small MLP trained by SGD inside one invocation, many steps per dispatch: for models
// like Higham & Higham's 2-2-3-2 network, where a step is a few hundred flops and the training
// path's ~10 launches per step would cost far more than the arithmetic (on lavapipe ~40 µs
// each). Same maths as the training path (src/reference: Linear + activation per layer, mean loss,
// torch.optim.SGD with momentum and dampening); parameters live in workgroup memory for the
// whole dispatch and go back to the flat buffer at its end.
//
// The step schedule (row indices, `batch` per step) comes from the host, so the CPU reference
// can replay the same steps. After every `every`-th step the mean loss over all rows is written
// to `costs`.
//
// llvmpipe ends every loop of an invocation once all its loops together have run 65,535
// iterations (LP_MAX_TGSI_LOOP_ITERATIONS, shared by every loop of a shader), silently. So the
// host sizes each dispatch by this kernel's loop count (`exec::small_mlp::loop_iterations`), and
// the loops here run over parameters and units only, never over padding.

struct SmallMlpParams {
    layers: u32,
    rows: u32,          // data rows (for the cost)
    batch: u32,         // rows per step
    steps: u32,         // steps in this dispatch
    first_step: u32,    // global index of this dispatch's first step (schedule and cost slots)
    every: u32,         // record the cost after every `every` steps (0: never)
    loss: u32,          // LOSS_MSE or LOSS_CROSS_ENTROPY
    param_len: u32,
    lr: f32,
    momentum: f32,
    one_minus_dampening: f32,
    first_momentum_step: u32,   // 1 when this dispatch's first step is the run's first (torch's buf = g)
    shape: array<vec4<u32>, 8>, // per layer: inputs, outputs, weight offset, bias offset (NO_BIAS: none)
    act: array<vec4<u32>, 8>,   // per layer: activation code, leaky slope as f32 bits
}

const LOSS_MSE: u32 = 0u;
const LOSS_CROSS_ENTROPY: u32 = 1u;
const NO_BIAS: u32 = 0xffffffffu;
const MAX_LAYERS: u32 = 8u;
const MAX_WIDTH: u32 = 16u;
const MAX_BATCH: u32 = 8u;
const MAX_PARAMS: u32 = 512u;

@group(0) @binding(0) var<storage, read_write> params: array<f32>;
@group(0) @binding(1) var<storage, read_write> velocity: array<f32>;   // momentum buffer (param_len)
@group(0) @binding(2) var<storage, read> data_x: array<f32>;
@group(0) @binding(3) var<storage, read> labels: array<u32>;
@group(0) @binding(4) var<storage, read> schedule: array<u32>;
@group(0) @binding(5) var<storage, read_write> costs: array<f32>;
@group(0) @binding(6) var<uniform> p: SmallMlpParams;

// Workgroup memory, not private: the one invocation's state, 13.8 KB (under WebGPU's 16 KB).
// llvmpipe would keep a private copy per SIMD lane on its small coroutine stack.
var<workgroup> theta: array<f32, MAX_PARAMS>;
var<workgroup> grad: array<f32, MAX_PARAMS>;
// Values and pre-activations of every layer for every row of the step: [layer][row][unit].
var<workgroup> a: array<f32, 1152>;   // (MAX_LAYERS + 1) · MAX_BATCH · MAX_WIDTH
var<workgroup> z: array<f32, 1024>;   // MAX_LAYERS · MAX_BATCH · MAX_WIDTH
// ∂L/∂(a layer's output) per row, two halves used in turn (layer by layer) so nothing is copied.
var<workgroup> delta: array<f32, 256>;   // 2 · MAX_BATCH · MAX_WIDTH

fn at(layer: u32, row: u32, unit: u32) -> u32 {
    return (layer * MAX_BATCH + row) * MAX_WIDTH + unit;
}

fn slope(l: u32) -> f32 {
    return bitcast<f32>(p.act[l].y);
}

// Forward pass of data row `src` into slot `row`.
fn forward_row(row: u32, src: u32) {
    let d = p.shape[0].x;
    for (var i = 0u; i < d; i++) {
        a[at(0u, row, i)] = data_x[src * d + i];
    }
    for (var l = 0u; l < p.layers; l++) {
        let s = p.shape[l];
        for (var j = 0u; j < s.y; j++) {
            var acc = 0.0;
            if (s.w != NO_BIAS) {
                acc = theta[s.w + j];
            }
            for (var i = 0u; i < s.x; i++) {
                acc += theta[s.z + j * s.x + i] * a[at(l, row, i)];
            }
            z[at(l, row, j)] = acc;
            a[at(l + 1u, row, j)] = activate(acc, p.act[l].x, slope(l));
        }
    }
}

// The loss of slot `row` against `label`, and ∂(mean loss)/∂output into delta (scaled by 1/m).
fn loss_row(row: u32, label: u32, m: f32) -> f32 {
    let s = p.shape[p.layers - 1u];
    let out = p.layers;
    var loss = 0.0;
    if (p.loss == LOSS_MSE) {
        for (var c = 0u; c < s.y; c++) {
            let diff = a[at(out, row, c)] - select(0.0, 1.0, c == label);
            loss += diff * diff;
            delta[row * MAX_WIDTH + c] = 2.0 * diff / (m * f32(s.y));
        }
        return loss / f32(s.y);
    }
    var zmax = a[at(out, row, 0u)];
    for (var c = 1u; c < s.y; c++) {
        zmax = max(zmax, a[at(out, row, c)]);
    }
    var sum = 0.0;
    for (var c = 0u; c < s.y; c++) {
        sum += exp(a[at(out, row, c)] - zmax);
    }
    for (var c = 0u; c < s.y; c++) {
        let prob = exp(a[at(out, row, c)] - zmax) / sum;
        delta[row * MAX_WIDTH + c] = (prob - select(0.0, 1.0, c == label)) / m;
    }
    return zmax + log(sum) - a[at(out, row, min(label, s.y - 1u))];
}

// The parameter slots of layer l that hold values: its weight, then its bias.
fn zero_grads() {
    for (var l = 0u; l < p.layers; l++) {
        let s = p.shape[l];
        for (var i = 0u; i < s.x * s.y; i++) {
            grad[s.z + i] = 0.0;
        }
        if (s.w != NO_BIAS) {
            for (var j = 0u; j < s.y; j++) {
                grad[s.w + j] = 0.0;
            }
        }
    }
}

// torch.optim.SGD on one slot: buf = μ·buf + (1 − dampening)·g (buf = g on the run's first
// step); p −= lr·buf.
fn update(i: u32, first: bool) {
    var d = grad[i];
    if (p.momentum != 0.0) {
        if (first) {
            velocity[i] = d;
        } else {
            velocity[i] = p.momentum * velocity[i] + p.one_minus_dampening * d;
        }
        d = velocity[i];
    }
    theta[i] = theta[i] - p.lr * d;
}

fn step(k: u32) {
    let m = p.batch;
    zero_grads();
    for (var r = 0u; r < m; r++) {
        // Row indices are data the host checks; the clamp keeps a wrong one in bounds.
        let src = min(schedule[k * m + r], p.rows - 1u);
        forward_row(r, src);
        loss_row(r, labels[src], f32(m));
    }
    // Backward, layer by layer: dz = δ ⊙ act'(z); ∇W += dz ⊗ a; ∇b += dz; δ ← Wᵀ dz.
    var cur = 0u;   // the half of `delta` holding this layer's δ
    for (var li = 0u; li < p.layers; li++) {
        let l = p.layers - 1u - li;
        let s = p.shape[l];
        let next = MAX_BATCH * MAX_WIDTH - cur;
        for (var r = 0u; r < m; r++) {
            let row = cur + r * MAX_WIDTH;
            for (var j = 0u; j < s.y; j++) {
                let dz = delta[row + j] * activate_grad(z[at(l, r, j)], p.act[l].x, slope(l));
                delta[row + j] = dz;
                if (s.w != NO_BIAS) {
                    grad[s.w + j] += dz;
                }
                for (var i = 0u; i < s.x; i++) {
                    grad[s.z + j * s.x + i] += dz * a[at(l, r, i)];
                }
            }
            if (l > 0u) {
                for (var i = 0u; i < s.x; i++) {
                    var back = 0.0;
                    for (var j = 0u; j < s.y; j++) {
                        back += theta[s.z + j * s.x + i] * delta[row + j];
                    }
                    delta[next + r * MAX_WIDTH + i] = back;
                }
            }
        }
        cur = next;
    }
    let first = p.first_momentum_step == 1u && k == p.first_step;
    for (var l = 0u; l < p.layers; l++) {
        let s = p.shape[l];
        for (var i = 0u; i < s.x * s.y; i++) {
            update(s.z + i, first);
        }
        if (s.w != NO_BIAS) {
            for (var j = 0u; j < s.y; j++) {
                update(s.w + j, first);
            }
        }
    }
}

// The mean loss over every data row at the current parameters.
fn cost() -> f32 {
    var total = 0.0;
    for (var src = 0u; src < p.rows; src++) {
        forward_row(0u, src);
        total += loss_row(0u, labels[src], 1.0);
    }
    return total / f32(p.rows);
}

@compute @workgroup_size(1, 1, 1)
fn small_mlp_sgd() {
    for (var i = 0u; i < p.param_len; i++) {
        theta[i] = params[i];
    }
    for (var s = 0u; s < p.steps; s++) {
        let k = p.first_step + s;
        step(k);
        if (p.every != 0u && (k + 1u) % p.every == 0u) {
            costs[(k + 1u) / p.every - 1u] = cost();
        }
    }
    for (var i = 0u; i < p.param_len; i++) {
        params[i] = theta[i];
    }
}
