// The matrix product with both operands bound as uniform buffers, for small products on
// CPU-backed adapters (lavapipe).
//
// Compiled after matmul.wgsl (MatmulParams, the epilogue, the same 64×64 tile grid and 8×8 block
// per invocation as `matmul_direct`). On llvmpipe a storage-buffer load is a per-lane loop with a
// branch per lane, a uniform-buffer load an unrolled gather; when A and B each fit one 64 KiB
// window (16,384 floats) the product reads them that way and needs no packing pass, which is
// what a small layer's product spends most of its time on. The host binds a 64 KiB window of
// each operand's buffer starting at the 256-byte boundary at or below its offset, and rebases
// a_offset and b_offset to the window (`Gpu::matmul`); every buffer is allocated with 64 KiB of
// slack so that a window never runs past its end.

const UNIFORM_WINDOW: u32 = 16384u;   // floats per operand window: 4096 vec4

@group(0) @binding(10) var<uniform> a_window: array<vec4<f32>, 4096>;
@group(0) @binding(11) var<uniform> b_window: array<vec4<f32>, 4096>;

fn load_a_window(r: u32, k: u32) -> f32 {
    if (r < p.m && k < p.k) {
        let i = p.a_offset + r * p.a_stride_m + k * p.a_stride_k;
        return a_window[i >> 2u][i & 3u];
    }
    return 0.0;
}

fn load_b_window(k: u32, col: u32) -> f32 {
    if (k < p.k && col < p.n) {
        let i = p.b_offset + k * p.b_stride_k + col * p.b_stride_n;
        return b_window[i >> 2u][i & 3u];
    }
    return 0.0;
}

// How the operands lie in their windows, a pipeline constant the host sets from the strides
// (`MatmulParams::window_layout`): with a stride of 1 along an axis, 4-aligned offsets and other
// strides, four consecutive values are one vec4 load. Without a flag, values are loaded one by one.
override WINDOW_LAYOUT: u32 = 0u;
const A_ALONG_K: u32 = 1u;   // A[r, k..k+3] is one vec4 (forward x, dX's dz)
const A_ALONG_M: u32 = 2u;   // A[r..r+3, k] is one vec4 (dW's dzᵀ)
const B_ALONG_K: u32 = 4u;   // B[k..k+3, col] is one vec4 (forward Wᵀ)
const B_ALONG_N: u32 = 8u;   // B[k, col..col+3] is one vec4 (dX's W, dW's x)

fn a_at(i: u32) -> vec4<f32> {
    return a_window[i >> 2u];
}

fn b_at(i: u32) -> vec4<f32> {
    return b_window[i >> 2u];
}

// 1 for the k of a quad inside the product, 0 past it: values past k may belong to another row
// or tensor and must not reach a sum, even multiplied by zero (they could be inf).
fn k_mask(k0: u32) -> vec4<bool> {
    return vec4<u32>(k0, k0 + 1u, k0 + 2u, k0 + 3u) < vec4<u32>(p.k);
}

// A's rows r..r+7 at k0..k0+3, one vec4 per row.
fn a_quads(r: u32, k0: u32) -> array<vec4<f32>, 8> {
    var q: array<vec4<f32>, 8>;
    let live = k_mask(k0);
    if ((WINDOW_LAYOUT & A_ALONG_K) != 0u) {
        for (var i = 0u; i < 8u; i++) {
            // Rows past m read the last real row (kept inside the window); never stored.
            let row = min(r + i, p.m - 1u);
            q[i] = select(vec4<f32>(0.0), a_at(p.a_offset + row * p.a_stride_m + k0), live);
        }
    } else if ((WINDOW_LAYOUT & A_ALONG_M) != 0u) {
        for (var kk = 0u; kk < 4u; kk++) {
            // Rows r..r+7 at one k: two vec4 (the host leaves 8 values of room past the window's
            // last real one for the rows past m).
            let base = p.a_offset + r * p.a_stride_m + min(k0 + kk, p.k - 1u) * p.a_stride_k;
            let keep = select(0.0, 1.0, live[kk]);
            let lo = a_at(base) * keep;
            let hi = a_at(base + 4u) * keep;
            q[0][kk] = lo.x; q[1][kk] = lo.y; q[2][kk] = lo.z; q[3][kk] = lo.w;
            q[4][kk] = hi.x; q[5][kk] = hi.y; q[6][kk] = hi.z; q[7][kk] = hi.w;
        }
    } else {
        for (var i = 0u; i < 8u; i++) {
            q[i] = vec4<f32>(load_a_window(r + i, k0), load_a_window(r + i, k0 + 1u), load_a_window(r + i, k0 + 2u), load_a_window(r + i, k0 + 3u));
        }
    }
    return q;
}

