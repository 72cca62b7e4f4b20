//! Issue 9 asked to try subgroups where the adapter has them: this measures `matmul_direct`'s 8×8
//! register blocking with and without sharing A through subgroup shuffles (each of 8 lanes
//! loads one row's value and the others take it by `subgroupShuffle`, 9 loads per k instead of
//! 16) on the chosen adapter, beside the schedules gradflow ships. Run:
//! `cargo run --release --example subgroup_matmul`.
use std::time::Instant;

use gradflow::bench::{MatmulBench, Product};
use gradflow::device::{submit, Dispatch};
use gradflow::kernels::Gpu;
use gradflow::kernels::{MatmulVariant, Schedule};
use wgpu::util::DeviceExt;

const SRC: &str = r#"
struct P { m: u32, n: u32, k: u32, _p: u32 }
@group(0) @binding(0) var<storage, read> a: array<f32>;   // [m, k]
@group(0) @binding(1) var<storage, read> b: array<f32>;   // W [n, k]: B[k, col] = W[col, k]
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
@group(0) @binding(3) var<uniform> p: P;
fn load_a(r: u32, k: u32) -> f32 { if (r < p.m && k < p.k) { return a[r * p.k + k]; } return 0.0; }
fn load_b(k: u32, col: u32) -> f32 { if (k < p.k && col < p.n) { return b[col * p.k + k]; } return 0.0; }
@compute @workgroup_size(64, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32,
        @builtin(subgroup_invocation_id) lane: u32) {
    // Lanes of one subgroup (8 consecutive invocations) share rows r..r+7 and own 8 columns each.
    let r = wg.y * 64u + (li / 8u) * 8u;
    let col = wg.x * 64u + (li % 8u) * 8u;
    var lo: array<vec4<f32>, 8>;
    var hi: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i++) { lo[i] = vec4<f32>(0.0); hi[i] = vec4<f32>(0.0); }
    for (var k = 0u; k < p.k; k++) {
        let mine = load_a(r + lane, k);
        let b_lo = vec4<f32>(load_b(k, col), load_b(k, col + 1u), load_b(k, col + 2u), load_b(k, col + 3u));
        let b_hi = vec4<f32>(load_b(k, col + 4u), load_b(k, col + 5u), load_b(k, col + 6u), load_b(k, col + 7u));
        for (var i = 0u; i < 8u; i++) {
            let av = subgroupShuffle(mine, i);
            lo[i] += av * b_lo;
            hi[i] += av * b_hi;
        }
    }
    for (var i = 0u; i < 8u; i++) {
        for (var j = 0u; j < 4u; j++) {
            if (r + i < p.m && col + j < p.n) { c[(r + i) * p.n + col + j] = lo[i][j]; }
            if (r + i < p.m && col + 4u + j < p.n) { c[(r + i) * p.n + col + 4u + j] = hi[i][j]; }
        }
    }
}
"#;

fn best_of(gpu: &Gpu, run: &dyn Fn()) -> f64 {
    run();
    gpu.wait().unwrap();
    (0..3)
        .map(|_| {
            let t = Instant::now();
            run();
            gpu.wait().unwrap();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() -> gradflow::error::Result<()> {
    let gpu = Gpu::new(None)?;
    println!("adapter: {}", gpu.describe());
    let features = gpu.device.features();
    let (min_size, max_size) = (gpu.info.subgroup_min_size, gpu.info.subgroup_max_size);
    println!("subgroups: {} (sizes {min_size}..{max_size})", features.contains(wgpu::Features::SUBGROUP));
    let shapes = [(32usize, 64usize, 128usize), (256, 784, 512), (1024, 1024, 1024)];
    for (m, k, n) in shapes {
        let flops = 2.0 * (m * k * n) as f64;
        let mut line = format!("{m}×{k}·{k}×{n}:");
        for v in MatmulVariant::ALL {
            let g = Gpu { matmul_schedule: Schedule::uniform(v), tuning: None, ..gpu.clone() };
            let bench = MatmulBench::product(&g, Product::Forward, m, k, n)?;
            let reps = if m * n * k > 1 << 24 { 2 } else { 20 };
            let ds: Vec<&Dispatch> = (0..reps).map(|_| &bench.dispatch).collect();
            let t = best_of(&g, &|| submit(&g, "x", &ds).unwrap()) / reps as f64;
            line += &format!("  {} {:.2} GFLOP/s", v.name(), flops / t / 1e9);
        }
        if features.contains(wgpu::Features::SUBGROUP) && min_size == 8 && max_size == 8 {
            let d = &gpu.device;
            let module = d.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: None,
                source: wgpu::ShaderSource::Wgsl(SRC.into()),
            });
            let pl = d.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: None,
                layout: None,
                module: &module,
                entry_point: Some("main"),
                compilation_options: Default::default(),
                cache: None,
            });
            let a = gpu.upload("a", &vec![0.5f32; m * k])?;
            let b = gpu.upload("b", &vec![0.25f32; k * n])?;
            let c = gpu.storage("c", m * n)?;
            let pu = d.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: None,
                contents: bytemuck::cast_slice(&[m as u32, n as u32, k as u32, 0]),
                usage: wgpu::BufferUsages::UNIFORM,
            });
            let bg = d.create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: &pl.get_bind_group_layout(0),
                entries: &[
                    wgpu::BindGroupEntry { binding: 0, resource: a.buffer.as_entire_binding() },
                    wgpu::BindGroupEntry { binding: 1, resource: b.buffer.as_entire_binding() },
                    wgpu::BindGroupEntry { binding: 2, resource: c.buffer.as_entire_binding() },
                    wgpu::BindGroupEntry { binding: 3, resource: pu.as_entire_binding() },
                ],
            });
            let reps = if m * n * k > 1 << 24 { 2 } else { 20 };
            let run = || {
                let mut e = d.create_command_encoder(&Default::default());
                {
                    let mut pass = e.begin_compute_pass(&Default::default());
                    pass.set_pipeline(&pl);
                    pass.set_bind_group(0, &bg, &[]);
                    for _ in 0..reps {
                        pass.dispatch_workgroups((n as u32).div_ceil(64), (m as u32).div_ceil(64), 1);
                    }
                }
                gpu.queue.submit([e.finish()]);
            };
            let t = best_of(&gpu, &run) / reps as f64;
            // Every output is k · 0.5 · 0.25: check one, so a wrong lane mapping cannot pass as fast.
            let got = gpu.read::<f32>(&c, 0, 1)?[0];
            let want = k as f32 * 0.125;
            line += &format!("  direct+subgroup-shuffle {:.2} GFLOP/s (c[0] = {got}, want {want})", flops / t / 1e9);
        } else {
            line += "  (no subgroups of 8 on this adapter: shuffle variant not run)";
        }
        println!("{line}");
    }
    Ok(())
}
