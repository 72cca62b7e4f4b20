//! `gradflow hessian`: the Hessian of the mean training loss at a saved model, its extreme
//! eigenvalues, index and spectral density (the numbers from `cli::hessian`).

use super::hessian as report;
use super::hessian::Budget;
use super::saved::{data_for_checkpoint, state_dict};
use super::HessianArgs;
use crate::error::Result;
use crate::spec::Model;
use crate::train::{self, Placement};

/// The command: builds the Hessian operator (on the GPU unless `--cpu`), prints the spectrum's
/// summary and writes the density's plot.
pub fn hessian(args: &HessianArgs, placement: &Placement, non_strict: bool) -> Result<()> {
    let budget = Budget { k: args.k, steps: args.steps, probes: args.probes, seed: 0 };
    budget.check()?;
    let (checkpoint, plot) = (args.checkpoint.as_path(), args.plot.as_deref());
    let (config, file) = super::saved::config_for(args.config.clone(), &args.set, checkpoint, non_strict)?;
    if let Some(p) = plot {
        let mut inputs = train::session::config_inputs(&config, &file);
        inputs.push(checkpoint);
        train::session::check_outputs_apart(&[(p, "--plot")], &inputs)?;
        crate::plot::format_of(p, "--plot")?;
    }
    let (train_set, _) = data_for_checkpoint(&config, &file, checkpoint)?;
    let model = Model::new(train_set.d, config.model.layers.clone())?;
    let (params, _) = state_dict(checkpoint, &model, non_strict)?;
    let (batch, norm) = crate::exec::hessian_summary::batch_rows(&model, config.train.batch_size, train_set.n);
    let mut h = crate::exec::hessian::Hessian::new(model, config.model.loss, &params, &train_set, batch)?;
    if let Some(gpu) = train::open_gpu(placement, "Hessian-vector products")? {
        crate::say!("device: {}", gpu.describe());
        h.use_gpu(std::sync::Arc::new(gpu))?;
    }
    crate::say!(
        "Hessian of the mean {} loss over the training split ({} rows; {norm}) at {}: {} parameters",
        config.model.loss.name(),
        train_set.n,
        checkpoint.display(),
        crate::spectrum::SymmetricOperator::dim(&h)
    );
    let s = report::summarize(&mut h, &budget)?;
    let list = |v: &[f64]| v.iter().map(|x| format!("{x:.4e}")).collect::<Vec<_>>().join("  ");
    crate::say!("loss {:.6}, gradient norm {:.3e}", s.loss, s.grad_norm);
    crate::say!("smallest eigenvalues ({} Lanczos steps): {}", budget.steps, list(&s.smallest));
    crate::say!("largest eigenvalues:  {}", list(&s.largest));
    crate::say!(
        "index (fraction of eigenvalues below −δ, SLQ with {} probes × {} steps): {:.4}; within ±δ: {:.4} \
         (δ = width/steps = {:.2e}: the quadrature cannot tell these signs apart)",
        budget.probes,
        budget.steps,
        s.index,
        s.unresolved,
        s.resolution
    );
    if let Some(all) = &s.exact {
        let (index, negative, zero, tol) = crate::exec::hessian_summary::exact_index(all);
        crate::say!(
            "exact (all {} eigenvalues, Jacobi): index {:.4} ({negative} negative, {zero} zero within {tol:.1e}); \
             extremes {:.4e} … {:.4e}",
            all.len(),
            index,
            all[0],
            all[all.len() - 1]
        );
    }
    crate::say!("{} Hessian-vector products in {:.1} s on {}", s.products, s.seconds, h.device());
    if let Some(path) = plot {
        let title = format!("Hessian spectral density, {} parameters", s.dim);
        let svg = crate::plot::svg(&[report::density_chart(&s.density, &title)]);
        crate::plot::write(path, &svg)?;
        crate::say!("wrote {}", path.display());
    }
    Ok(())
}
