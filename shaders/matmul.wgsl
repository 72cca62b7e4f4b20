// Tiled matrix products for dense layers.
//
//   C[m, n] = epilogue( sum_k A[m, k] * B[k, n] )
//
// A and B are read through strides, so X·Wᵀ, dY·W and dYᵀ·X all use this one kernel without
// materialising a transpose. Workgroup z picks a model of a batch laid out side by side, each
// binding's offset moved by its model stride (0 for a binding the models share). Each workgroup computes a 64×64 tile of C; each of its 16×16 threads
// a 4×4 block held in four vec4 accumulators.

struct MatmulParams {
    m: u32,
    n: u32,
    k: u32,
    tiles_n: u32,       // ceil(n / 64): the flat workgroup index splits into (tile row, tile column)
    a_offset: u32,      // all offsets and strides are in f32 elements
    a_stride_m: u32,
    a_stride_k: u32,
    b_offset: u32,
    b_stride_k: u32,
    b_stride_n: u32,
    c_offset: u32,
    bias_offset: u32,
    flags: u32,         // FLAG_* below: the pipeline's EPILOGUE_FLAGS (the kernel reads the constant)
    act: u32,           // activation code (common.wgsl): the pipeline's EPILOGUE_ACT
    slope: f32,         // leaky ReLU negative slope
    tiles_total: u32,
    // A batch of models (workgroup z is the model): each binding's offset moves by its stride
    // per model. `models` (0 or 1: one) is the host's, for the bounds check and the grid.
    models: u32,
    a_model_stride: u32,
    b_model_stride: u32,
    c_model_stride: u32,     // also moves the row sums at bias_offset of c
    aux_model_stride: u32,
    bias_model_stride: u32,
    _pad0: u32,
    _pad1: u32,
}

const FLAG_BIAS: u32 = 1u;           // add bias[n] (forward)
const FLAG_STORE_PREACT: u32 = 2u;   // write z to `aux` before the activation (forward, kept for backward)
const FLAG_ACT_GRAD: u32 = 4u;       // multiply by act'(aux[m, n]) (backward: dZ = (dY·W) ⊙ act'(Z))
const FLAG_ACCUMULATE: u32 = 8u;     // add to c instead of overwriting (a value with two consumers)
const FLAG_ADD_SKIP: u32 = 32u;      // add aux[m, n] after the activation (a residual sum; aux is not z then)
const FLAG_ROW_SUM: u32 = 16u;       // also write sum_k A[m, k] to c[bias_offset + m] (dW = dZᵀ·X: the bias gradient)

// Each flags × activation combination is its own pipeline (`MatmulParams::epilogue` on the host):
// as constants the driver folds the epilogue's branches away, where a uniform would leave every
// activation's code in every store (on lavapipe that cost up to 40 % of a product, and seconds
// of compile time).
override EPILOGUE_FLAGS: u32 = 0u;
override EPILOGUE_ACT: u32 = 0u;

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
@group(0) @binding(4) var<storage, read_write> aux: array<f32>;
@group(0) @binding(5) var<uniform> p: MatmulParams;

const TILE: u32 = 64u;
const TILE_K: u32 = 16u;

// Tiles are stored as vec4s so the inner loop is two shared-memory loads and four vec4 FMAs.
var<workgroup> a_tile: array<vec4<f32>, 256>;   // [TILE_K][TILE / 4]: 4 consecutive rows of A at one k
var<workgroup> b_tile: array<vec4<f32>, 256>;   // [TILE_K][TILE / 4]: 4 consecutive columns of B at one k

// This workgroup's model's bases (`set_model`, which every entry point calls first, also those
// of the files compiled after this one): its offsets moved by the model's strides.
var<private> a_base: u32;
var<private> b_base: u32;
var<private> c_base: u32;
var<private> sum_base: u32;
var<private> aux_base: u32;
var<private> bias_base: u32;

fn set_model(model: u32) {
    a_base = p.a_offset + model * p.a_model_stride;
    b_base = p.b_offset + model * p.b_model_stride;
    c_base = p.c_offset + model * p.c_model_stride;
    sum_base = p.bias_offset + model * p.c_model_stride;
    aux_base = model * p.aux_model_stride;
    bias_base = p.bias_offset + model * p.bias_model_stride;
}

fn load_a(r: u32, k: u32) -> f32 {
    if (r < p.m && k < p.k) {
        return a[a_base + r * p.a_stride_m + k * p.a_stride_k];
    }
    return 0.0;
}

fn load_b(k: u32, col: u32) -> f32 {
    if (k < p.k && col < p.n) {
        return b[b_base + k * p.b_stride_k + col * p.b_stride_n];
    }
    return 0.0;
}

fn store_c(r: u32, col: u32, acc: f32) {
    if (r >= p.m || col >= p.n) {
        return;
    }
    var z = acc;
    if ((EPILOGUE_FLAGS & FLAG_BIAS) != 0u) {
        z += bias[bias_base + col];
    }
    let out = r * p.n + col;
    if ((EPILOGUE_FLAGS & FLAG_STORE_PREACT) != 0u) {
        aux[aux_base + out] = z;
    }
    var v: f32;
    if ((EPILOGUE_FLAGS & FLAG_ACT_GRAD) != 0u) {
        v = z * activate_grad(aux[aux_base + out], EPILOGUE_ACT, p.slope);
    } else {
        v = activate(z, EPILOGUE_ACT, p.slope);
    }
    if ((EPILOGUE_FLAGS & FLAG_ADD_SKIP) != 0u) {
        v += aux[aux_base + out];
    }
    if ((EPILOGUE_FLAGS & FLAG_ACCUMULATE) != 0u) {
        v += c[c_base + out];
    }
    c[c_base + out] = v;
}

