// The optimizers' update of one quad of a model's parameters, shared by optim.wgsl's update
// kernels (one launch after the backward pass) and small_net_train.wgsl (the fused step's
// update, in the same launch as its forward and backward passes), so that both give the same
// bits. Each mirrors its CPU reference (src/reference/optim.rs) line by line, with
// torch.optim's formulas. State is slot-major: state[s * len + i].
//
// Every 1 − h is computed on the host in f64 and rounded once, as PyTorch passes its Python
// floats: in f32, 1 − 0.999 would carry 1000× the rounding error of 0.999 itself.
//
// Per-group learning rate (already multiplied by the schedule's factor) and weight decay come
// from `models[model].groups`, indexed by the group of the element's 64-element block. With
// clipping on, the gradient is scaled by clip[0], which `grad_norm_finish` wrote earlier in the
// same submit.
//
// Not a kernel of its own: the file that builds on it declares `state: array<vec4<f32>>`,
// `block_group: array<u32>`, `clip: array<f32>`, the uniform `models: array<OptParams, N>`, the
// private `model` (the model being updated), and its parameters and gradient by quad:
//   fn param_quad(q: u32) -> vec4<f32>        quad q of the model's parameters
//   fn set_param_quad(q: u32, v: vec4<f32>)
//   fn grad_quad(q: u32) -> vec4<f32>         quad q of its gradient

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
    update: u32,        // UPDATE_* below: the update this model takes (the fused step switches on it)
    groups: array<vec4<f32>, 8>,   // x: lr, y: weight decay
}

// optim.wgsl's update entry points, by the number `update` gives them.
const UPDATE_SGD: u32 = 0u;
const UPDATE_ADAGRAD: u32 = 1u;
const UPDATE_RMSPROP: u32 = 2u;
const UPDATE_ADAM: u32 = 3u;

const FLAG_NESTEROV: u32 = 1u;
const FLAG_HEAVY_BALL: u32 = 2u;
const FLAG_NESTEROV_LOOKAHEAD: u32 = 4u;
const FLAG_CENTERED: u32 = 8u;
const FLAG_AMSGRAD: u32 = 16u;
const FLAG_DECOUPLED: u32 = 32u;
const FLAG_CLIP: u32 = 64u;
const FLAG_FIRST_STEP: u32 = 128u; // SGD: torch starts the momentum buffer at the first gradient

const BLOCK: u32 = 64u;        // parameter tensors start on 64-element boundaries

// The configuration's flags (every FLAG_* but FIRST_STEP, which changes after step 1) as a
// pipeline constant (`OptParams::constants` on the host), so the driver compiles only the
// update the optimizer uses; `models[model].flags` holds all of them, FIRST_STEP included.
override OPT_FLAGS: u32 = 0u;

const CLIP_COEF: u32 = 0u;      // clip_grad_norm_'s coefficient for this step
const CLIP_NORM: u32 = 1u;      // the gradient's norm
const CLIP_BAD_STEP: u32 = 2u;  // bits of the first step that wrote a NaN or ±Inf parameter; 0: none
const CLIP_PARTIALS: u32 = 3u;  // grad_norm_partial's sums start here
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
    set_param_quad(q, v);
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
    return grad_quad(q) * coef;
}

// torch.optim.SGD, and the course's heavy-ball and Nesterov look-ahead forms.
fn sgd_quad(q: u32) {
    let keep = live(q);
    let lr = group_lr(q);
    let wd = group_wd(q);
    let old_p = param_quad(q);
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
fn adagrad_quad(q: u32) {
    let keep = live(q);
    let wd = group_wd(q);
    let old_p = param_quad(q);
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
fn rmsprop_quad(q: u32) {
    let keep = live(q);
    let lr = group_lr(q);
    let wd = group_wd(q);
    let old_p = param_quad(q);
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
fn adam_quad(q: u32) {
    let keep = live(q);
    let lr = group_lr(q);
    let wd = group_wd(q);
    let old_p = param_quad(q);
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

