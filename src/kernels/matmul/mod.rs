//! The matrix product with its fused epilogues (matmul.wgsl and its packed and uniform-window
//! schedules): parameters, flags, the schedule choice and the one launch builder. Its CPU
//! reference is `reference::linear` (with `reference::activation` for the fused epilogues);
//! tests/kernels_gpu_vs_cpu.rs and tests/accumulate.rs run it on every schedule.

use crate::device::dispatch::Step;
use crate::device::pipeline::{buffer, layout_at, module, pipeline, Bounds, Specialized, PACKED_FORMAT};
use crate::device::{entries, scoped, shader_checks, shaders, strided_extent};
use crate::device::{Dispatch, Entry, GpuBuffer, Slot};
use crate::error::{Error, Result};

use super::Gpu;

pub mod autotune;
mod params;
mod schedule;

pub use params::*;
pub use schedule::*;

entries! {
    /// matmul.wgsl's entry points: the product in workgroup-memory tiles or register blocks.
    pub enum MatmulEntry in "matmul.wgsl" {
        Tiled = "matmul",
        Direct = "matmul_direct",
    }
}

entries! {
    /// matmul_packed.wgsl's entry points: packing both operands into textures, then the product.
    pub enum PackedEntry in "matmul_packed.wgsl" {
        Pack = "matmul_pack",
        Product = "matmul_packed",
    }
}

entries! {
    /// matmul_uniform.wgsl's entry point: the product read from uniform windows.
    pub enum UniformEntry in "matmul_uniform.wgsl" {
        Product = "matmul_uniform",
    }
}

/// Elements of A, B, bias, C and aux a product may touch (matmul.wgsl's `load_a`, `load_b`,
/// `store_c` and `store_row_sum`): A and B through their strides, bias with `FLAG_BIAS`, C at
/// c_offset (and the row sums at bias_offset of C), aux with any flag that uses it; for a batch,
/// the last model's, its model strides further on. Every schedule indexes the same elements.
/// A batch whose models would write over one another's C or aux is refused.
fn extents<E>(_: E, p: &MatmulParams) -> Result<Vec<u64>> {
    let (m, n) = (p.m as u64, p.n as u64);
    let empty = m == 0 || n == 0;
    let a = strided_extent(p.a_offset, &[(p.m, p.a_stride_m), (p.k, p.a_stride_k)]);
    let b = strided_extent(p.b_offset, &[(p.k, p.b_stride_k), (p.n, p.b_stride_n)]);
    let bias = if p.flags & FLAG_BIAS != 0 && !empty { p.bias_offset as u64 + n } else { 0 };
    let mut c = if empty { 0 } else { p.c_offset as u64 + m * n };
    let row_sums = p.flags & FLAG_ROW_SUM != 0 && !empty;
    if row_sums {
        c = c.max(p.bias_offset as u64 + m);
    }
    let uses_aux = p.flags & (FLAG_STORE_PREACT | FLAG_ACT_GRAD | FLAG_ADD_SKIP) != 0;
    let aux = if uses_aux && !empty { m * n } else { 0 };
    let last = (p.model_count() - 1) as u64;
    if last > 0 && !empty {
        // The C slice a model writes: the product, and the row sums past or before it.
        let (lo, hi) = if row_sums {
            (p.c_offset.min(p.bias_offset) as u64, (p.c_offset as u64 + m * n).max(p.bias_offset as u64 + m))
        } else {
            (p.c_offset as u64, p.c_offset as u64 + m * n)
        };
        if (p.c_model_stride as u64) < hi - lo || (uses_aux && (p.aux_model_stride as u64) < m * n) {
            return Err(Error::LaunchParams {
                kernel: "matmul",
                why: format!(
                    "{} models whose outputs overlap: C moves {} and aux {} per model, one model writes {} and {}",
                    p.model_count(),
                    p.c_model_stride,
                    p.aux_model_stride,
                    hi - lo,
                    if uses_aux { m * n } else { 0 }
                ),
            });
        }
    }
    let moved = |extent: u64, stride: u32| if extent == 0 { 0 } else { extent + last * stride as u64 };
    Ok(vec![
        moved(a, p.a_model_stride),
        moved(b, p.b_model_stride),
        moved(bias, p.bias_model_stride),
        moved(c, p.c_model_stride),
        moved(aux, p.aux_model_stride),
    ])
}