// Row r's sum of A (FLAG_ROW_SUM), summed in k order: written by the invocation that owns column 0.
fn store_row_sum(r: u32, col: u32, sum: f32) {
    if (col != 0u || r >= p.m) {
        return;
    }
    var v = sum;
    if ((EPILOGUE_FLAGS & FLAG_ACCUMULATE) != 0u) {
        v += c[sum_base + r];
    }
    c[sum_base + r] = v;
}

fn store_row(r: u32, col: u32, acc: vec4<f32>) {
    store_c(r, col, acc.x);
    store_c(r, col + 1u, acc.y);
    store_c(r, col + 2u, acc.z);
    store_c(r, col + 3u, acc.w);
}

// Each thread owns rows 4·ty..4·ty+3 and columns 4·tx..4·tx+3 of the tile.
@compute @workgroup_size(16, 16, 1)
fn matmul(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let tile = flat_group(wg, nwg);
    if (tile >= p.tiles_total) {
        return;   // uniform across the workgroup: padding groups of a split dispatch
    }
    set_model(wg.z);
    let row0 = (tile / p.tiles_n) * TILE;
    let col0 = (tile % p.tiles_n) * TILE;
    let tx = lid.x;
    let ty = lid.y;
    // Loading roles: thread li fetches 4 rows of A at one k, and 4 columns of B at one k.
    let a_k = li % TILE_K;
    let a_r = row0 + (li / TILE_K) * 4u;
    let b_k = li / 16u;
    let b_c = col0 + (li % 16u) * 4u;

    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    var row_sums = vec4<f32>(0.0);   // FLAG_ROW_SUM: sum over k of A for rows 4·ty..4·ty+3

    for (var k0 = 0u; k0 < p.k; k0 += TILE_K) {
        let ka = k0 + a_k;
        a_tile[a_k * 16u + li / TILE_K] = vec4<f32>(load_a(a_r, ka), load_a(a_r + 1u, ka), load_a(a_r + 2u, ka), load_a(a_r + 3u, ka));
        let kb = k0 + b_k;
        b_tile[b_k * 16u + li % 16u] = vec4<f32>(load_b(kb, b_c), load_b(kb, b_c + 1u), load_b(kb, b_c + 2u), load_b(kb, b_c + 3u));
        workgroupBarrier();
        for (var kk = 0u; kk < TILE_K; kk++) {
            let av = a_tile[kk * 16u + ty];
            let bv = b_tile[kk * 16u + tx];
            if ((EPILOGUE_FLAGS & FLAG_ROW_SUM) != 0u) {
                row_sums += av;
            }
            acc0 += av.x * bv;
            acc1 += av.y * bv;
            acc2 += av.z * bv;
            acc3 += av.w * bv;
        }
        workgroupBarrier();
    }

    let r = row0 + ty * 4u;
    let col = col0 + tx * 4u;
    store_row(r, col, acc0);
    store_row(r + 1u, col, acc1);
    store_row(r + 2u, col, acc2);
    store_row(r + 3u, col, acc3);
    if ((EPILOGUE_FLAGS & FLAG_ROW_SUM) != 0u) {
        store_row_sum(r, col, row_sums.x);
        store_row_sum(r + 1u, col, row_sums.y);
        store_row_sum(r + 2u, col, row_sums.z);
        store_row_sum(r + 3u, col, row_sums.w);
    }
}

// The same product without workgroup memory or barriers, for CPU-backed adapters (lavapipe,
// SwiftShader): there caches do what shared memory does on a GPU, every barrier is a coroutine
// switch, and every load is a per-lane gather, so each of the 8×8 threads owns an 8×8 block and
// does 64 multiply-adds per 16 loads. Same 64×64 tile per workgroup as `matmul`, same grid.
@compute @workgroup_size(8, 8, 1)
fn matmul_direct(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let tile = flat_group(wg, nwg);
    if (tile >= p.tiles_total) {
        return;
    }
    set_model(wg.z);
    let r = (tile / p.tiles_n) * TILE + lid.y * 8u;
    let col = (tile % p.tiles_n) * TILE + lid.x * 8u;
    if (r >= p.m || col >= p.n) {
        return;
    }
    var lo: array<vec4<f32>, 8>;   // columns col..col+3 of rows r..r+7
    var hi: array<vec4<f32>, 8>;   // columns col+4..col+7
    var row_sums: array<f32, 8>;   // FLAG_ROW_SUM: sum over k of A for rows r..r+7
    for (var i = 0u; i < 8u; i++) {
        lo[i] = vec4<f32>(0.0);
        hi[i] = vec4<f32>(0.0);
        row_sums[i] = 0.0;
    }
    for (var k = 0u; k < p.k; k++) {
        let b_lo = vec4<f32>(load_b(k, col), load_b(k, col + 1u), load_b(k, col + 2u), load_b(k, col + 3u));
        let b_hi = vec4<f32>(load_b(k, col + 4u), load_b(k, col + 5u), load_b(k, col + 6u), load_b(k, col + 7u));
        for (var i = 0u; i < 8u; i++) {
            let av = load_a(r + i, k);
            if ((EPILOGUE_FLAGS & FLAG_ROW_SUM) != 0u) {
                row_sums[i] += av;
            }
            lo[i] += av * b_lo;
            hi[i] += av * b_hi;
        }
    }
    for (var i = 0u; i < 8u; i++) {
        store_row(r + i, col, lo[i]);
        store_row(r + i, col + 4u, hi[i]);
        if ((EPILOGUE_FLAGS & FLAG_ROW_SUM) != 0u) {
            store_row_sum(r + i, col, row_sums[i]);
        }
    }
}
