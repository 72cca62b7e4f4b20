//! The WGSL sources, embedded at build time. Each kernel file is compiled with `common.wgsl`
//! prepended, which holds the activation functions that several families share; a family that
//! builds on another (the texture product reuses matmul.wgsl's parameters and epilogue) gets that
//! file prepended too.

pub const COMMON: &str = include_str!("../../shaders/common.wgsl");

/// Every kernel family, by file name.
pub const FAMILIES: [(&str, &str); 13] = [
    ("matmul.wgsl", include_str!("../../shaders/matmul.wgsl")),
    ("matmul_packed.wgsl", include_str!("../../shaders/matmul_packed.wgsl")),
    ("matmul_uniform.wgsl", include_str!("../../shaders/matmul_uniform.wgsl")),
    ("activation.wgsl", include_str!("../../shaders/activation.wgsl")),
    ("loss.wgsl", include_str!("../../shaders/loss.wgsl")),
    ("optim.wgsl", include_str!("../../shaders/optim.wgsl")),
    ("data.wgsl", include_str!("../../shaders/data.wgsl")),
    ("batchnorm.wgsl", include_str!("../../shaders/batchnorm.wgsl")),
    ("dropout.wgsl", include_str!("../../shaders/dropout.wgsl")),
    ("hvp.wgsl", include_str!("../../shaders/hvp.wgsl")),
    ("small_mlp.wgsl", include_str!("../../shaders/small_mlp.wgsl")),
    ("small_net.wgsl", include_str!("../../shaders/small_net.wgsl")),
    ("small_net_train.wgsl", include_str!("../../shaders/small_net_train.wgsl")),
];

/// Pieces that families build on but that are no kernels of their own (they use declarations the
/// family provides).
pub const PARTS: [(&str, &str); 2] = [
    ("loss_rows.wgsl", include_str!("../../shaders/loss_rows.wgsl")),
    ("optim_update.wgsl", include_str!("../../shaders/optim_update.wgsl")),
];

/// The families a family's source builds on, compiled ahead of it.
fn builds_on(file: &str) -> &'static [&'static str] {
    match file {
        "matmul_packed.wgsl" | "matmul_uniform.wgsl" => &["matmul.wgsl"],
        "loss.wgsl" | "small_net.wgsl" => &["loss_rows.wgsl"],
        "optim.wgsl" => &["optim_update.wgsl"],
        "small_net_train.wgsl" => &["loss_rows.wgsl", "small_net.wgsl", "optim_update.wgsl"],
        _ => &[],
    }
}

fn body(file: &str) -> Option<&'static str> {
    FAMILIES.iter().chain(&PARTS).find(|(name, _)| *name == file).map(|(_, body)| *body)
}

/// The full source the device compiles for one family (common functions first).
pub fn source(file: &str) -> Option<String> {
    let mut src = COMMON.to_string();
    for base in builds_on(file) {
        src.push('\n');
        src.push_str(body(base)?);
    }
    src.push('\n');
    src.push_str(body(file)?);
    Some(src)
}