/// The texture product's two kernels, each with its own layout: a texture cannot be bound for
/// writing and for sampling in the same dispatch.
#[derive(Clone)]
pub struct PackedFamily {
    module: wgpu::ShaderModule,
    pack_layout: wgpu::BindGroupLayout,
    product_layout: wgpu::BindGroupLayout,
    pack: wgpu::ComputePipeline,
    /// `matmul_packed`, one pipeline per epilogue.
    product: Specialized,
}

impl PackedFamily {
    pub(crate) fn new(device: &wgpu::Device) -> Result<PackedFamily> {
        use Slot::*;
        let file = PackedEntry::FILE;
        let src = shaders::source(file).ok_or_else(|| Error::Model(format!("no shader {file}")))?;
        scoped(device, "compiling matmul_packed.wgsl", || {
            let module = module(device, file, src);
            // Binding numbers as declared in matmul.wgsl (0–5) and matmul_packed.wgsl (6–9).
            let pack_layout = layout_at(
                device,
                "matmul_pack",
                &[(0, Read), (1, Read), (5, Uniform), (8, TextureOut), (9, TextureOut)],
            );
            let product_layout = layout_at(
                device,
                "matmul_packed",
                &[(2, Read), (3, ReadWrite), (4, ReadWrite), (5, Uniform), (6, Texture), (7, Texture)],
            );
            PackedFamily {
                pack: pipeline(device, &module, &pack_layout, PackedEntry::Pack.name(), &[]),
                product: Specialized::default(),
                module,
                pack_layout,
                product_layout,
            }
        })
    }
}

impl Dispatch {
    /// A matmul launch resized to `p` (its m or k follows the batch): every step's grid. Only
    /// shrinking is allowed, with offsets, strides and epilogue as built, so the schedule's own
    /// conditions (texture sizes, uniform windows) still hold; the bounds are checked again.
    pub fn update_matmul(&mut self, gpu: &Gpu, p: MatmulParams) -> Result<()> {
        let (p, main) = p.tiled();
        let built: MatmulParams = *bytemuck::try_from_bytes(&self.built)
            .map_err(|_| Error::Plan("update_matmul on a launch that is not a matrix product".into()))?;
        let same_layout = MatmulParams { m: built.m, n: built.n, k: built.k, ..p }.tiled().0;
        if p.m > built.m
            || p.n > built.n
            || p.k > built.k
            || bytemuck::bytes_of(&same_layout) != bytemuck::bytes_of(&built)
        {
            return Err(Error::LaunchParams {
                kernel: "matmul",
                why: format!(
                    "a product built as {}×{}×{} can only shrink, with its offsets, strides and epilogue unchanged \
                     (asked for {}×{}×{})",
                    built.m, built.k, built.n, p.m, p.k, p.n
                ),
            });
        }
        self.check(&p)?;
        let rebased = MatmulParams {
            a_offset: p.a_offset - self.window_base[0],
            b_offset: p.b_offset - self.window_base[1],
            ..p
        };
        let grids: Vec<[u32; 3]> = if self.steps.len() == 2 { vec![p.pack_grid(), main] } else { vec![main] };
        self.write_steps(gpu, &rebased, &grids);
        Ok(())
    }
}