// B's columns col..col+3 at k0..k0+3 as a matrix whose columns are B's columns, so that
// a_quad * m is four dot products over the quad.
fn b_block(k0: u32, col: u32) -> mat4x4<f32> {
    let live = k_mask(k0);
    if ((WINDOW_LAYOUT & B_ALONG_K) != 0u) {
        var m: mat4x4<f32>;
        for (var j = 0u; j < 4u; j++) {
            let c = min(col + j, p.n - 1u);
            m[j] = select(vec4<f32>(0.0), b_at(p.b_offset + k0 * p.b_stride_k + c * p.b_stride_n), live);
        }
        return m;
    }
    if ((WINDOW_LAYOUT & B_ALONG_N) != 0u) {
        var rows: mat4x4<f32>;
        for (var kk = 0u; kk < 4u; kk++) {
            let base = p.b_offset + min(k0 + kk, p.k - 1u) * p.b_stride_k + col * p.b_stride_n;
            rows[kk] = b_at(base) * select(0.0, 1.0, live[kk]);
        }
        return transpose(rows);
    }
    return mat4x4<f32>(
        vec4<f32>(load_b_window(k0, col), load_b_window(k0 + 1u, col), load_b_window(k0 + 2u, col), load_b_window(k0 + 3u, col)),
        vec4<f32>(load_b_window(k0, col + 1u), load_b_window(k0 + 1u, col + 1u), load_b_window(k0 + 2u, col + 1u), load_b_window(k0 + 3u, col + 1u)),
        vec4<f32>(load_b_window(k0, col + 2u), load_b_window(k0 + 1u, col + 2u), load_b_window(k0 + 2u, col + 2u), load_b_window(k0 + 3u, col + 2u)),
        vec4<f32>(load_b_window(k0, col + 3u), load_b_window(k0 + 1u, col + 3u), load_b_window(k0 + 2u, col + 3u), load_b_window(k0 + 3u, col + 3u)),
    );
}

// One SIMD-wide workgroup of 8 invocations per 64×64 tile (the grid of `matmul_direct`): each
// owns 8 columns and walks the tile's 8 blocks of 8 rows in turn, k four at a time. The rows
// come from the workgroup id and the loop counter alone, so A's addresses are the same in every
// lane and the driver can load them once (llvmpipe turns a non-divergent uniform load into one
// scalar load); only B's differ per lane. Measured against the 8×8-invocation form on the digits
// run: faster in 4 of 4 alternating pairs, 2–16 %.
@compute @workgroup_size(8, 1, 1)
fn matmul_uniform(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    set_model(0u);   // one model: this schedule takes no batch
    let tile = flat_group(wg, nwg);
    if (tile >= p.tiles_total) {
        return;
    }
    let row0 = (tile / p.tiles_n) * TILE;
    let col = (tile % p.tiles_n) * TILE + lid.x * 8u;
    if (col >= p.n) {
        return;
    }
    for (var block = 0u; block < TILE / 8u; block++) {
        let r = row0 + block * 8u;
        if (r >= p.m) {
            break;
        }
        var lo: array<vec4<f32>, 8>;   // columns col..col+3 of rows r..r+7
        var hi: array<vec4<f32>, 8>;   // columns col+4..col+7
        var row_sums: array<f32, 8>;   // FLAG_ROW_SUM: sum over k of A for rows r..r+7
        for (var i = 0u; i < 8u; i++) {
            lo[i] = vec4<f32>(0.0);
            hi[i] = vec4<f32>(0.0);
            row_sums[i] = 0.0;
        }
        for (var k0 = 0u; k0 < p.k; k0 += 4u) {
            let b_lo = b_block(k0, col);
            let b_hi = b_block(k0, col + 4u);
            let a = a_quads(r, k0);
            for (var i = 0u; i < 8u; i++) {
                if ((EPILOGUE_FLAGS & FLAG_ROW_SUM) != 0u) {
                    row_sums[i] = row_sums[i] + a[i].x + a[i].y + a[i].z + a[i].w;   // k order
                }
                lo[i] += a[i] * b_lo;
                hi[i] += a[i] * b_hi;
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
}
