// Element-wise activations, for activation layers that do not follow a Linear (those are fused
// into the matmul epilogue), and as the standalone op the tests hold against the CPU.

struct ActParams {
    len: u32,
    act: u32,
    slope: f32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: ActParams;

// y = act(x)
@compute @workgroup_size(256, 1, 1)
fn activation_forward(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let i = flat_group(wg, nwg) * 256u + li;
    if (i >= p.len) {
        return;
    }
    y[i] = activate(x[i], p.act, p.slope);
}

// dx = dy ⊙ act'(x), written to `y`.
@compute @workgroup_size(256, 1, 1)
fn activation_backward(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let i = flat_group(wg, nwg) * 256u + li;
    if (i >= p.len) {
        return;
    }
    y[i] = dy[i] * activate_grad(x[i], p.act, p.slope);
}
