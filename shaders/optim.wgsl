// Fused optimizer updates over the flat parameter buffer: one dispatch updates every tensor.

struct SgdParams {
    len: u32,
    nesterov: u32,
    first_step: u32,    // torch initialises the momentum buffer to the first gradient
    _pad: u32,
    lr: f32,
    momentum: f32,
    dampening: f32,
    weight_decay: f32,
}

@group(0) @binding(0) var<storage, read_write> param: array<f32>;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> velocity: array<f32>;
@group(0) @binding(3) var<uniform> p: SgdParams;

// torch.optim.SGD: g = grad + wd·p; buf = μ·buf + (1 − dampening)·g; g = nesterov ? g + μ·buf : buf; p -= lr·g.
@compute @workgroup_size(256, 1, 1)
fn sgd_update(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let i = flat_group(wg, nwg) * 256u + li;
    if (i >= p.len) {
        return;
    }
    var g = grad[i];
    if (p.weight_decay != 0.0) {
        g += p.weight_decay * param[i];
    }
    if (p.momentum != 0.0) {
        var buf = g;
        if (p.first_step == 0u) {
            buf = p.momentum * velocity[i] + (1.0 - p.dampening) * g;
        }
        velocity[i] = buf;
        if (p.nesterov != 0u) {
            g += p.momentum * buf;
        } else {
            g = buf;
        }
    }
    param[i] -= p.lr * g;
}
