//! PCA fit time at the pipeline's largest setting: 10,000 embeddings of 2048 features -> 300.
//!
//! Usage: bench_pca [ROWS COLS K]

use std::time::Instant;

use ocellus_tabular::Matrix;
use ocellus_tabular::pca::Pca;
use rand::{Rng, SeedableRng};

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().expect("a number")).collect();
    let (rows, cols, k) = match args[..] {
        [r, c, k] => (r, c, k),
        _ => (10_000, 2048, 300),
    };
    // Correlated features, as embeddings are: 64 latent factors plus noise.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let factors: Vec<f32> = (0..64 * cols).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let mut data = Vec::with_capacity(rows * cols);
    for _ in 0..rows {
        let z: Vec<f32> = (0..64).map(|_| rng.gen_range(-1.0..1.0)).collect();
        data.extend(
            (0..cols).map(|j| {
                (0..64).map(|f| z[f] * factors[f * cols + j]).sum::<f32>() + rng.gen_range(-0.1..0.1)
            }),
        );
    }
    let x = Matrix::new(rows, cols, data).expect("matrix");
    let start = Instant::now();
    let pca = Pca::fit(&x, k).expect("fit");
    let fit = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let projected = pca.transform(&x).expect("transform");
    let transform = start.elapsed().as_secs_f64();
    let kept: f64 = pca.explained_variance_ratio.iter().sum();
    println!(
        "{rows} x {cols} -> {k}: fit {fit:.2} s, transform {transform:.2} s, variance kept {kept:.4}, out {} x {}",
        projected.rows, projected.cols
    );
}
