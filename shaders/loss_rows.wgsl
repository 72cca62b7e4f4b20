// The losses' per-row maths and the one-workgroup reduction into the running totals, shared by
// loss.wgsl (a launch per loss) and small_net.wgsl (the whole step in one launch), so the two
// give the same bits. Not a kernel of its own: the file that builds on it declares the uniform
// `p` (with `rows`, `cols`, `use_targets`), the `totals` buffer, and where a row's numbers live:
//   fn logit(i: u32) -> f32                   the network's output, [rows][cols]
//   fn set_logit_grad(i: u32, v: f32)         its gradient, same layout
//   fn row_label(r: u32) -> u32               row r's class
//   fn row_target(i: u32) -> f32              MSE's target (read only when p.use_targets != 0)
//   fn set_row_stats(r: u32, s: vec2<f32>)    row r's (loss, correct)
//   fn total_at(t: u32) -> u32                where TOTAL_* t lives in `totals`

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
    var best_v = logit(base);
    for (var c = 1u; c < p.cols; c++) {
        let v = logit(base + c);
        if (v > best_v) {
            best_v = v;
            best = c;
        }
    }
    return best;
}

// Softmax cross-entropy of row r: loss = logsumexp(z) - z[label]; dz = (softmax(z) - onehot) / rows.
// Subtracting the row maximum keeps exp in range for logits of any magnitude. Writes the
// gradient and the row's statistics; returns (loss, correct).
fn cross_entropy_row(r: u32) -> vec2<f32> {
    let base = r * p.cols;
    let label = row_label(r);
    let arg = row_argmax(base);
    let zmax = logit(base + arg);
    var s = 0.0;
    for (var c = 0u; c < p.cols; c++) {
        s += exp(logit(base + c) - zmax);
    }
    let lse = zmax + log(s);
    let inv_rows = 1.0 / f32(p.rows);
    for (var c = 0u; c < p.cols; c++) {
        let prob = exp(logit(base + c) - zmax) / s;
        let onehot = select(0.0, 1.0, c == label);
        set_logit_grad(base + c, (prob - onehot) * inv_rows);
    }
    var loss = lse - logit(base + min(label, p.cols - 1u));
    if (label >= p.cols) {
        // NaN: a label the host failed to check must not pass silently. Through a `let`, not a
        // constant: WebGPU (Tint) const-evaluates bitcast<f32>(0x7fc00000u) and refuses the NaN.
        let nan_bits = 0x7fc00000u;
        loss = bitcast<f32>(nan_bits);
    }
    let stats = vec2<f32>(loss, select(0.0, 1.0, arg == label));
    set_row_stats(r, stats);
    return stats;
}

// Mean squared error over all elements: loss = sum((y - t)^2) / (rows * cols); dy = 2 (y - t) / (rows * cols).
fn mse_row(r: u32) -> vec2<f32> {
    let base = r * p.cols;
    let label = row_label(r);
    let scale = 2.0 / (f32(p.rows) * f32(p.cols));
    var s = 0.0;
    for (var c = 0u; c < p.cols; c++) {
        var t = select(0.0, 1.0, c == label);
        if (p.use_targets != 0u) {
            t = row_target(base + c);
        }
        let d = logit(base + c) - t;
        s += d * d;
        set_logit_grad(base + c, scale * d);
    }
    var correct = 0.0;
    if (p.use_targets == 0u && row_argmax(base) == label) {
        correct = 1.0;
    }
    let stats = vec2<f32>(s / f32(p.cols), correct);
    set_row_stats(r, stats);
    return stats;
}

var<workgroup> part_loss: array<f32, 256>;
var<workgroup> part_correct: array<f32, 256>;

// Sums part_* pairwise from `top` down and updates the totals; `lanes` invocations share each
// level (the pairs are the same whatever their number, so are the bits).
fn reduce_parts(li: u32, top: u32, lanes: u32) {
    for (var stride = top; stride > 0u; stride >>= 1u) {
        for (var i = li; i < stride; i += lanes) {
            part_loss[i] += part_loss[i + stride];
            part_correct[i] += part_correct[i + stride];
        }
        workgroupBarrier();
    }
    if (li == 0u) {
        add_to_totals(part_loss[0], part_correct[0]);
    }
}

// The batch's summed loss and correct count into the step loss and the running totals.
fn add_to_totals(sum: f32, correct: f32) {
    let mean = sum / f32(p.rows);
    totals[total_at(TOTAL_STEP_LOSS)] = mean;
    totals[total_at(TOTAL_LOSS_SUM)] += sum;
    totals[total_at(TOTAL_CORRECT)] += correct;
    totals[total_at(TOTAL_COUNT)] += f32(p.rows);
    // Divergence is caught at the step it happens, without the host reading every loss.
    totals[total_at(TOTAL_STEPS)] += 1.0;
    if (!is_finite(mean) && totals[total_at(TOTAL_FIRST_BAD)] == 0.0) {
        totals[total_at(TOTAL_FIRST_BAD)] = totals[total_at(TOTAL_STEPS)];
        totals[total_at(TOTAL_BAD_LOSS)] = mean;
    }
}

const ONE_GROUP_ROWS: u32 = 64u;

// The one-workgroup reduction of a batch of at most 64 rows: invocation li's row statistics
// (zero past the batch) summed by the same tree as loss_reduce from stride 32 (its strides 128
// and 64 only add zeros for such a batch, so the bits are those of the two-dispatch path).
fn reduce_one_group(li: u32, stats: vec2<f32>) {
    part_loss[li] = stats.x;
    part_correct[li] = stats.y;
    workgroupBarrier();
    reduce_parts(li, ONE_GROUP_ROWS / 2u, ONE_GROUP_ROWS);
}
