//! Optimizers with torch.optim's defaults and meaning of every hyper-parameter, the course's
//! momentum forms, parameter groups, learning-rate schedules and gradient clipping.
//!
//! Each optimizer is one fused kernel over the flat parameter buffer (optim.wgsl) and one
//! per-element function in `crate::reference::optim`; both read the same `OptimizerStep` numbers.

pub mod groups;
pub mod schedule;

use serde::Deserialize;

pub use groups::{GroupSpec, ParamGroups, MAX_GROUPS};
pub use schedule::Schedule;

/// How momentum is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum MomentumForm {
    /// torch.optim.SGD: buf ← μ·buf + (1 − dampening)·g; p ← p − lr·buf (Nesterov: p ← p − lr·(g + μ·buf)).
    #[default]
    Pytorch,
    /// The course's heavy ball: v ← μ·v − lr·g; x ← x + v. Equal to `pytorch` while lr is constant
    /// (v = −lr·buf); when lr changes, past steps keep the rate they were taken with.
    HeavyBall,
    /// The course's Nesterov: v ← μ·v − lr·∇f(x + μ·v); x ← x + v. The parameters held (where the
    /// gradient is taken) are the look-ahead point y = x + μ·v, so the update is
    /// y ← y + v_new + μ·(v_new − v_old). Equal to `pytorch` with nesterov = true while lr is constant.
    NesterovLookahead,
}

/// `momentum = 0.9`, or `momentum = { value = 0.9, form = "heavy-ball" }`.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum MomentumSpec {
    Value(f64),
    Table {
        #[serde(default = "default_momentum")]
        value: f64,
        #[serde(default)]
        form: MomentumForm,
    },
}

fn default_momentum() -> f64 {
    0.9
}

impl Default for MomentumSpec {
    fn default() -> Self {
        MomentumSpec::Value(0.0)
    }
}

impl MomentumSpec {
    pub fn value(&self) -> f64 {
        match *self {
            MomentumSpec::Value(v) | MomentumSpec::Table { value: v, .. } => v,
        }
    }
    pub fn form(&self) -> MomentumForm {
        match *self {
            MomentumSpec::Value(_) => MomentumForm::Pytorch,
            MomentumSpec::Table { form, .. } => form,
        }
    }
}

/// torch.optim.SGD.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sgd {
    pub lr: f64,
    #[serde(default)]
    pub momentum: MomentumSpec,
    #[serde(default)]
    pub dampening: f64,
    #[serde(default)]
    pub weight_decay: f64,
    #[serde(default)]
    pub nesterov: bool,
}

impl Sgd {
    pub fn new(lr: f64) -> Sgd {
        Sgd { lr, momentum: MomentumSpec::Value(0.0), dampening: 0.0, weight_decay: 0.0, nesterov: false }
    }

    pub fn with_momentum(lr: f64, momentum: f64) -> Sgd {
        Sgd { momentum: MomentumSpec::Value(momentum), ..Sgd::new(lr) }
    }

    pub fn with_form(lr: f64, momentum: f64, form: MomentumForm) -> Sgd {
        Sgd { momentum: MomentumSpec::Table { value: momentum, form }, ..Sgd::new(lr) }
    }
}

/// torch.optim.Adagrad (eps outside the square root).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Adagrad {
    #[serde(default = "lr_1e_2")]
    pub lr: f64,
    #[serde(default)]
    pub lr_decay: f64,
    #[serde(default)]
    pub weight_decay: f64,
    #[serde(default)]
    pub initial_accumulator_value: f64,
    #[serde(default = "eps_1e_10")]
    pub eps: f64,
}

/// torch.optim.RMSprop (eps outside the square root).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rmsprop {
    #[serde(default = "lr_1e_2")]
    pub lr: f64,
    #[serde(default = "alpha_99")]
    pub alpha: f64,
    #[serde(default = "eps_1e_8")]
    pub eps: f64,
    #[serde(default)]
    pub weight_decay: f64,
    #[serde(default)]
    pub momentum: f64,
    #[serde(default)]
    pub centered: bool,
}

/// torch.optim.Adam (L2 weight decay added to the gradient) and, with `decoupled`,
/// torch.optim.AdamW (p ← p·(1 − lr·wd) before the step).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Adam {
    #[serde(default = "lr_1e_3")]
    pub lr: f64,
    #[serde(default = "betas")]
    pub betas: [f64; 2],
    #[serde(default = "eps_1e_8")]
    pub eps: f64,
    #[serde(default)]
    pub weight_decay: f64,
    #[serde(default)]
    pub amsgrad: bool,
    #[serde(skip)]
    pub decoupled: bool,
}

