// A small network's whole training step in one launch: small_net.wgsl's forward, loss and
// backward pass, then optim_update.wgsl's update of the same model, with no launch between
// them. A model's gradient, parameters and optimizer state belong to its own workgroup (or, in
// `small_net_models_train`, its own invocation), so a storage barrier is all that separates the
// gradient's last write from the update's first read. Same sums in the same order as the two
// launches it replaces: the same functions run.
//
// Built on small_net.wgsl (bindings 0-7: the network's buffers, `p` now read from a step ring
// the host writes) and optim_update.wgsl; bindings 8-11 are optim.wgsl's state, group table,
// clip record and per-step numbers. Twelve storage bindings: past WebGPU's
// default of 8 per stage, so the host takes this launch only where the adapter allows it
// (`Gpu::small_net_trains`), and the two launches elsewhere. No clipping: its norm is a
// reduction over the whole gradient with a fixed tree of 256 lanes (optim.wgsl), which the
// host keeps as launches of their own.

@group(0) @binding(8) var<storage, read_write> state: array<vec4<f32>>;
@group(0) @binding(9) var<storage, read> block_group: array<u32>;
@group(0) @binding(10) var<storage, read_write> clip: array<f32>;
// Storage, not uniform, as small_net.wgsl's `p`: the update's loop runs to `len`, and lavapipe
// recompiles a shader whose loop bounds come from a uniform at every dispatch (3.5× the step).
@group(0) @binding(11) var<storage, read> models: array<OptParams, 64>;

// optim_update.wgsl's view of the parameters and gradient: quad q of the model's, which start
// at quad `param_base` (the host sets it to the model's `pbase` / 4).
fn param_quad(q: u32) -> vec4<f32> {
    let i = 4u * (models[model].param_base + q);
    return vec4<f32>(params[i], params[i + 1u], params[i + 2u], params[i + 3u]);
}

fn set_param_quad(q: u32, v: vec4<f32>) {
    let i = 4u * (models[model].param_base + q);
    params[i] = v.x;
    params[i + 1u] = v.y;
    params[i + 2u] = v.z;
    params[i + 3u] = v.w;
}

fn grad_quad(q: u32) -> vec4<f32> {
    let i = 4u * (models[model].param_base + q);
    return vec4<f32>(grads[i], grads[i + 1u], grads[i + 2u], grads[i + 3u]);
}

// Quad q of the model's own update, as its numbers name it (the host checked the state buffer
// against that update: a pipeline constant could disagree with the numbers it was checked with),
// past their length nothing. The loops below run to `p.param_len`, never to a field of `models`:
// a loop whose bound comes from `models` made the step 2x slower on lavapipe.
fn update_quad(q: u32) {
    if (4u * q >= models[model].len) {
        return;
    }
    switch models[model].update {
        case UPDATE_ADAGRAD: { adagrad_quad(q); }
        case UPDATE_RMSPROP: { rmsprop_quad(q); }
        case UPDATE_ADAM: { adam_quad(q); }
        case UPDATE_SGD: { sgd_quad(q); }
        default: {}
    }
}

// `small_net_forward_backward`, then the lanes share the model's quads.
@compute @workgroup_size(LANES, 1, 1)
fn small_net_train(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
) {
    forward_backward(wg.x, li);
    let quads = (p.param_len + 3u) / 4u;
    for (var q = li; q < quads; q += LANES) {
        update_quad(q);
    }
}

// `small_net_models`, then each invocation updates its own model.
@compute @workgroup_size(MODEL_GROUP, 1, 1)
fn small_net_models_train(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
) {
    let m = wg.x * MODEL_GROUP + li;
    if (m < p.models) {
        model_forward_backward(m);
        let quads = (p.param_len + 3u) / 4u;
        for (var q = 0u; q < quads; q++) {
            update_quad(q);
        }
    }
}
