// Fused optimizer updates over the flat parameter buffer: one dispatch updates every tensor of
// the model, or of every model of a batch trained side by side (workgroup z: the model, whose
// numbers and offsets are `models[z]`; one model is the batch of one). Each kernel mirrors its CPU reference (src/reference/optim.rs) line by line, with
// torch.optim's formulas. State is slot-major: state[s * len + i].
//
// Every 1 − h is computed on the host in f64 and rounded once, as PyTorch passes its Python
// floats: in f32, 1 − 0.999 would carry 1000× the rounding error of 0.999 itself.
//
// Per-group learning rate (already multiplied by the schedule's factor) and weight decay come
// from `models[model].groups`, indexed by the group of the element's 64-element block. With clipping on, the
// gradient is scaled by clip[0], which `grad_norm_finish` wrote earlier in the same submit.

struct OptParams {
    len: u32,
    flags: u32,         // FLAG_* below
    state_stride: u32,  // elements between state slots: len rounded up to a whole vec4
    max_norm: f32,      // clip_grad_norm_ threshold (grad_norm_finish)
    momentum: f32,
    one_minus_dampening: f32,
    one_minus_beta1: f32,
    beta2: f32,
    eps: f32,
    alpha: f32,
    lr_decay_div: f32,  // Adagrad: 1 + (step − 1)·lr_decay
    bias_c1: f32,       // Adam: 1 − β1^step
    bias_c2_sqrt: f32,  // Adam: √(1 − β2^step)
    one_minus_beta2: f32,
    one_minus_alpha: f32,
    step: u32,          // 1-based optimizer step, recorded in clip[CLIP_BAD_STEP]
    param_base: u32,    // this model's first quad of param and grad
    state_base: u32,    // this model's first quad of state
    clip_base: u32,     // this model's first element of clip
    _pad: u32,
    groups: array<vec4<f32>, 8>,   // x: lr, y: weight decay
}

const FLAG_NESTEROV: u32 = 1u;
const FLAG_HEAVY_BALL: u32 = 2u;
const FLAG_NESTEROV_LOOKAHEAD: u32 = 4u;
const FLAG_CENTERED: u32 = 8u;
const FLAG_AMSGRAD: u32 = 16u;
const FLAG_DECOUPLED: u32 = 32u;
const FLAG_CLIP: u32 = 64u;
const FLAG_FIRST_STEP: u32 = 128u; // SGD: torch starts the momentum buffer at the first gradient

const BLOCK: u32 = 64u;        // parameter tensors start on 64-element boundaries
const NORM_CHUNK: u32 = 4096u; // gradient elements per workgroup of grad_norm_partial

// The configuration's flags (every FLAG_* but FIRST_STEP, which changes after step 1) as a
// pipeline constant (`OptParams::constants` on the host), so the driver compiles only the
// update the optimizer uses; `models[model].flags` holds all of them, FIRST_STEP included.
override OPT_FLAGS: u32 = 0u;

// Every update works on four consecutive elements (a quad): one 16-byte load per buffer instead
// of four, which on llvmpipe (a per-lane loop per storage load) makes the update 2–3× faster. A
// quad never straddles two tensors' groups (tensors start on 64-element boundaries); the last
// quad's elements past `len` are left as they are (`live`). Each slot of `state` starts on a quad.
@group(0) @binding(0) var<storage, read_write> param: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> grad: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> state: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> block_group: array<u32>;
@group(0) @binding(4) var<storage, read_write> clip: array<f32>;   // CLIP_* below, then partial sums

const CLIP_COEF: u32 = 0u;      // clip_grad_norm_'s coefficient for this step
const CLIP_NORM: u32 = 1u;      // the gradient's norm
const CLIP_BAD_STEP: u32 = 2u;  // bits of the first step that wrote a NaN or ±Inf parameter; 0: none
const CLIP_PARTIALS: u32 = 3u;  // grad_norm_partial's sums start here
// One struct per model of the batch (zeros past the last). A uniform array, not a storage one:
// llvmpipe reads a uniform at a workgroup-uniform index once per workgroup, but a storage
// buffer's once per lane, and its updates ran 4x slower through one.
@group(0) @binding(5) var<uniform> models: array<OptParams, 64>;

// The model this invocation updates (workgroup z), set first thing by every entry point. Its
// fields are read where they are used, `models[model].lr`, never copied whole: llvmpipe loaded every
// field of a copied struct, which cost a third of SGD's update.
var<private> model: u32;

fn quad_index(wg: vec3<u32>, nwg: vec3<u32>, li: u32) -> u32 {
    return flat_group(wg, nwg) * 256u + li;
}

// Quad q of this model's param and grad.
fn at(q: u32) -> u32 {
    return models[model].param_base + q;
}

// Element i of this model's clip record.
fn clip_at(i: u32) -> u32 {
    return models[model].clip_base + i;
}

// Which elements of quad q are parameters (the last quad may run past len).
fn live(q: u32) -> vec4<bool> {
    let i = 4u * q;
    return vec4<u32>(i, i + 1u, i + 2u, i + 3u) < vec4<u32>(models[model].len);
}

