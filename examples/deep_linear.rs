//! Saxe, McClelland & Ganguli (2013): a deep linear network trained from small weights sits on
//! plateaus and then drops, one drop per mode of the input-output map, the strongest first. Six
//! inputs eᶜ scaled by sᶜ = 3, 1.8, 1.1, 0.7, 0.45, 0.3, each its own class; a three-layer linear
//! network (no biases, 108 parameters) at a tenth of PyTorch's initialisation; full-batch gradient
//! descent (step 2) on the MSE against one-hot targets. Prints when each mode is learned (its
//! output passes ½) on the GPU and the CPU reference, and plots the loss with the Hessian's index
//! along the run.
//!
//!     cargo run --release --example deep_linear [-- OUT.svg]    (default docs/deep-linear.svg)

use gradflow::course::critical::{index_below, spectrum};
use gradflow::course::deep_linear::{deep_linear_model, learning_times, modes_dataset};
use gradflow::error::Result;
use gradflow::exec::hessian::Hessian;
use gradflow::exec::{CpuNetwork, GpuNetwork, Network};
use gradflow::optim::Sgd;
use gradflow::plot::{svg, Chart, Series};
use gradflow::spec::Loss;

const STRENGTHS: [f32; 6] = [3.0, 1.8, 1.1, 0.7, 0.45, 0.3];
const STEPS: usize = 1500;

fn main() -> Result<()> {
    let out = std::env::args().nth(1).unwrap_or_else(|| "docs/deep-linear.svg".into());
    // The format (by extension) is checked before any work.
    gradflow::plot::format_of(std::path::Path::new(&out), "the output file")?;
    let data = modes_dataset(&STRENGTHS)?;
    let d = data.d;
    let model = deep_linear_model(d, 3)?;
    let mut p0 = model.init_params(0);
    p0.iter_mut().for_each(|v| *v *= 0.1);
    let gpu = std::sync::Arc::new(gradflow::kernels::Gpu::new(None)?);
    let nets: Vec<(&str, Box<dyn Network>)> = vec![
        ("CPU reference", Box::new(CpuNetwork::new(model.clone(), Loss::Mse, Sgd::new(2.0), p0.clone())?)),
        ("GPU", Box::new(GpuNetwork::new(gpu, model.clone(), Loss::Mse, Sgd::new(2.0), &p0, d)?)),
    ];
    let mut curves = Vec::new();
    for (name, mut net) in nets {
        net.set_train_data(&data)?;
        let (learned, losses) = learning_times(net.as_mut(), &data, STEPS)?;
        let when: Vec<String> = learned.iter().map(|s| s.map_or("never".into(), |s| s.to_string())).collect();
        println!("{name:<14} modes (strength 3, 1.8, 1.1, 0.7, 0.45, 0.3) learned at steps {}", when.join(", "));
        curves.push(Series {
            name: name.into(),
            points: losses.iter().enumerate().map(|(k, &l)| (k as f64, l)).collect(),
        });
    }
    // The index along a CPU replay, every 25 steps. Eigenvalues within 1e-6 of the largest count as
    // flat: the layers' GL(d) symmetry makes many exactly zero, and their rounding has no sign.
    let mut net = CpuNetwork::new(model.clone(), Loss::Mse, Sgd::new(2.0), p0)?;
    net.set_train_data(&data)?;
    let all: Vec<u32> = (0..d as u32).collect();
    let mut index = Vec::new();
    for step in 0..=STEPS {
        if step % 25 == 0 {
            let mut h = Hessian::new(model.clone(), Loss::Mse, &net.params()?, &data, d)?;
            index.push((step as f64, index_below(&spectrum(&mut h)?.0, 1e-6)));
        }
        if step < STEPS {
            net.train_step(&all)?;
        }
    }
    print!("index (eigenvalues below −1e-6·max|λ|) every 100 steps:");
    for (s, i) in index.iter().step_by(4) {
        print!(" {s:.0}:{i:.3}");
    }
    println!();
    let loss = Chart {
        title: "Loss: plateaus and drops".into(),
        x_label: "step".into(),
        y_label: "loss".into(),
        series: curves,
        log_y: true,
        y_range: None,
        scatter: false,
    };
    let index = Chart {
        title: "Index of the Hessian along the run".into(),
        x_label: "step".into(),
        y_label: "index".into(),
        series: vec![Series { name: "CPU reference".into(), points: index }],
        log_y: false,
        y_range: None,
        scatter: false,
    };
    gradflow::plot::write(std::path::Path::new(&out), &svg(&[loss, index]))?;
    println!("wrote {out}");
    Ok(())
}