impl Gpu {
    /// c[c_offset..] = epilogue(A·B); see matmul.wgsl. `bias` and `aux` may be absent. The
    /// schedule is `self.matmul_schedule`'s for the product's shape class, as far as the shape
    /// allows (`MatmulVariant::for_shape`).
    pub fn matmul(
        &self,
        a: &GpuBuffer,
        b: &GpuBuffer,
        bias: Option<&GpuBuffer>,
        c: &GpuBuffer,
        aux: Option<&GpuBuffer>,
        params: MatmulParams,
    ) -> Result<Dispatch> {
        if params.flags & FLAG_ADD_SKIP != 0 && params.flags & (FLAG_STORE_PREACT | FLAG_ACT_GRAD) != 0 {
            return Err(Error::Plan(format!(
                "a matmul epilogue cannot add a skip value and use z through the same aux buffer (flags {:#x})",
                params.flags
            )));
        }
        // The packed and uniform-window schedules bind whole buffers by hand: no views here.
        if [Some(a), Some(b), bias, Some(c), aux].into_iter().flatten().any(|x| x.offset != 0) {
            return Err(Error::Plan("a matmul operand is a view of a larger buffer".into()));
        }
        let (params, groups) = params.tiled();
        let bias_bound = bias.map_or(self.kernels.none_read(), |b| b.bind());
        let aux_bound = aux.map_or(self.kernels.none_write(), |b| b.bind());
        let bound = [a.bind(), b.bind(), bias_bound, c.bind(), aux_bound];
        let (bias, aux) = (bias_bound.buffer, aux_bound.buffer);
        let windows_fit = |buffer: &GpuBuffer, offset: u32| {
            (window_start(offset, &self.limits) as u64 + UNIFORM_WINDOW as u64) * 4 <= buffer.buffer.size()
        };
        let mut variant = self.matmul_schedule.for_product(&params, &self.limits);
        if params.model_count() > 1 && matches!(variant, MatmulVariant::Packed | MatmulVariant::Uniform) {
            // Only matmul.wgsl's own schedules take a batch of models: the best of them here.
            variant = if self.info.device_type == wgpu::DeviceType::Cpu {
                MatmulVariant::Direct
            } else {
                MatmulVariant::Tiled
            };
        }
        if variant == MatmulVariant::Uniform && !(windows_fit(a, params.a_offset) && windows_fit(b, params.b_offset)) {
            // Buffers without the window slack: the large class's schedule, as for_product would.
            variant = match self.matmul_schedule.large.for_shape(&params, &self.limits) {
                MatmulVariant::Uniform => MatmulVariant::Direct,
                v => v,
            };
        }
        // llvmpipe's loop budget: past it, the tiled schedule (the fewest iterations per k);
        // past that too, an error rather than a sum cut short.
        if let Some(limit) = self.loop_limit() {
            let checks = shader_checks();
            if variant.loop_iterations(&params, checks) > limit {
                variant = MatmulVariant::Tiled;
            }
            let iterations = variant.loop_iterations(&params, checks);
            if iterations > limit {
                let what = format!("a {}×{}×{} matrix product", params.m, params.k, params.n);
                self.check_loops(&what, iterations)?;
            }
        }
        let bounds = Bounds::new(MatmulEntry::Tiled, &bound, extents);
        bounds.check(&params)?;
        let entry = match variant {
            MatmulVariant::Packed => return self.matmul_packed(a, b, bias, c, aux, params, groups, bounds),
            MatmulVariant::Uniform => return self.matmul_uniform(a, b, bias, c, aux, params, groups, bounds),
            MatmulVariant::Tiled => MatmulEntry::Tiled,
            MatmulVariant::Direct => MatmulEntry::Direct,
        };
        self.kernels.matmul.dispatch(self, entry, &params.epilogue(), &bound, extents, &params, groups)
    }

