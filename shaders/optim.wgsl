// Fused optimizer updates over the flat parameter buffer: one dispatch updates every tensor of
// the model, or of every model of a batch trained side by side (workgroup z: the model, whose
// numbers and offsets are `models[z]`; one model is the batch of one). The updates' maths is
// optim_update.wgsl's, which the fused small-network step shares.

const NORM_CHUNK: u32 = 4096u; // gradient elements per workgroup of grad_norm_partial

// Every update works on four consecutive elements (a quad): one 16-byte load per buffer instead
// of four, which on llvmpipe (a per-lane loop per storage load) makes the update 2–3× faster. A
// quad never straddles two tensors' groups (tensors start on 64-element boundaries); the last
// quad's elements past `len` are left as they are (`live`). Each slot of `state` starts on a quad.
@group(0) @binding(0) var<storage, read_write> param: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> grad: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> state: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> block_group: array<u32>;
@group(0) @binding(4) var<storage, read_write> clip: array<f32>;   // CLIP_* below, then partial sums

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

// optim_update.wgsl's view of the parameters and gradient.
fn param_quad(q: u32) -> vec4<f32> {
    return param[at(q)];
}

fn set_param_quad(q: u32, v: vec4<f32>) {
    param[at(q)] = v;
}

fn grad_quad(q: u32) -> vec4<f32> {
    return grad[at(q)];
}

// torch.optim.SGD, and the course's heavy-ball and Nesterov look-ahead forms.
@compute @workgroup_size(256, 1, 1)
fn sgd_update(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    model = wg.z;
    let q = quad_index(wg, nwg, li);
    if (4u * q >= models[model].len) {
        return;
    }
    sgd_quad(q);
}

// torch.optim.Adagrad.
@compute @workgroup_size(256, 1, 1)
fn adagrad_update(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    model = wg.z;
    let q = quad_index(wg, nwg, li);
    if (4u * q >= models[model].len) {
        return;
    }
    adagrad_quad(q);
}

// torch.optim.RMSprop.
@compute @workgroup_size(256, 1, 1)
fn rmsprop_update(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    model = wg.z;
    let q = quad_index(wg, nwg, li);
    if (4u * q >= models[model].len) {
        return;
    }
    rmsprop_quad(q);
}

// torch.optim.Adam and AdamW.
@compute @workgroup_size(256, 1, 1)
fn adam_update(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    model = wg.z;
    let q = quad_index(wg, nwg, li);
    if (4u * q >= models[model].len) {
        return;
    }
    adam_quad(q);
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
