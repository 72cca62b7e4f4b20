//! matmul.wgsl's parameters and epilogue flags, and the layer launches laid out over them.

use crate::device::{grid, groups_for};
use crate::spec::{Act, Activation};

/// Parameters of `matmul` and `bias_grad` (matmul.wgsl's `MatmulParams`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct MatmulParams {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub tiles_n: u32,
    pub a_offset: u32,
    pub a_stride_m: u32,
    pub a_stride_k: u32,
    pub b_offset: u32,
    pub b_stride_k: u32,
    pub b_stride_n: u32,
    pub c_offset: u32,
    pub bias_offset: u32,
    pub flags: u32,
    pub act: u32,
    pub slope: f32,
    pub tiles_total: u32,
    /// Models of a batch laid out side by side (0 or 1: one), workgroup z of the grid; model z's
    /// operands lie each binding's model stride further on (0 for a binding the models share).
    /// Only the tiled and direct schedules take a batch (`Gpu::matmul`).
    pub models: u32,
    pub a_model_stride: u32,
    pub b_model_stride: u32,
    /// Moves C and the row sums at `bias_offset` of C alike.
    pub c_model_stride: u32,
    pub aux_model_stride: u32,
    pub bias_model_stride: u32,
    pub _pad0: u32,
    pub _pad1: u32,
}

pub const FLAG_BIAS: u32 = 1;
pub const FLAG_STORE_PREACT: u32 = 2;
pub const FLAG_ACT_GRAD: u32 = 4;
pub const FLAG_ACCUMULATE: u32 = 8;
pub const FLAG_ROW_SUM: u32 = 16;
/// Adds `aux` (the skip value of a residual sum) after the activation; aux then holds no z, so
/// it excludes `FLAG_STORE_PREACT` and `FLAG_ACT_GRAD`.
pub const FLAG_ADD_SKIP: u32 = 32;
pub const MATMUL_TILE: u32 = 64;

/// The three products of a Linear layer with `rows` rows, `inputs` in-features and `outputs`
/// out-features, as strides over row-major x [rows, inputs], W [outputs, inputs] and
/// dz [rows, outputs]. These are the only places that lay the products out: training
/// (`GpuNetwork`), the one-shot ops the tests check (`exec::ops`), `bench` and the autotuner all
/// start from them and add offsets, flags and the activation with struct-update syntax.
impl MatmulParams {
    /// y = x·Wᵀ: [rows, inputs]·[inputs, outputs].
    pub fn linear_forward(rows: usize, inputs: usize, outputs: usize) -> MatmulParams {
        let (m, k, n) = (rows as u32, inputs as u32, outputs as u32);
        MatmulParams { m, n, k, a_stride_m: k, a_stride_k: 1, b_stride_k: 1, b_stride_n: k, ..Default::default() }
    }

    /// dx = dz·W: [rows, outputs]·[outputs, inputs].
    pub fn linear_backward_input(rows: usize, inputs: usize, outputs: usize) -> MatmulParams {
        let (m, k, n) = (rows as u32, outputs as u32, inputs as u32);
        MatmulParams { m, n, k, a_stride_m: k, a_stride_k: 1, b_stride_k: n, b_stride_n: 1, ..Default::default() }
    }

    /// dW = dzᵀ·x: [outputs, rows]·[rows, inputs].
    pub fn linear_backward_weight(rows: usize, inputs: usize, outputs: usize) -> MatmulParams {
        let (m, k, n) = (outputs as u32, rows as u32, inputs as u32);
        MatmulParams { m, n, k, a_stride_m: 1, a_stride_k: m, b_stride_k: n, b_stride_n: 1, ..Default::default() }
    }

    /// The weight-gradient launch of a layer: dW = dzᵀ·x and, when it has a bias, in the same
    /// launch the bias gradient db = Σ_rows dz (the row sums of dzᵀ) written at `bias_offset`
    /// of the output buffer.
    pub fn linear_backward_params(
        rows: usize,
        inputs: usize,
        outputs: usize,
        bias_offset: Option<usize>,
    ) -> MatmulParams {
        let dw = MatmulParams::linear_backward_weight(rows, inputs, outputs);
        match bias_offset {
            Some(offset) => MatmulParams { flags: FLAG_ROW_SUM, bias_offset: offset as u32, ..dw },
            None => dw,
        }
    }
}

/// A dense layer's forward epilogue, z = x·Wᵀ (+ b) and y = act(z) (+ skip): the one place its
/// flags are chosen. Training, Hessian products, `exec::ops`, `check` and `bench` all build
/// their forward products through `MatmulParams::dense_forward` with one of these.
#[derive(Clone, Copy, Debug)]
pub struct Epilogue {
    /// Where the bias lies in the bias binding (`FLAG_BIAS`).
    pub bias_at: Option<usize>,
    pub act: Act,
    /// Keep z in aux for the backward pass (`FLAG_STORE_PREACT`).
    pub keep_z: bool,
    /// Add aux after the activation: a residual sum (`FLAG_ADD_SKIP`).
    pub add_skip: bool,
    /// Add to C instead of overwriting it (`FLAG_ACCUMULATE`): a value with two producers.
    pub accumulate: bool,
}

