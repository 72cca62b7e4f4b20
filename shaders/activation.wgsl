// Element-wise kernels: activations for activation layers that follow neither a Linear nor a
// batch norm (those are fused into that layer's kernel), the residual sum, and the gradient
// routing of a residual block (activation_backward with ACT_ACCUMULATE).

struct ActParams {
    len: u32,
    act: u32,
    slope: f32,
    flags: u32,   // ACT_ACCUMULATE: add the result to y (a value read by two stages gets two gradients)
}

const ACT_ACCUMULATE: u32 = 1u;

// The activation, as a pipeline constant (`ActParams::constants` on the host) so the driver
// compiles only its branch; `p.act` holds the same code for the host.
override ACT: u32 = 0u;
// ACT_ACCUMULATE, fixed per launch: a pipeline constant too (`p.flags` holds the same).
override ACT_FLAGS: u32 = 0u;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> dy: array<f32>;   // dy (backward) or the skip value (residual_add)
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
    y[i] = activate(x[i], ACT, p.slope);
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
    let g = dy[i] * activate_grad(x[i], ACT, p.slope);
    if ((ACT_FLAGS & ACT_ACCUMULATE) != 0u) {
        y[i] = y[i] + g;
    } else {
        y[i] = g;
    }
}

// y = x + skip: the end of a residual block.
@compute @workgroup_size(256, 1, 1)
fn residual_add(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let i = flat_group(wg, nwg) * 256u + li;
    if (i >= p.len) {
        return;
    }
    y[i] = x[i] + dy[i];
}
