//! Training throughput of the auto image model's loop, for bench/auto_image.sh (compared with
//! PyTorch's best CPU configuration there).
//!
//! ```text
//! train_bench throughput BACKBONE --batch 16 --size 224 --steps 20 [--warmup 3] [--threads N]
//! ```
//! The same step as a trial (`trial::train_step`): channels_last batch, forward through the
//! TorchScript backbone and the linear head, cross-entropy, backward, AdamW; on CUDA in mixed
//! precision with loss scaling, as trials train there. Prints one JSON line.

use std::time::Instant;

use ocellus_trainer::backbone::Registry;
use ocellus_trainer::pipeline::auto_image::mixed_precision::LossScaler;
use ocellus_trainer::pipeline::auto_image::optimizer::Optimizer;
use ocellus_trainer::pipeline::auto_image::space::OptimizerKind;
use ocellus_trainer::pipeline::auto_image::trial::{Network, train_step};
use tch::{Device, Kind, Tensor};

fn main() -> ocellus_trainer::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: train_bench throughput BACKBONE [--batch N] [--size N] [--steps N] [--warmup N] [--threads N]";
    let flag = |name: &str, default: usize| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map_or(default, |v| v.parse().expect(usage))
    };
    assert_eq!(args.get(1).map(String::as_str), Some("throughput"), "{usage}");
    let name = args.get(2).expect(usage);
    let (batch, size, steps, warmup) =
        (flag("--batch", 16), flag("--size", 224), flag("--steps", 20), flag("--warmup", 3));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    tch::set_num_threads(flag("--threads", cores) as i32);
    let registry = Registry::new(std::env::var("OCELLUS_BACKBONES").unwrap_or_else(|_| "backbones".into()));
    let manifest = registry.manifest(name)?;
    let device = if tch::Cuda::is_available() { Device::Cuda(0) } else { Device::Cpu };
    let model = registry.root().join(name).join("model.pt");
    let mut network = Network::load(&model, manifest.feature_dim, 10, device)?;
    network.module.set_train();
    let mut optimizer = Optimizer::new(OptimizerKind::AdamW, 0.01, network.parameters());
    let side = size as i64;
    let input = Tensor::randn([batch as i64, side, side, 3], (Kind::Float, device)).permute([0, 3, 1, 2]);
    let labels = Tensor::randint(10, [batch as i64], (Kind::Int64, device));
    let mut scaler = LossScaler::new(device.is_cuda());
    let mut step = || -> ocellus_trainer::Result<()> {
        let _ = train_step(&network, &mut optimizer, &mut scaler, &input, 1e-3, |output| {
            output.cross_entropy_for_logits(&labels)
        })?;
        Ok(())
    };
    for _ in 0..warmup {
        step()?;
    }
    let started = Instant::now();
    for _ in 0..steps {
        step()?;
    }
    if device.is_cuda() {
        tch::Cuda::synchronize(0);
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "impl": "ocellus", "bench": "train-throughput", "images_per_s": (batch * steps) as f64 / seconds,
            "batch": batch, "size": size, "steps": steps, "device": format!("{device:?}"), "threads": tch::get_num_threads(),
            "mixed_precision": device.is_cuda(),
        })
    );
    Ok(())
}