/// AdamW's own defaults (weight_decay 0.01).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdamW {
    #[serde(default = "lr_1e_3")]
    pub lr: f64,
    #[serde(default = "betas")]
    pub betas: [f64; 2],
    #[serde(default = "eps_1e_8")]
    pub eps: f64,
    #[serde(default = "wd_1e_2")]
    pub weight_decay: f64,
    #[serde(default)]
    pub amsgrad: bool,
}

fn lr_1e_2() -> f64 {
    1e-2
}
fn lr_1e_3() -> f64 {
    1e-3
}
fn eps_1e_10() -> f64 {
    1e-10
}
fn eps_1e_8() -> f64 {
    1e-8
}
fn alpha_99() -> f64 {
    0.99
}
fn betas() -> [f64; 2] {
    [0.9, 0.999]
}
fn wd_1e_2() -> f64 {
    1e-2
}

/// The `[optimizer]` table's `type`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Optimizer {
    Sgd(Sgd),
    Adagrad(Adagrad),
    Rmsprop(Rmsprop),
    Adam(Adam),
    Adamw(AdamW),
}

impl From<Sgd> for Optimizer {
    fn from(s: Sgd) -> Optimizer {
        Optimizer::Sgd(s)
    }
}

impl From<Adam> for Optimizer {
    fn from(a: Adam) -> Optimizer {
        Optimizer::Adam(a)
    }
}

impl Optimizer {
    pub fn adam(lr: f64) -> Adam {
        Adam { lr, betas: betas(), eps: eps_1e_8(), weight_decay: 0.0, amsgrad: false, decoupled: false }
    }

    /// AdamW as Adam with decoupled decay: one kernel serves both.
    pub fn normalized(&self) -> Optimizer {
        match self {
            Optimizer::Adamw(a) => Optimizer::Adam(Adam {
                lr: a.lr,
                betas: a.betas,
                eps: a.eps,
                weight_decay: a.weight_decay,
                amsgrad: a.amsgrad,
                decoupled: true,
            }),
            other => other.clone(),
        }
    }

    pub fn lr(&self) -> f64 {
        match self {
            Optimizer::Sgd(s) => s.lr,
            Optimizer::Adagrad(a) => a.lr,
            Optimizer::Rmsprop(r) => r.lr,
            Optimizer::Adam(a) => a.lr,
            Optimizer::Adamw(a) => a.lr,
        }
    }

    pub fn weight_decay(&self) -> f64 {
        match self {
            Optimizer::Sgd(s) => s.weight_decay,
            Optimizer::Adagrad(a) => a.weight_decay,
            Optimizer::Rmsprop(r) => r.weight_decay,
            Optimizer::Adam(a) => a.weight_decay,
            Optimizer::Adamw(a) => a.weight_decay,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Optimizer::Sgd(_) => "sgd",
            Optimizer::Adagrad(_) => "adagrad",
            Optimizer::Rmsprop(_) => "rmsprop",
            Optimizer::Adam(a) if a.decoupled => "adamw",
            Optimizer::Adam(_) => "adam",
            Optimizer::Adamw(_) => "adamw",
        }
    }

    /// Refuses what torch.optim refuses, with its wording: a negative (or NaN) learning rate,
    /// epsilon, weight decay, momentum, lr_decay, initial accumulator or alpha; Adam's betas
    /// outside [0, 1); Nesterov without momentum or with dampening. (torch's checks are
    /// `not 0.0 <= x`, which NaN fails too.)
    pub fn validate(&self) -> std::result::Result<(), String> {
        let at_least_zero =
            |x: f64, what: &str| if x >= 0.0 { Ok(()) } else { Err(format!("Invalid {what}: {}", py_float(x))) };
        let lr = |x| at_least_zero(x, "learning rate");
        let eps = |x| at_least_zero(x, "epsilon value");
        let wd = |x| at_least_zero(x, "weight_decay value");
        let betas = |b: [f64; 2]| {
            for (i, v) in b.iter().enumerate() {
                if !(0.0..1.0).contains(v) {
                    return Err(format!("Invalid beta parameter at index {i}: {}", py_float(*v)));
                }
            }
            Ok(())
        };
        match self {
            Optimizer::Sgd(s) => {
                lr(s.lr)?;
                at_least_zero(s.momentum.value(), "momentum value")?;
                wd(s.weight_decay)?;
                if !s.dampening.is_finite() {
                    return Err(format!("Invalid dampening value: {}", s.dampening));
                }
                if s.nesterov && (s.momentum.value() <= 0.0 || s.dampening != 0.0) {
                    return Err("Nesterov momentum requires a momentum and zero dampening".into());
                }
                Ok(())
            }
            Optimizer::Adagrad(a) => {
                lr(a.lr)?;
                at_least_zero(a.lr_decay, "lr_decay value")?;
                wd(a.weight_decay)?;
                at_least_zero(a.initial_accumulator_value, "initial_accumulator_value value")?;
                eps(a.eps)
            }
            Optimizer::Rmsprop(r) => {
                lr(r.lr)?;
                eps(r.eps)?;
                at_least_zero(r.momentum, "momentum value")?;
                wd(r.weight_decay)?;
                at_least_zero(r.alpha, "alpha value")
            }
            Optimizer::Adam(a) => {
                lr(a.lr)?;
                eps(a.eps)?;
                betas(a.betas)?;
                wd(a.weight_decay)
            }
            Optimizer::Adamw(a) => {
                lr(a.lr)?;
                eps(a.eps)?;
                betas(a.betas)?;
                wd(a.weight_decay)
            }
        }
    }

