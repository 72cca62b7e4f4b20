// Shared by every kernel file: the host prepends this to each one (see src/gpu/shaders.rs).

// Activation codes; the same numbers as `Activation::code()` in src/nn/activation.rs.
const ACT_IDENTITY: u32 = 0u;
const ACT_RELU: u32 = 1u;
const ACT_SIGMOID: u32 = 2u;
const ACT_TANH: u32 = 3u;
const ACT_GELU: u32 = 4u;
const ACT_LEAKY_RELU: u32 = 5u;

const WORKGROUP_LIMIT: u32 = 65535u;

// Workgroups are laid out 2-D (x, y) so dispatches beyond 65,535 groups fit; this is the flat index.
fn flat_group(wg: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wg.x + wg.y * nwg.x;
}

// erf by Abramowitz & Stegun 7.1.26: |error| <= 1.5e-7, on the order of one f32 ulp of erf near 1.
fn erf_approx(x: f32) -> f32 {
    let s = sign(x);
    let a = abs(x);
    let t = 1.0 / (1.0 + 0.3275911 * a);
    let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    return s * (1.0 - poly * exp(-a * a));
}

fn sigmoid(x: f32) -> f32 {
    // Two branches so exp never overflows.
    if (x >= 0.0) {
        return 1.0 / (1.0 + exp(-x));
    }
    let e = exp(x);
    return e / (1.0 + e);
}

fn tanh_safe(x: f32) -> f32 {
    // tanh(±15) is ±1 in f32; clamping keeps drivers that build tanh from exp away from inf/inf.
    return tanh(clamp(x, -15.0, 15.0));
}

fn activate(z: f32, act: u32, slope: f32) -> f32 {
    switch act {
        case 1u: { return max(z, 0.0); }
        case 2u: { return sigmoid(z); }
        case 3u: { return tanh_safe(z); }
        case 4u: { return 0.5 * z * (1.0 + erf_approx(z * 0.70710678118654752)); }
        case 5u: { return select(slope * z, z, z > 0.0); }
        default: { return z; }
    }
}

// d act(z) / dz, from the pre-activation z.
fn activate_grad(z: f32, act: u32, slope: f32) -> f32 {
    switch act {
        case 1u: { return select(0.0, 1.0, z > 0.0); }
        case 2u: { let s = sigmoid(z); return s * (1.0 - s); }
        case 3u: { let t = tanh_safe(z); return 1.0 - t * t; }
        case 4u: {
            let cdf = 0.5 * (1.0 + erf_approx(z * 0.70710678118654752));
            let pdf = 0.39894228040143268 * exp(-0.5 * z * z);
            return cdf + z * pdf;
        }
        case 5u: { return select(slope, 1.0, z > 0.0); }
        default: { return 1.0; }
    }
}

// d² act(z) / dz², from the pre-activation z: the R-operator's backward pass (hvp.wgsl).
fn activate_second(z: f32, act: u32) -> f32 {
    switch act {
        case 2u: { let s = sigmoid(z); return s * (1.0 - s) * (1.0 - 2.0 * s); }
        case 3u: { let t = tanh_safe(z); return -2.0 * t * (1.0 - t * t); }
        case 4u: { return 0.39894228040143268 * exp(-0.5 * z * z) * (2.0 - z * z); }
        default: { return 0.0; }   // identity, ReLU and leaky ReLU are piecewise linear
    }
}
