// The matrix product through sampled textures, for CPU-backed adapters (lavapipe).
//
// Compiled after matmul.wgsl (MatmulParams, load_a/load_b, store_c, the same 64×64 tile grid).
// On llvmpipe every storage-buffer load is a per-lane scalar loop (about 20–40 cycles a float),
// while a texel fetch is one unrolled gather of four floats; measured on lavapipe at 1024³ the
// same register blocking runs 7–8× faster reading textures than reading buffers. So each product
// is two dispatches: `matmul_pack` copies A and B (through their strides) into rgba32float
// textures, four consecutive k per texel, and `matmul_packed` multiplies them.
//
//   a_packed[row, q] = A[row, 4q .. 4q+3]     (width ceil(k/4), height m)
//   b_packed[col, q] = B[4q .. 4q+3, col]     (width ceil(k/4), height n)
//
// Texels past k hold zeros, so the last partial quad adds nothing.

@group(0) @binding(6) var a_packed: texture_2d<f32>;
@group(0) @binding(7) var b_packed: texture_2d<f32>;
@group(0) @binding(8) var a_pack_out: texture_storage_2d<rgba32float, write>;
@group(0) @binding(9) var b_pack_out: texture_storage_2d<rgba32float, write>;

// One invocation per texel of A's texture, then of B's: ceil(k/4)·(m + n) in all.
@compute @workgroup_size(256, 1, 1)
fn matmul_pack(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    set_model(0u);   // one model: this schedule takes no batch
    let i = flat_group(wg, nwg) * 256u + li;
    let quads = (p.k + 3u) / 4u;
    let a_texels = quads * p.m;
    if (i < a_texels) {
        let r = i / quads;
        let k = (i % quads) * 4u;
        let v = vec4<f32>(load_a(r, k), load_a(r, k + 1u), load_a(r, k + 2u), load_a(r, k + 3u));
        textureStore(a_pack_out, vec2<u32>(i % quads, r), v);
        return;
    }
    let j = i - a_texels;
    if (j < quads * p.n) {
        let col = j / quads;
        let k = (j % quads) * 4u;
        let v = vec4<f32>(load_b(k, col), load_b(k + 1u, col), load_b(k + 2u, col), load_b(k + 3u, col));
        textureStore(b_pack_out, vec2<u32>(j % quads, col), v);
    }
}

// Rows and columns past the edge fetch the last real one (coordinates stay inside the texture);
// their sums are never stored.
fn b_quad(col: u32, q: u32) -> vec4<f32> {
    return textureLoad(b_packed, vec2<u32>(q, min(col, p.n - 1u)), 0);
}

// Each of the 8×4 invocations owns a 16 × 8 block of the 64×64 tile: per quad of k it fetches
// 16 + 8 texels and does 512 multiply-adds (measured fastest of 4×8, 8×8 and 16×8 on lavapipe).
@compute @workgroup_size(8, 4, 1)
fn matmul_packed(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    set_model(0u);
    let tile = flat_group(wg, nwg);
    if (tile >= p.tiles_total) {
        return;
    }
    let r = (tile / p.tiles_n) * TILE + lid.y * 16u;
    let col = (tile % p.tiles_n) * TILE + lid.x * 8u;
    if (r >= p.m || col >= p.n) {
        return;
    }
    var lo: array<vec4<f32>, 16>;   // columns col..col+3 of rows r..r+15
    var hi: array<vec4<f32>, 16>;   // columns col+4..col+7
    var row_sums: array<f32, 16>;   // FLAG_ROW_SUM: sum over k of A for rows r..r+15
    for (var i = 0u; i < 16u; i++) {
        lo[i] = vec4<f32>(0.0);
        hi[i] = vec4<f32>(0.0);
        row_sums[i] = 0.0;
    }
    let quads = (p.k + 3u) / 4u;
    for (var q = 0u; q < quads; q++) {
        // Columns of these matrices are B's columns: a_quad · b_lo = four dot products over 4 k.
        let b_lo = mat4x4<f32>(b_quad(col, q), b_quad(col + 1u, q), b_quad(col + 2u, q), b_quad(col + 3u, q));
        let b_hi = mat4x4<f32>(b_quad(col + 4u, q), b_quad(col + 5u, q), b_quad(col + 6u, q), b_quad(col + 7u, q));
        for (var i = 0u; i < 16u; i++) {
            let a_quad = textureLoad(a_packed, vec2<u32>(q, min(r + i, p.m - 1u)), 0);
            if ((EPILOGUE_FLAGS & FLAG_ROW_SUM) != 0u) {
                row_sums[i] = row_sums[i] + a_quad.x + a_quad.y + a_quad.z + a_quad.w;   // k order
            }
            lo[i] += a_quad * b_lo;
            hi[i] += a_quad * b_hi;
        }
    }
    for (var i = 0u; i < 16u; i++) {
        store_row(r + i, col, lo[i]);
        store_row(r + i, col + 4u, hi[i]);
        if ((EPILOGUE_FLAGS & FLAG_ROW_SUM) != 0u) {
            store_row_sum(r + i, col, row_sums[i]);
        }
    }
}
