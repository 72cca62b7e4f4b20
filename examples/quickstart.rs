//! A 2-16-2 network learns XOR from points made in code, on the CPU and, when one is found, a GPU.
//!
//!     cargo run --release --example quickstart
use gradflow::prelude::*;

/// Trains the network for `epochs` epochs on `device`, printing each epoch from the history.
pub fn quickstart(device: Device, epochs: usize) -> Result<History> {
    // 400 points on a grid over [-1, 1]²; the class is 1 where x and y have opposite signs.
    let (mut x, mut labels) = (Vec::new(), Vec::new());
    for i in 0..400 {
        let (a, b) = ((i % 20) as f32 / 9.5 - 1.0, (i / 20) as f32 / 9.5 - 1.0);
        x.extend([a, b]);
        labels.push(u32::from((a > 0.0) != (b > 0.0)));
    }
    let (train, test) = Dataset::from_rows(&x, 2, &labels)?.split(0.25, 0)?;
    let model = Model::builder(2).dense(16, Activation::Tanh).dense(2, Activation::Identity).build()?;
    let optimizer = Sgd::with_momentum(0.1, 0.9);
    let mut trainer = Trainer::new(model).device(device).optimizer(optimizer).batch_size(16).epochs(epochs);
    let history = trainer.fit(&train, Some(&test))?;
    println!("{}", history.device);
    for e in &history {
        let (train_acc, test_acc) = (100.0 * e.train_accuracy, 100.0 * e.test_accuracy.unwrap_or(f32::NAN));
        println!("epoch {:2}  loss {:.4}  train {train_acc:5.1}%  test {test_acc:5.1}%", e.epoch, e.train_loss);
    }
    println!("final test accuracy {:.1}%\n", 100.0 * trainer.evaluate(&test)?.accuracy);
    Ok(history)
}

fn main() -> Result<()> {
    quickstart(Device::Cpu, 15)?;
    match quickstart(Device::Gpu, 15) {
        Ok(_) => {}
        Err(Error::NoAdapter(why)) => println!("no GPU adapter found{why}: the CPU run above is the result"),
        Err(e) => return Err(e),
    }
    Ok(())
}