    /// State vectors per parameter, in slot order (each slot is `param_len` long):
    /// SGD: velocity; Adagrad: sum; RMSprop: square_avg, grad_avg, momentum buffer;
    /// Adam: exp_avg, exp_avg_sq, max_exp_avg_sq.
    pub fn state_slots(&self) -> usize {
        match self.normalized() {
            Optimizer::Sgd(_) | Optimizer::Adagrad(_) => 1,
            _ => 3,
        }
    }

    /// What the state slots mean, for checkpoints: a resumed run must read them the same way
    /// (the heavy-ball form keeps −lr·buf, AMSGrad a third slot, centered RMSprop a second).
    pub fn state_layout(&self) -> String {
        match self.normalized() {
            Optimizer::Sgd(s) => format!("sgd momentum-form={:?} nesterov={}", s.momentum.form(), s.nesterov),
            Optimizer::Adagrad(_) => "adagrad".into(),
            Optimizer::Rmsprop(r) => format!("rmsprop centered={} momentum={}", r.centered, r.momentum > 0.0),
            Optimizer::Adam(a) => format!("adam amsgrad={}", a.amsgrad),
            Optimizer::Adamw(a) => format!("adam amsgrad={}", a.amsgrad),
        }
    }

    /// Initial value of every state slot (Adagrad's accumulator starts at initial_accumulator_value).
    pub fn initial_state(&self, param_len: usize) -> Vec<f32> {
        let mut s = vec![0.0; param_len * self.state_slots()];
        if let Optimizer::Adagrad(a) = self {
            s.fill(a.initial_accumulator_value as f32);
        }
        s
    }
}

/// A float as Python's `repr` writes it (`0.05`, `1e-08`, `1.0`), so messages and the printed
/// optimizer read as torch's do.
pub fn py_float(x: f64) -> String {
    if !x.is_finite() {
        return if x.is_nan() {
            "nan".into()
        } else if x > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        };
    }
    let exp = if x == 0.0 { 0 } else { x.abs().log10().floor() as i32 };
    if (-4..16).contains(&exp) {
        let s = format!("{x}");
        if s.contains('.') {
            s
        } else {
            format!("{s}.0")
        }
    } else {
        let s = format!("{x:e}");
        let (mantissa, e) = s.split_once('e').unwrap_or((&s, "0"));
        let (sign, digits) = e.strip_prefix('-').map_or(("+", e), |d| ("-", d));
        format!("{mantissa}e{sign}{digits:0>2}")
    }
}