impl Epilogue {
    /// Training's epilogue for a layer with this bias and activation: z is kept exactly when
    /// there is an activation to differentiate (the plan's rule), so a layer without one (every
    /// model's last) runs the bias-only epilogue.
    pub fn dense(bias_at: Option<usize>, act: Act) -> Epilogue {
        let keep_z = act.kind != Activation::Identity;
        Epilogue { bias_at, act, keep_z, add_skip: false, accumulate: false }
    }

    /// A product with no activation: the bias at most, perhaps accumulated (the R-operator's terms).
    pub fn linear(bias_at: Option<usize>, accumulate: bool) -> Epilogue {
        Epilogue { bias_at, act: Act::IDENTITY, keep_z: false, add_skip: false, accumulate }
    }

    /// The epilogue's flags (matmul.wgsl's `FLAG_*`).
    pub fn flags(&self) -> u32 {
        let flag = |on: bool, f: u32| if on { f } else { 0 };
        flag(self.bias_at.is_some(), FLAG_BIAS)
            | flag(self.keep_z, FLAG_STORE_PREACT)
            | flag(self.add_skip, FLAG_ADD_SKIP)
            | flag(self.accumulate, FLAG_ACCUMULATE)
    }
}

/// The layer launches: each lays out the product over the batch and sets offsets and flags.
impl MatmulParams {
    /// y = epilogue(x·Wᵀ) with W at `weight_at` of its buffer.
    pub fn dense_forward(rows: usize, inputs: usize, outputs: usize, weight_at: usize, e: Epilogue) -> MatmulParams {
        MatmulParams {
            b_offset: weight_at as u32,
            bias_offset: e.bias_at.unwrap_or(0) as u32,
            flags: e.flags(),
            act: e.act.kind.code(),
            slope: e.act.slope,
            ..MatmulParams::linear_forward(rows, inputs, outputs)
        }
    }

    /// dX = dZ·W with W at `weight_at`, times act'(z_prev) read from aux when `act_grad` names
    /// the producer's activation, added to dX when `accumulate`.
    pub fn dense_backward_input(
        rows: usize,
        inputs: usize,
        outputs: usize,
        weight_at: usize,
        act_grad: Option<Act>,
        accumulate: bool,
    ) -> MatmulParams {
        let act = act_grad.unwrap_or(Act::IDENTITY);
        let flag = |on: bool, f: u32| if on { f } else { 0 };
        MatmulParams {
            b_offset: weight_at as u32,
            flags: flag(act_grad.is_some(), FLAG_ACT_GRAD) | flag(accumulate, FLAG_ACCUMULATE),
            act: act.kind.code(),
            slope: act.slope,
            ..MatmulParams::linear_backward_input(rows, inputs, outputs)
        }
    }

    /// dW = dZᵀ·X written at `weight_at` of the gradient buffer and db = Σ_rows dZ at `bias_at`,
    /// in one launch, added to what is there when `accumulate`.
    pub fn dense_backward_params(
        rows: usize,
        inputs: usize,
        outputs: usize,
        weight_at: usize,
        bias_at: Option<usize>,
        accumulate: bool,
    ) -> MatmulParams {
        let p = MatmulParams::linear_backward_params(rows, inputs, outputs, bias_at);
        let flags = p.flags | if accumulate { FLAG_ACCUMULATE } else { 0 };
        MatmulParams { c_offset: weight_at as u32, flags, ..p }
    }
}

impl MatmulParams {
    /// Fills in the tile counts for m × n and returns the grid (z: the models).
    pub fn tiled(mut self) -> (MatmulParams, [u32; 3]) {
        self.tiles_n = self.n.div_ceil(MATMUL_TILE);
        self.tiles_total = self.m.div_ceil(MATMUL_TILE) * self.tiles_n;
        let groups = if self.m == 0 || self.n == 0 { 0 } else { self.tiles_total };
        let [x, y, _] = grid(groups);
        (self, [x, y, if groups == 0 { 0 } else { self.model_count() }])
    }

    /// Models the launch multiplies (`models`, where 0 means one).
    pub fn model_count(&self) -> u32 {
        self.models.max(1)
    }

    /// The same product for `models` models, each operand `strides` = (A, B, C, aux, bias)
    /// elements after the previous model's.
    pub fn for_models(self, models: usize, strides: [usize; 5]) -> MatmulParams {
        let [a, b, c, aux, bias] = strides.map(|s| s as u32);
        MatmulParams {
            models: models as u32,
            a_model_stride: a,
            b_model_stride: b,
            c_model_stride: c,
            aux_model_stride: aux,
            bias_model_stride: bias,
            ..self
        }
    }

    /// The epilogue's pipeline constants (matmul.wgsl): a launch's flags and activation select
    /// its pipeline, so they are fixed once the launch is built (a resize changes m or k only).
    pub fn epilogue(&self) -> [(&'static str, u32); 2] {
        [("EPILOGUE_FLAGS", self.flags), ("EPILOGUE_ACT", self.act)]
    }

    /// The grid of `matmul_pack`: one invocation per texel of both packed operands.
    pub fn pack_grid(&self) -> [u32; 3] {
        if self.m == 0 || self.n == 0 {
            return [0; 3];
        }
        let texels = self.k.div_ceil(4) as usize * (self.m as usize + self.n as usize);
        groups_for(texels, 256)
    }
}