// Quad q of state slot s.
fn slot(s: u32, q: u32) -> u32 {
    return models[model].state_base + s * (models[model].state_stride / 4u) + q;
}

// The group table's entries are data: clamped into `groups` so a wrong one stays in bounds.
fn group_of(q: u32) -> u32 {
    return min(block_group[4u * q / BLOCK], 7u);
}

fn group_lr(q: u32) -> f32 {
    return models[model].groups[group_of(q)].x;
}

fn group_wd(q: u32) -> f32 {
    return models[model].groups[group_of(q)].y;
}

// Writes quad q's new parameters (old values where `keep` is false) and records the first step
// that made one NaN or ±Inf: a diverged run is caught at its step, with no read-back per step.
// A parameter can go bad while the loss stays finite (ReLU maps NaN to 0), so the loss's own
// check is not enough.
fn store_param(q: u32, old_p: vec4<f32>, new_p: vec4<f32>, keep: vec4<bool>) {
    let v = select(old_p, new_p, keep);
    param[at(q)] = v;
    let bad = (bitcast<vec4<u32>>(v) & vec4<u32>(0x7f800000u)) == vec4<u32>(0x7f800000u);
    // The step's bits, not its value: exact past 2^24 steps (compared as bits, never as a float).
    if (any(bad) && bitcast<u32>(clip[clip_at(CLIP_BAD_STEP)]) == 0u) {
        clip[clip_at(CLIP_BAD_STEP)] = bitcast<f32>(models[model].step);
    }
}

fn clipped_grad(q: u32) -> vec4<f32> {
    var coef = 1.0;
    if ((OPT_FLAGS & FLAG_CLIP) != 0u) {
        coef = clip[clip_at(CLIP_COEF)];
    }
    return grad[at(q)] * coef;
}

// torch.optim.SGD, and the course's heavy-ball and Nesterov look-ahead forms.
@compute @workgroup_size(256, 1, 1)
fn sgd_update(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    model = wg.z;
    let q = quad_index(wg, nwg, li);
    if (4u * q >= models[model].len) {
        return;
    }
    let keep = live(q);
    let lr = group_lr(q);
    let wd = group_wd(q);
    let old_p = param[at(q)];
    var g = clipped_grad(q);
    if (wd != 0.0) {
        g = g + wd * old_p;
    }
    let mu = models[model].momentum;
    if (mu == 0.0) {
        store_param(q, old_p, old_p - lr * g, keep);
        return;
    }
    let old = state[slot(0u, q)];
    if ((OPT_FLAGS & FLAG_HEAVY_BALL) != 0u) {
        let v = mu * old - lr * g;
        state[slot(0u, q)] = select(old, v, keep);
        store_param(q, old_p, old_p + v, keep);
    } else if ((OPT_FLAGS & FLAG_NESTEROV_LOOKAHEAD) != 0u) {
        let v = mu * old - lr * g;
        state[slot(0u, q)] = select(old, v, keep);
        store_param(q, old_p, old_p + v + mu * (v - old), keep);
    } else {
        var buf = g;
        if ((models[model].flags & FLAG_FIRST_STEP) == 0u) {
            buf = mu * old + models[model].one_minus_dampening * g;
        }
        state[slot(0u, q)] = select(old, buf, keep);
        var d = buf;
        if ((OPT_FLAGS & FLAG_NESTEROV) != 0u) {
            d = g + mu * buf;
        }
        store_param(q, old_p, old_p - lr * d, keep);
    }
}

// torch.optim.Adagrad: sum += g²; p −= clr · g / (√sum + eps), clr = lr / (1 + (t − 1)·lr_decay).
@compute @workgroup_size(256, 1, 1)
fn adagrad_update(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    model = wg.z;
    let q = quad_index(wg, nwg, li);
    if (4u * q >= models[model].len) {
        return;
    }
    let keep = live(q);
    let wd = group_wd(q);
    let old_p = param[at(q)];
    var g = clipped_grad(q);
    if (wd != 0.0) {
        g = g + wd * old_p;
    }
    let clr = group_lr(q) / models[model].lr_decay_div;
    let old = state[slot(0u, q)];
    let sum = old + g * g;
    state[slot(0u, q)] = select(old, sum, keep);
    let std_dev = sqrt(sum) + models[model].eps;
    store_param(q, old_p, old_p - clr * (g / std_dev), keep);
}

