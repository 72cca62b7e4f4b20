// Tiled matrix products for dense layers.
//
//   C[m, n] = epilogue( sum_k A[m, k] * B[k, n] )
//
// A and B are read through strides, so X·Wᵀ, dY·W and dYᵀ·X all use this one kernel without
// materialising a transpose. Each workgroup computes a 64×64 tile of C; each of its 16×16 threads
// a 4×4 block, strided by 16 so neighbouring threads touch neighbouring shared-memory words.

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
    flags: u32,         // FLAG_* below
    act: u32,           // activation code (common.wgsl)
    slope: f32,         // leaky ReLU negative slope
    tiles_total: u32,
}

const FLAG_BIAS: u32 = 1u;           // add bias[n] (forward)
const FLAG_STORE_PREACT: u32 = 2u;   // write z to `aux` before the activation (forward, kept for backward)
const FLAG_ACT_GRAD: u32 = 4u;       // multiply by act'(aux[m, n]) (backward: dZ = (dY·W) ⊙ act'(Z))

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
@group(0) @binding(4) var<storage, read_write> aux: array<f32>;
@group(0) @binding(5) var<uniform> p: MatmulParams;

const TILE: u32 = 64u;
const TILE_K: u32 = 16u;

var<workgroup> a_tile: array<f32, 1024>;   // [TILE_K][TILE], k-major
var<workgroup> b_tile: array<f32, 1024>;   // [TILE_K][TILE]

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
    let row0 = (tile / p.tiles_n) * TILE;
    let col0 = (tile % p.tiles_n) * TILE;
    let tx = lid.x;
    let ty = lid.y;

    var acc: array<array<f32, 4>, 4>;
    for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) {
            acc[i][j] = 0.0;
        }
    }

    for (var k0 = 0u; k0 < p.k; k0 += TILE_K) {
        // Each of the 256 threads loads 4 elements of each tile; out-of-range reads become zero.
        for (var e = 0u; e < 4u; e++) {
            let idx = li + e * 256u;
            let ar = idx / TILE_K;
            let ak = idx % TILE_K;
            let gr = row0 + ar;
            let gk = k0 + ak;
            var av = 0.0;
            if (gr < p.m && gk < p.k) {
                av = a[p.a_offset + gr * p.a_stride_m + gk * p.a_stride_k];
            }
            a_tile[ak * TILE + ar] = av;

            let bk = idx / TILE;
            let bc = idx % TILE;
            let hk = k0 + bk;
            let gc = col0 + bc;
            var bv = 0.0;
            if (hk < p.k && gc < p.n) {
                bv = b[p.b_offset + hk * p.b_stride_k + gc * p.b_stride_n];
            }
            b_tile[bk * TILE + bc] = bv;
        }
        workgroupBarrier();

        for (var kk = 0u; kk < TILE_K; kk++) {
            var ar: array<f32, 4>;
            var br: array<f32, 4>;
            for (var i = 0u; i < 4u; i++) {
                ar[i] = a_tile[kk * TILE + ty + 16u * i];
                br[i] = b_tile[kk * TILE + tx + 16u * i];
            }
            for (var i = 0u; i < 4u; i++) {
                for (var j = 0u; j < 4u; j++) {
                    acc[i][j] = fma(ar[i], br[j], acc[i][j]);
                }
            }
        }
        workgroupBarrier();
    }

    for (var i = 0u; i < 4u; i++) {
        let r = row0 + ty + 16u * i;
        if (r >= p.m) {
            continue;
        }
        for (var j = 0u; j < 4u; j++) {
            let col = col0 + tx + 16u * j;
            if (col >= p.n) {
                continue;
            }
            var z = acc[i][j];
            if ((p.flags & FLAG_BIAS) != 0u) {
                z += bias[p.bias_offset + col];
            }
            let out = r * p.n + col;
            if ((p.flags & FLAG_STORE_PREACT) != 0u) {
                aux[out] = z;
            }
            if ((p.flags & FLAG_ACT_GRAD) != 0u) {
                c[p.c_offset + out] = z * activate_grad(aux[out], p.act, p.slope);
            } else {
                c[p.c_offset + out] = activate(z, p.act, p.slope);
            }
        }
    }
}

// dbias[n] = sum over rows of dZ[m, n], with dZ bound as `a` (m rows, n columns, row-major) and the
// result written to c[c_offset + n]. One thread per column, rows summed in order: deterministic.
@compute @workgroup_size(256, 1, 1)
fn bias_grad(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let col = flat_group(wg, nwg) * 256u + li;
    if (col >= p.n) {
        return;
    }
    var s = 0.0;
    for (var r = 0u; r < p.m; r++) {
        s += a[p.a_offset + r * p.n + col];
    }
    c[p.c_offset + col] = s;
}
