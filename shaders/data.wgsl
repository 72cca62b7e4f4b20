// Moving data on the device: minibatch gathering from the resident training set, and a plain
// copy that the benchmarks use as the bandwidth yardstick.

struct GatherParams {
    rows: u32,   // batch size
    cols: u32,   // features per row
    src_rows: u32,   // rows of the resident set: every index is clamped below it
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> src_x: array<f32>;
@group(0) @binding(1) var<storage, read> src_labels: array<u32>;
@group(0) @binding(2) var<storage, read> indices: array<u32>;
@group(0) @binding(3) var<storage, read_write> dst_x: array<f32>;
@group(0) @binding(4) var<storage, read_write> dst_labels: array<u32>;
@group(0) @binding(5) var<uniform> p: GatherParams;

// dst_x[r, :] = src_x[indices[r], :]; dst_labels[r] = src_labels[indices[r]].
@compute @workgroup_size(256, 1, 1)
fn gather_batch(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let i = flat_group(wg, nwg) * 256u + li;
    if (i >= p.rows * p.cols) {
        return;
    }
    let r = i / p.cols;
    let c = i % p.cols;
    // Indices are data the host checks when it writes them; the clamp keeps a wrong one in bounds.
    let src = min(indices[r], p.src_rows - 1u);
    dst_x[i] = src_x[src * p.cols + c];
    if (c == 0u) {
        dst_labels[r] = src_labels[src];
    }
}

// dst_x[i] = src_x[i] for i < rows: the copy kernel for bandwidth comparisons.
@compute @workgroup_size(256, 1, 1)
fn copy_f32(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let i = flat_group(wg, nwg) * 256u + li;
    if (i >= p.rows) {
        return;
    }
    dst_x[i] = src_x[i];
}