// torch.optim.RMSprop: square_avg = α·sq + (1 − α)·g²; centered subtracts grad_avg²; eps outside the root.
@compute @workgroup_size(256, 1, 1)
fn rmsprop_update(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    model = wg.z;
    let q = quad_index(wg, nwg, li);
    if (4u * q >= models[model].len) {
        return;
    }
    let keep = live(q);
    let lr = group_lr(q);
    let wd = group_wd(q);
    let old_p = param[at(q)];
    var g = clipped_grad(q);
    if (wd != 0.0) {
        g = g + wd * old_p;
    }
    let a = models[model].alpha;
    let old_sq = state[slot(0u, q)];
    let sq = old_sq * a + models[model].one_minus_alpha * g * g;
    state[slot(0u, q)] = select(old_sq, sq, keep);
    var avg: vec4<f32>;
    if ((OPT_FLAGS & FLAG_CENTERED) != 0u) {
        let old_ga = state[slot(1u, q)];
        let ga = old_ga + models[model].one_minus_alpha * (g - old_ga);
        state[slot(1u, q)] = select(old_ga, ga, keep);
        avg = sqrt(sq - ga * ga) + models[model].eps;
    } else {
        avg = sqrt(sq) + models[model].eps;
    }
    if (models[model].momentum > 0.0) {
        let old_buf = state[slot(2u, q)];
        let buf = old_buf * models[model].momentum + g / avg;
        state[slot(2u, q)] = select(old_buf, buf, keep);
        store_param(q, old_p, old_p - lr * buf, keep);
    } else {
        store_param(q, old_p, old_p - lr * (g / avg), keep);
    }
}

// torch.optim.Adam (L2 decay into the gradient) and AdamW (decoupled: p ← p·(1 − lr·wd) first).
@compute @workgroup_size(256, 1, 1)
fn adam_update(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    model = wg.z;
    let q = quad_index(wg, nwg, li);
    if (4u * q >= models[model].len) {
        return;
    }
    let keep = live(q);
    let lr = group_lr(q);
    let wd = group_wd(q);
    let old_p = param[at(q)];
    var decayed = old_p;
    var g = clipped_grad(q);
    if ((OPT_FLAGS & FLAG_DECOUPLED) != 0u) {
        decayed = old_p * (1.0 - lr * wd);
    } else if (wd != 0.0) {
        g = g + wd * old_p;
    }
    let old_m = state[slot(0u, q)];
    let old_v = state[slot(1u, q)];
    let m = old_m + models[model].one_minus_beta1 * (g - old_m);
    let v = old_v * models[model].beta2 + models[model].one_minus_beta2 * g * g;
    state[slot(0u, q)] = select(old_m, m, keep);
    state[slot(1u, q)] = select(old_v, v, keep);
    var v_used = v;
    if ((OPT_FLAGS & FLAG_AMSGRAD) != 0u) {
        let old_max = state[slot(2u, q)];
        v_used = max(old_max, v);
        state[slot(2u, q)] = select(old_max, v_used, keep);
    }
    let denom = sqrt(v_used) / models[model].bias_c2_sqrt + models[model].eps;
    store_param(q, old_p, decayed - (lr / models[model].bias_c1) * (m / denom), keep);
}

// Element i of the gradient.
fn grad_at(i: u32) -> f32 {
    return grad[at(i / 4u)][i % 4u];
}

var<workgroup> partial: array<f32, 256>;

// Σ g² over one NORM_CHUNK of the gradient, in a fixed order: thread t adds elements t, t + 256, …
@compute @workgroup_size(256, 1, 1)
fn grad_norm_partial(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    model = wg.z;
    let chunk = flat_group(wg, nwg);
    // The 2-D grid may hold a few workgroups past the last chunk: they would write partials
    // past this model's clip record (into the next model's). The whole workgroup leaves (the
    // test reads wg.z, not `model`, so uniformity analysis sees it uniform before the barriers).
    if (chunk >= (models[wg.z].len + NORM_CHUNK - 1u) / NORM_CHUNK) {
        return;
    }
    let start = chunk * NORM_CHUNK;
    var s = 0.0;
    for (var j = 0u; j < NORM_CHUNK / 256u; j++) {
        let i = start + j * 256u + li;
        if (i < models[model].len) {
            s += grad_at(i) * grad_at(i);
        }
    }
    partial[li] = s;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride >>= 1u) {
        if (li < stride) {
            partial[li] += partial[li + stride];
        }
        workgroupBarrier();
    }
    if (li == 0u) {
        clip[clip_at(CLIP_PARTIALS + chunk)] = partial[0];
    }
}

// One workgroup: the partial sums in a fixed order, then clip_grad_norm_'s coefficient
// min(max_norm / (‖g‖ + 1e-6), 1) into clip[0] and the norm into clip[1].
@compute @workgroup_size(256, 1, 1)
fn grad_norm_finish(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    model = wg.z;
    let chunks = (models[model].len + NORM_CHUNK - 1u) / NORM_CHUNK;
    var s = 0.0;
    for (var c = li; c < chunks; c += 256u) {
        s += clip[clip_at(CLIP_PARTIALS + c)];
    }
    partial[li] = s;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride >>= 1u) {
        if (li < stride) {
            partial[li] += partial[li + stride];
        }
        workgroupBarrier();
    }
    if (li == 0u) {
        let norm = sqrt(partial[0]);
        clip[clip_at(CLIP_NORM)] = norm;
        clip[clip_at(CLIP_COEF)] = min(models[model].max_norm / (norm + 1e-6), 1.0);
    }
}
