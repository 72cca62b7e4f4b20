// Dropout (torch's inverted dropout) and the Philox4x32-10 generator its mask is drawn from:
// element i of layer `layer` at optimizer step `step` is kept iff the top 24 bits of word i % 4
// of Philox(counter (i / 4, step, layer, 0), key) are >= `threshold` (⌈p·2²⁴⌉), and then scaled by
// `scale` = 1/(1 − p). src/reference/dropout.rs and philox.rs draw the identical mask. The
// backward pass applies the same entry to dy: the mask is recomputed, never stored.

struct DropoutParams {
    len: u32,
    step: u32,
    layer: u32,
    threshold: u32,
    key0: u32,
    key1: u32,
    scale: f32,
    flags: u32,   // DROPOUT_ACCUMULATE: add the result to y (a value read by two stages)
}

const DROPOUT_ACCUMULATE: u32 = 1u;

// Philox4x32's round multipliers and key increments (reference/philox.rs's, checked by naga).
const PHILOX_M0: u32 = 0xD2511F53u;
const PHILOX_M1: u32 = 0xCD9E8D57u;
const PHILOX_W0: u32 = 0x9E3779B9u;
const PHILOX_W1: u32 = 0xBB67AE85u;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<uniform> p: DropoutParams;

// (high, low) words of the 64-bit product a·b, from 16-bit halves (WGSL has no 64-bit integers).
fn mulhilo(a: u32, b: u32) -> vec2<u32> {
    let al = a & 0xffffu;
    let ah = a >> 16u;
    let bl = b & 0xffffu;
    let bh = b >> 16u;
    let lolo = al * bl;
    let t1 = ah * bl;
    let t2 = al * bh;
    let mid = (lolo >> 16u) + (t1 & 0xffffu) + (t2 & 0xffffu);
    let hi = ah * bh + (t1 >> 16u) + (t2 >> 16u) + (mid >> 16u);
    return vec2<u32>(hi, a * b);
}

fn philox4x32_10(counter: vec4<u32>, key: vec2<u32>) -> vec4<u32> {
    var c = counter;
    var k = key;
    for (var r = 0u; r < 10u; r = r + 1u) {
        if (r > 0u) {
            k = k + vec2<u32>(PHILOX_W0, PHILOX_W1);
        }
        let p0 = mulhilo(PHILOX_M0, c.x);
        let p1 = mulhilo(PHILOX_M1, c.z);
        c = vec4<u32>(p1.x ^ c.y ^ k.x, p1.y, p0.x ^ c.w ^ k.y, p0.y);
    }
    return c;
}

fn keep(i: u32) -> bool {
    let words = philox4x32_10(vec4<u32>(i / 4u, p.step, p.layer, 0u), vec2<u32>(p.key0, p.key1));
    return (words[i % 4u] >> 8u) >= p.threshold;
}

// y (+)= mask ⊙ x · scale: the forward pass on x, the backward pass on dy.
@compute @workgroup_size(256, 1, 1)
fn dropout_apply(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let i = flat_group(wg, nwg) * 256u + li;
    if (i >= p.len) {
        return;
    }
    // Threshold 0 keeps every element (evaluation, p = 0): no mask to draw. `||` short-circuits.
    let kept = p.threshold == 0u || keep(i);
    let v = select(0.0, x[i] * p.scale, kept);
    if ((p.flags & DROPOUT_ACCUMULATE) != 0u) {
        y[i] = y[i] + v;
    } else {
        y[i] = v;
    }
}

// y[4j .. 4j + 4] = the raw words of Philox(counter (j, step, layer, 0), key), as bits: for the
// known-answer test against Random123's vectors (`len` counts words).
@compute @workgroup_size(256, 1, 1)
fn philox_words(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let i = flat_group(wg, nwg) * 256u + li;
    if (i >= p.len) {
        return;
    }
    let words = philox4x32_10(vec4<u32>(i / 4u + p.threshold, p.step, p.layer, p.flags), vec2<u32>(p.key0, p.key1));
    y[i] = bitcast<f32>(words[i % 4u]);
}
