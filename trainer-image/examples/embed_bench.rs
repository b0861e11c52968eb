//! Embedding throughput of the trainer, for bench/embed.sh (compared with PyTorch there).
//!
//! ```text
//! embed_bench model BACKBONE --batch 16 --images 256      network only, on decoded tensors
//! embed_bench files BACKBONE DIR --batch 16               image files on disk -> embeddings
//! ```
//! Prints one JSON line: images/s and the peak resident memory of the process.

use std::path::PathBuf;
use std::time::Instant;

use indicatif::ProgressBar;
use ocellus_trainer::backbone::Registry;
use ocellus_trainer::embed::{EmbedOptions, ImageInput, embed};
use tch::{Device, Kind, Tensor};

fn main() -> ocellus_trainer::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let usage =
        "usage: embed_bench model|files BACKBONE [DIR] [--batch N] [--images N] [--threads N] [--decoders N]";
    let flag = |name: &str, default: usize| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map_or(default, |v| v.parse().expect(usage))
    };
    let (mode, name) = (args.get(1).expect(usage).as_str(), args.get(2).expect(usage));
    let batch = flag("--batch", 16);
    tch::set_num_threads(flag("--threads", 2) as i32);
    let registry = Registry::new(std::env::var("OCELLUS_BACKBONES").unwrap_or_else(|_| "backbones".into()));
    let device = if tch::Cuda::is_available() { Device::Cuda(0) } else { Device::Cpu };
    let mut backbone = registry.load_for_embeddings(name, device)?;
    if device.is_cuda() && args.iter().any(|a| a == "--half") {
        backbone.use_half()?;
    }
    let side = backbone.manifest.input_size;
    let (images, seconds) = match mode {
        "model" => {
            let total = flag("--images", 256);
            let input = Tensor::randn([batch as i64, 3, side, side], (Kind::Float, Device::Cpu));
            let _ = backbone.features(&input)?; // warm-up: the first call of a TorchScript module optimises it
            let _ = backbone.features(&input)?;
            let started = Instant::now();
            let mut done = 0;
            while done < total {
                let features = backbone.features(&input)?;
                let _ = features.double_value(&[0, 0]);
                done += batch;
            }
            (done, started.elapsed().as_secs_f64())
        }
        "files" => {
            let dir = PathBuf::from(args.get(3).expect(usage));
            let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
                .expect("readable folder")
                .map(|e| e.expect("entry").path())
                .filter(|p| p.is_file())
                .collect();
            paths.sort();
            let inputs: Vec<ImageInput> = paths.into_iter().map(ImageInput::Path).collect();
            let decoders = flag("--decoders", EmbedOptions::default().decode_threads);
            let options = EmbedOptions { batch_size: batch, decode_threads: decoders, devices: Vec::new() };
            let warm = inputs.len().min(2 * batch);
            embed(&backbone, &inputs[..warm], &options, &ProgressBar::hidden())?;
            let started = Instant::now();
            let embeddings = embed(&backbone, &inputs, &options, &ProgressBar::hidden())?;
            assert_eq!(embeddings.rows(), inputs.len());
            (inputs.len(), started.elapsed().as_secs_f64())
        }
        _ => panic!("{usage}"),
    };
    println!(
        "{{\"impl\": \"ocellus\", \"mode\": \"{mode}\", \"batch\": {batch}, \"images\": {images}, \"seconds\": {seconds:.3}, \"images_per_second\": {:.2}, \"peak_rss_mb\": {:.1}}}",
        images as f64 / seconds,
        peak_rss_mb()
    );
    Ok(())
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}
