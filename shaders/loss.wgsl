// Losses with their gradients, mean-reduced over the batch as PyTorch does.
//
// Each loss kernel writes, per row, the row's loss and whether its argmax hit the label; then
// `loss_reduce` sums those rows in a fixed order (the same bits every run), writes the batch mean,
// and adds to the running epoch totals, so the host reads back only when it wants a number.

struct LossParams {
    rows: u32,
    cols: u32,
    use_targets: u32,   // MSE: 1 = compare with `targets`, 0 = with one-hot labels
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read> labels: array<u32>;
@group(0) @binding(2) var<storage, read> targets: array<f32>;
@group(0) @binding(3) var<storage, read_write> grad: array<f32>;
@group(0) @binding(4) var<storage, read_write> row_stats: array<f32>;   // [rows][2]: loss, correct
@group(0) @binding(5) var<storage, read_write> totals: array<f32>;      // TOTAL_* below
@group(0) @binding(6) var<uniform> p: LossParams;

const TOTAL_STEP_LOSS: u32 = 0u;    // mean loss of the last batch
const TOTAL_LOSS_SUM: u32 = 1u;     // sum of per-sample losses since the host last cleared it
const TOTAL_CORRECT: u32 = 2u;      // correct predictions since then
const TOTAL_COUNT: u32 = 3u;        // samples since then
const TOTAL_STEPS: u32 = 4u;        // steps since then
const TOTAL_FIRST_BAD: u32 = 5u;    // 1-based step (since then) whose mean loss was NaN or ±Inf; 0: none
const TOTAL_BAD_LOSS: u32 = 6u;     // that step's loss

// By the bits, so no fast-math assumption can fold the test away.
fn is_finite(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u;
}

// Index of the first maximum, as torch.argmax.
fn row_argmax(base: u32) -> u32 {
    var best = 0u;
    var best_v = logits[base];
    for (var c = 1u; c < p.cols; c++) {
        let v = logits[base + c];
        if (v > best_v) {
            best_v = v;
            best = c;
        }
    }
    return best;
}

// Softmax cross-entropy: loss = logsumexp(z) - z[label]; dz = (softmax(z) - onehot) / rows.
// Subtracting the row maximum keeps exp in range for logits of any magnitude.
@compute @workgroup_size(64, 1, 1)
fn cross_entropy(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let r = flat_group(wg, nwg) * 64u + li;
    if (r < p.rows) {
        cross_entropy_row(r);
    }
}

// One row's loss and gradient; writes and returns (loss, correct).
fn cross_entropy_row(r: u32) -> vec2<f32> {
    let base = r * p.cols;
    let label = labels[r];
    let arg = row_argmax(base);
    let zmax = logits[base + arg];
    var s = 0.0;
    for (var c = 0u; c < p.cols; c++) {
        s += exp(logits[base + c] - zmax);
    }
    let lse = zmax + log(s);
    let inv_rows = 1.0 / f32(p.rows);
    for (var c = 0u; c < p.cols; c++) {
        let prob = exp(logits[base + c] - zmax) / s;
        let onehot = select(0.0, 1.0, c == label);
        grad[base + c] = (prob - onehot) * inv_rows;
    }
    var loss = lse - logits[base + min(label, p.cols - 1u)];
    if (label >= p.cols) {
        loss = bitcast<f32>(0x7fc00000u);   // NaN: a label the host failed to check must not pass silently
    }
    let stats = vec2<f32>(loss, select(0.0, 1.0, arg == label));
    row_stats[2u * r] = stats.x;
    row_stats[2u * r + 1u] = stats.y;
    return stats;
}

// Mean squared error over all elements: loss = sum((y - t)^2) / (rows * cols); dy = 2 (y - t) / (rows * cols).
@compute @workgroup_size(64, 1, 1)
fn mse(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let r = flat_group(wg, nwg) * 64u + li;
    if (r < p.rows) {
        mse_row(r);
    }
}

fn mse_row(r: u32) -> vec2<f32> {
    let base = r * p.cols;
    let label = labels[r];
    let scale = 2.0 / (f32(p.rows) * f32(p.cols));
    var s = 0.0;
    for (var c = 0u; c < p.cols; c++) {
        var t = select(0.0, 1.0, c == label);
        if (p.use_targets != 0u) {
            t = targets[base + c];
        }
        let d = logits[base + c] - t;
        s += d * d;
        grad[base + c] = scale * d;
    }
    var correct = 0.0;
    if (p.use_targets == 0u && row_argmax(base) == label) {
        correct = 1.0;
    }
    let stats = vec2<f32>(s / f32(p.cols), correct);
    row_stats[2u * r] = stats.x;
    row_stats[2u * r + 1u] = stats.y;
    return stats;
}

var<workgroup> part_loss: array<f32, 256>;
var<workgroup> part_correct: array<f32, 256>;

// One workgroup: strided partial sums, then a tree, always in the same order.
@compute @workgroup_size(256, 1, 1)
fn loss_reduce(@builtin(local_invocation_index) li: u32) {
    var sl = 0.0;
    var sc = 0.0;
    for (var r = li; r < p.rows; r += 256u) {
        sl += row_stats[2u * r];
        sc += row_stats[2u * r + 1u];
    }
    part_loss[li] = sl;
    part_correct[li] = sc;
    workgroupBarrier();
    reduce_parts(li, 128u);
}

// Sums part_* pairwise from `top` down (the tree of loss_reduce) and updates the totals.
fn reduce_parts(li: u32, top: u32) {
    for (var stride = top; stride > 0u; stride >>= 1u) {
        if (li < stride) {
            part_loss[li] += part_loss[li + stride];
            part_correct[li] += part_correct[li + stride];
        }
        workgroupBarrier();
    }
    if (li == 0u) {
        let sum = part_loss[0];
        let mean = sum / f32(p.rows);
        totals[TOTAL_STEP_LOSS] = mean;
        totals[TOTAL_LOSS_SUM] += sum;
        totals[TOTAL_CORRECT] += part_correct[0];
        totals[TOTAL_COUNT] += f32(p.rows);
        // Divergence is caught at the step it happens, without the host reading every loss.
        totals[TOTAL_STEPS] += 1.0;
        if (!is_finite(mean) && totals[TOTAL_FIRST_BAD] == 0.0) {
            totals[TOTAL_FIRST_BAD] = totals[TOTAL_STEPS];
            totals[TOTAL_BAD_LOSS] = mean;
        }
    }
}

const ONE_GROUP_ROWS: u32 = 64u;

// A batch of at most 64 rows in one dispatch: each invocation one row, then the same tree from
// stride 32 (loss_reduce's strides 128 and 64 only add zeros for such a batch, so the bits are
// those of the two-dispatch path). Saves a dispatch per step for small batches.
@compute @workgroup_size(ONE_GROUP_ROWS, 1, 1)
fn cross_entropy_reduced(@builtin(local_invocation_index) li: u32) {
    var stats = vec2<f32>(0.0);
    if (li < p.rows) {
        stats = cross_entropy_row(li);
    }
    reduce_one_group(li, stats);
}

@compute @workgroup_size(ONE_GROUP_ROWS, 1, 1)
fn mse_reduced(@builtin(local_invocation_index) li: u32) {
    var stats = vec2<f32>(0.0);
    if (li < p.rows) {
        stats = mse_row(li);
    }
    reduce_one_group(li, stats);
}

// The one-workgroup reduction: invocation li's row statistics (zero past the batch) summed.
fn reduce_one_group(li: u32, stats: vec2<f32>) {
    part_loss[li] = stats.x;
    part_correct[li] = stats.y;
    workgroupBarrier();
    reduce_parts(li, ONE_GROUP_ROWS / 2u);
}