    /// The uniform-window product: 64 KiB uniform bindings of A's and B's buffers at the
    /// aligned starts of their windows, the offsets in the parameters rebased to them.
    #[allow(clippy::too_many_arguments)]
    fn matmul_uniform(
        &self,
        a: &GpuBuffer,
        b: &GpuBuffer,
        bias: &wgpu::Buffer,
        c: &GpuBuffer,
        aux: &wgpu::Buffer,
        params: MatmulParams,
        groups: [u32; 3],
        bounds: Bounds<MatmulEntry, MatmulParams>,
    ) -> Result<Dispatch> {
        let f = &self.kernels.uniform;
        self.scoped("matmul (uniform windows)", || {
            let window_base =
                [window_start(params.a_offset, &self.limits), window_start(params.b_offset, &self.limits)];
            let rebased = MatmulParams {
                a_offset: params.a_offset - window_base[0],
                b_offset: params.b_offset - window_base[1],
                ..params
            };
            let uniform = self.uniform("matmul (uniform windows)", &rebased);
            fn window(binding: u32, g: &GpuBuffer, start: u32) -> wgpu::BindGroupEntry<'_> {
                wgpu::BindGroupEntry {
                    binding,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: &g.buffer,
                        offset: start as u64 * 4,
                        size: std::num::NonZeroU64::new(UNIFORM_WINDOW as u64 * 4),
                    }),
                }
            }
            let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("matmul_uniform"),
                layout: &f.layout,
                entries: &[
                    buffer(2, bias),
                    buffer(3, &c.buffer),
                    buffer(4, aux),
                    buffer(5, &uniform),
                    window(10, a, window_base[0]),
                    window(11, b, window_base[1]),
                ],
            });
            let [flags, act] = params.epilogue();
            let constants = [flags, act, ("WINDOW_LAYOUT", rebased.window_layout())];
            let pipeline = f.pipeline(&self.device, UniformEntry::Product, &constants);
            let mut d = Dispatch::new(
                vec![Step { pipeline, bind_group, groups, strides: Vec::new() }],
                uniform,
                bounds.erase(),
                &params,
            );
            d.window_base = window_base;
            d
        })
    }

    /// The texture product: two textures sized for this launch's m, n and k (rounded up to powers
    /// of two; a resized launch only shrinks), `matmul_pack` filling them and `matmul_packed`
    /// reading them.
    #[allow(clippy::too_many_arguments)]
    fn matmul_packed(
        &self,
        a: &GpuBuffer,
        b: &GpuBuffer,
        bias: &wgpu::Buffer,
        c: &GpuBuffer,
        aux: &wgpu::Buffer,
        params: MatmulParams,
        groups: [u32; 3],
        bounds: Bounds<MatmulEntry, MatmulParams>,
    ) -> Result<Dispatch> {
        let f = &self.kernels.packed;
        self.scoped("matmul (packed)", || {
            let (width, a_rows, b_rows) = packed_extent(&params);
            let texture = |label, rows: u32| {
                let t = self.device.create_texture(&wgpu::TextureDescriptor {
                    label: Some(label),
                    size: wgpu::Extent3d { width, height: rows, depth_or_array_layers: 1 },
                    mip_level_count: 1,
                    sample_count: 1,
                    dimension: wgpu::TextureDimension::D2,
                    format: PACKED_FORMAT,
                    usage: wgpu::TextureUsages::STORAGE_BINDING | wgpu::TextureUsages::TEXTURE_BINDING,
                    view_formats: &[],
                });
                t.create_view(&Default::default())
            };
            let (a_view, b_view) = (texture("packed A", a_rows), texture("packed B", b_rows));
            let uniform = self.uniform("matmul (packed)", &params);
            fn view(binding: u32, v: &wgpu::TextureView) -> wgpu::BindGroupEntry<'_> {
                wgpu::BindGroupEntry { binding, resource: wgpu::BindingResource::TextureView(v) }
            }
            let pack = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("matmul_pack"),
                layout: &f.pack_layout,
                entries: &[
                    buffer(0, &a.buffer),
                    buffer(1, &b.buffer),
                    buffer(5, &uniform),
                    view(8, &a_view),
                    view(9, &b_view),
                ],
            });
            let product = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("matmul_packed"),
                layout: &f.product_layout,
                entries: &[
                    buffer(2, bias),
                    buffer(3, &c.buffer),
                    buffer(4, aux),
                    buffer(5, &uniform),
                    view(6, &a_view),
                    view(7, &b_view),
                ],
            });
            Dispatch::new(
                vec![
                    Step {
                        pipeline: f.pack.clone(),
                        bind_group: pack,
                        groups: params.pack_grid(),
                        strides: Vec::new(),
                    },
                    Step {
                        pipeline: f.product.get(
                            &self.device,
                            &f.module,
                            &f.product_layout,
                            PackedEntry::Product.name(),
                            &params.epilogue(),
                        ),
                        bind_group: product,
                        groups,
                        strides: Vec::new(),
                    },
                ],
                uniform,
                bounds.erase(),
                &params,
            )
        })
    }
}
