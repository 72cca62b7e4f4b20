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

// `matmul_direct` with its loads from the windows: each of the 8×8 invocations owns an 8×8 block.
@compute @workgroup_size(8, 8, 1)
fn matmul_uniform(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let tile = flat_group(wg, nwg);
    if (tile >= p.tiles_total) {
        return;
    }
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
        let b_lo = vec4<f32>(load_b_window(k, col), load_b_window(k, col + 1u), load_b_window(k, col + 2u), load_b_window(k, col + 3u));
        let b_hi = vec4<f32>(load_b_window(k, col + 4u), load_b_window(k, col + 5u), load_b_window(k, col + 6u), load_b_window(k, col + 7u));
        for (var i = 0u; i < 8u; i++) {
            let av = load_a_window(r + i, k);
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