/// torch's way of printing an optimizer, with the settings that differ from its defaults:
/// `SGD(lr=0.05, momentum=0.9)`, `Adam(lr=0.01)`.
impl std::fmt::Display for Optimizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = vec![format!("lr={}", py_float(self.lr()))];
        let put = |parts: &mut Vec<String>, name: &str, v: f64, default: f64| {
            if v != default {
                parts.push(format!("{name}={}", py_float(v)));
            }
        };
        let normalized = self.normalized();
        let name = match &normalized {
            Optimizer::Sgd(s) => {
                put(&mut parts, "momentum", s.momentum.value(), 0.0);
                put(&mut parts, "dampening", s.dampening, 0.0);
                put(&mut parts, "weight_decay", s.weight_decay, 0.0);
                if s.nesterov {
                    parts.push("nesterov=True".into());
                }
                match s.momentum.form() {
                    MomentumForm::Pytorch => {}
                    MomentumForm::HeavyBall => parts.push("form=heavy-ball".into()),
                    MomentumForm::NesterovLookahead => parts.push("form=nesterov-lookahead".into()),
                }
                "SGD"
            }
            Optimizer::Adagrad(a) => {
                put(&mut parts, "lr_decay", a.lr_decay, 0.0);
                put(&mut parts, "weight_decay", a.weight_decay, 0.0);
                put(&mut parts, "initial_accumulator_value", a.initial_accumulator_value, 0.0);
                put(&mut parts, "eps", a.eps, eps_1e_10());
                "Adagrad"
            }
            Optimizer::Rmsprop(r) => {
                put(&mut parts, "alpha", r.alpha, alpha_99());
                put(&mut parts, "eps", r.eps, eps_1e_8());
                put(&mut parts, "weight_decay", r.weight_decay, 0.0);
                put(&mut parts, "momentum", r.momentum, 0.0);
                if r.centered {
                    parts.push("centered=True".into());
                }
                "RMSprop"
            }
            // normalized() turns AdamW into Adam with `decoupled`.
            Optimizer::Adamw(_) => "AdamW",
            Optimizer::Adam(a) => {
                if a.betas != betas() {
                    parts.push(format!("betas=({}, {})", py_float(a.betas[0]), py_float(a.betas[1])));
                }
                put(&mut parts, "eps", a.eps, eps_1e_8());
                put(&mut parts, "weight_decay", a.weight_decay, if a.decoupled { wd_1e_2() } else { 0.0 });
                if a.amsgrad {
                    parts.push("amsgrad=True".into());
                }
                if a.decoupled {
                    "AdamW"
                } else {
                    "Adam"
                }
            }
        };
        write!(f, "{name}({})", parts.join(", "))
    }
}

/// A clipping threshold must be a positive finite norm: torch takes a negative one silently and
/// flips every gradient's sign, and NaN turns every parameter into NaN.
pub fn validate_clip(max_norm: f32) -> std::result::Result<(), String> {
    if max_norm > 0.0 && max_norm.is_finite() {
        Ok(())
    } else {
        Err(format!("train.clip_grad_norm must be a positive finite number, got {max_norm}"))
    }
}

/// `clip_grad_norm = 1.0`: torch.nn.utils.clip_grad_norm_ over all parameters before the step.
pub const CLIP_EPS: f32 = 1e-6;

/// Everything one update needs besides the buffers: the optimizer, the 1-based step number,
/// the schedule's factor on every group's lr, the groups, and the clipping threshold.
#[derive(Clone, Debug)]
pub struct OptimizerStep<'a> {
    pub optimizer: &'a Optimizer,
    pub step: u32,
    pub lr_factor: f64,
    pub groups: &'a ParamGroups,
    pub max_norm: Option<f32>,
}

/// An optimizer with everything around it: parameter groups, schedule, clipping.
#[derive(Clone, Debug, PartialEq)]
pub struct OptimizerSetup {
    pub optimizer: Optimizer,
    pub groups: Vec<GroupSpec>,
    pub schedule: Schedule,
    pub clip_grad_norm: Option<f32>,
}

impl From<Optimizer> for OptimizerSetup {
    fn from(optimizer: Optimizer) -> OptimizerSetup {
        OptimizerSetup { optimizer, groups: Vec::new(), schedule: Schedule::Constant, clip_grad_norm: None }
    }
}

impl From<Sgd> for OptimizerSetup {
    fn from(s: Sgd) -> OptimizerSetup {
        Optimizer::Sgd(s).into()
    }
}

impl From<Adam> for OptimizerSetup {
    fn from(a: Adam) -> OptimizerSetup {
        Optimizer::Adam(a).into()
    }
}

impl OptimizerSetup {
    pub fn with_schedule(mut self, schedule: Schedule) -> OptimizerSetup {
        self.schedule = schedule;
        self
    }

    /// Everything torch would refuse, and what it should: the optimizer's settings, the
    /// schedule, the clipping threshold and every group's lr and weight decay. The message
    /// names the config field.
    pub fn validate(&self) -> std::result::Result<(), String> {
        self.optimizer.validate().map_err(|m| format!("[optimizer] {m}"))?;
        self.schedule.validate().map_err(|m| format!("train.schedule ({}): {m}", self.schedule.name()))?;
        if let Some(m) = self.clip_grad_norm {
            validate_clip(m)?;
        }
        groups::validate_groups(&self.groups)
    }

    /// The learning rate of group 0 at optimizer step `k` (0-based).
    pub fn lr_at(&self, k: u32) -> f64 {
        self.optimizer.lr() * self.schedule.factor(k)
    }
}
