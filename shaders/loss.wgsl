// Losses with their gradients, mean-reduced over the batch as PyTorch does.
//
// The per-row maths and the one-workgroup reduction live in loss_rows.wgsl (compiled ahead of this
// file), shared with small_net.wgsl. Each loss kernel writes, per row, the row's loss and whether its argmax hit the label; then
// `loss_reduce` sums those rows in a fixed order (the same bits every run), writes the batch mean,
// and adds to the running epoch totals, so the host reads back only when it wants a number.

struct LossParams {
    rows: u32,
    cols: u32,
    use_targets: u32,   // MSE: 1 = compare with `targets`, 0 = with one-hot labels
    // A batch of models (workgroup z is the model), each binding's slice its model stride after
    // the previous model's. `models` (0 or 1: one) is the host's, for the bounds check and grid.
    models: u32,
    logits_model_stride: u32,
    labels_model_stride: u32,
    targets_model_stride: u32,
    grad_model_stride: u32,
    row_stats_model_stride: u32,
    totals_model_stride: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read> labels: array<u32>;
@group(0) @binding(2) var<storage, read> targets: array<f32>;
@group(0) @binding(3) var<storage, read_write> grad: array<f32>;
@group(0) @binding(4) var<storage, read_write> row_stats: array<f32>;   // [rows][2]: loss, correct
@group(0) @binding(5) var<storage, read_write> totals: array<f32>;      // TOTAL_* below
@group(0) @binding(6) var<uniform> p: LossParams;

// This workgroup's model (`set_model`, which every entry point calls first).
var<private> model: u32;

fn set_model(z: u32) {
    model = z;
}

// Where loss_rows.wgsl's row functions read and write: the model's slices.
fn logit(i: u32) -> f32 {
    return logits[model * p.logits_model_stride + i];
}

fn set_logit_grad(i: u32, v: f32) {
    grad[model * p.grad_model_stride + i] = v;
}

fn row_label(r: u32) -> u32 {
    return labels[model * p.labels_model_stride + r];
}

fn row_target(i: u32) -> f32 {
    return targets[model * p.targets_model_stride + i];
}

fn total_at(t: u32) -> u32 {
    return model * p.totals_model_stride + t;
}

fn stats_at(r: u32) -> u32 {
    return model * p.row_stats_model_stride + 2u * r;
}

fn set_row_stats(r: u32, s: vec2<f32>) {
    row_stats[stats_at(r)] = s.x;
    row_stats[stats_at(r) + 1u] = s.y;
}

// Softmax cross-entropy per row (loss_rows.wgsl's cross_entropy_row).
@compute @workgroup_size(64, 1, 1)
fn cross_entropy(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    set_model(wg.z);
    let r = flat_group(wg, nwg) * 64u + li;
    if (r < p.rows) {
        cross_entropy_row(r);
    }
}

// Mean squared error per row.
@compute @workgroup_size(64, 1, 1)
fn mse(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    set_model(wg.z);
    let r = flat_group(wg, nwg) * 64u + li;
    if (r < p.rows) {
        mse_row(r);
    }
}

// One workgroup: strided partial sums, then a tree, always in the same order.
@compute @workgroup_size(256, 1, 1)
fn loss_reduce(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    set_model(wg.z);
    var sl = 0.0;
    var sc = 0.0;
    for (var r = li; r < p.rows; r += 256u) {
        sl += row_stats[stats_at(r)];
        sc += row_stats[stats_at(r) + 1u];
    }
    part_loss[li] = sl;
    part_correct[li] = sc;
    workgroupBarrier();
    reduce_parts(li, 128u, 256u);
}

// A batch of at most 64 rows in one dispatch: each invocation one row, then the tree. Saves a
// dispatch per step for small batches.
@compute @workgroup_size(ONE_GROUP_ROWS, 1, 1)
fn cross_entropy_reduced(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    set_model(wg.z);
    var stats = vec2<f32>(0.0);
    if (li < p.rows) {
        stats = cross_entropy_row(li);
    }
    reduce_one_group(li, stats);
}

@compute @workgroup_size(ONE_GROUP_ROWS, 1, 1)
fn mse_reduced(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    set_model(wg.z);
    var stats = vec2<f32>(0.0);
    if (li < p.rows) {
        stats = mse_row(li);
    }
    reduce_one_group(li, stats);
}
