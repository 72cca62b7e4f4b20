//! The WGSL sources, embedded at build time. Each kernel file is compiled with `common.wgsl`
//! prepended, which holds the activation functions that several families share.

pub const COMMON: &str = include_str!("../../shaders/common.wgsl");

/// Every kernel family, by file name.
pub const FAMILIES: [(&str, &str); 6] = [
    ("matmul.wgsl", include_str!("../../shaders/matmul.wgsl")),
    ("activation.wgsl", include_str!("../../shaders/activation.wgsl")),
    ("loss.wgsl", include_str!("../../shaders/loss.wgsl")),
    ("optim.wgsl", include_str!("../../shaders/optim.wgsl")),
    ("data.wgsl", include_str!("../../shaders/data.wgsl")),
    ("batchnorm.wgsl", include_str!("../../shaders/batchnorm.wgsl")),
];

/// The full source the device compiles for one family (common functions first).
pub fn source(file: &str) -> Option<String> {
    FAMILIES.iter().find(|(name, _)| *name == file).map(|(_, body)| format!("{COMMON}\n{body}"))
}
