//! The dense linear algebra PCA and the text SVD need, on faer.

use faer::{Mat, Side};

use crate::error::{Error, Result};

/// The `k` largest eigenpairs of a symmetric matrix: eigenvalues in decreasing order, and the
/// eigenvectors as the columns of the returned matrix. Each vector's sign is fixed so that its
/// largest-magnitude entry is positive, which makes results reproducible across runs.
pub fn top_eigen(symmetric: &Mat<f64>, k: usize) -> Result<(Vec<f64>, Mat<f64>)> {
    let n = symmetric.nrows();
    let evd = symmetric
        .self_adjoint_eigen(Side::Lower)
        .map_err(|e| Error::LinearAlgebra(format!("eigendecomposition of a {n} x {n} matrix: {e:?}")))?;
    let values = evd.S().column_vector();
    let vectors = evd.U();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
    order.truncate(k);
    let top_values = order.iter().map(|&j| values[j]).collect();
    let signs: Vec<f64> = order
        .iter()
        .map(|&j| {
            let pivot =
                (0..n).max_by(|&a, &b| vectors[(a, j)].abs().total_cmp(&vectors[(b, j)].abs())).unwrap_or(0);
            if vectors[(pivot, j)] < 0.0 { -1.0 } else { 1.0 }
        })
        .collect();
    let top_vectors = Mat::from_fn(n, order.len(), |i, c| signs[c] * vectors[(i, order[c])]);
    Ok((top_values, top_vectors))
}
