//! Principal component analysis of embeddings, fitted on training rows only.
//!
//! Exact, not randomized: the eigendecomposition of the d x d covariance (or of the n x n Gram
//! matrix when there are fewer rows than columns), so a fit is deterministic without a seed.

use faer::Mat;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::linalg::top_eigen;
use crate::matrix::Matrix;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pca {
    /// Column means of the training rows.
    pub mean: Vec<f32>,
    /// k x d row-major: component c is `components[c * d..(c + 1) * d]`, unit length.
    pub components: Vec<f32>,
    pub k: usize,
    pub explained_variance: Vec<f64>,
    pub explained_variance_ratio: Vec<f64>,
}

impl Pca {
    pub fn fit(x: &Matrix, k: usize) -> Result<Pca> {
        let (n, d) = (x.rows, x.cols);
        if k == 0 || k > n.min(d) {
            return Err(Error::bad_input(format!(
                "cannot project {n} rows of {d} features onto {k} principal components: the dimension \
                 must be between 1 and min(rows, features) = {}; choose a smaller dimension or add \
                 training rows",
                n.min(d)
            )));
        }
        if let Some(i) = x.data.iter().position(|v| !v.is_finite()) {
            return Err(Error::bad_input(format!(
                "PCA input row {} column {} is not a finite number",
                i / d,
                i % d
            )));
        }
        let mut mean = vec![0.0f64; d];
        for i in 0..n {
            for (m, v) in mean.iter_mut().zip(x.row(i)) {
                *m += *v as f64;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        let centred = Mat::<f64>::from_fn(n, d, |i, j| x.get(i, j) as f64 - mean[j]);
        let total_variance: f64 = (0..d).map(|j| centred.col(j).squared_norm_l2()).sum();

        let (eigenvalues, components) = if n >= d {
            let covariance = centred.transpose() * &centred;
            top_eigen(&covariance, k)?
        } else {
            // Fewer rows than features: the left singular vectors from the n x n Gram matrix,
            // then v = X^T u / sigma.
            let gram = &centred * centred.transpose();
            let (values, u) = top_eigen(&gram, k)?;
            let mut v = centred.transpose() * &u;
            for (c, &lambda) in values.iter().enumerate() {
                let sigma = lambda.max(0.0).sqrt();
                let scale = if sigma > 1e-12 { 1.0 / sigma } else { 0.0 };
                v.col_mut(c).iter_mut().for_each(|x| *x *= scale);
            }
            (values, v)
        };
        let explained_variance: Vec<f64> =
            eigenvalues.iter().map(|l| l.max(0.0) / (n.max(2) - 1) as f64).collect();
        let explained_variance_ratio = eigenvalues
            .iter()
            .map(|l| if total_variance > 0.0 { l.max(0.0) / total_variance } else { 0.0 })
            .collect();
        let mut flat = Vec::with_capacity(k * d);
        for c in 0..k {
            flat.extend((0..d).map(|j| components[(j, c)] as f32));
        }
        Ok(Pca {
            mean: mean.iter().map(|&m| m as f32).collect(),
            components: flat,
            k,
            explained_variance,
            explained_variance_ratio,
        })
    }

    pub fn input_dim(&self) -> usize {
        self.mean.len()
    }

    /// Rows projected onto the components: (x - mean) . component.
    pub fn transform(&self, x: &Matrix) -> Result<Matrix> {
        let d = self.input_dim();
        if x.cols != d {
            return Err(Error::bad_input(format!(
                "the PCA was fitted on {d} features but these rows have {}: were the embeddings made by \
                 the same backbone?",
                x.cols
            )));
        }
        let centred = Mat::<f32>::from_fn(x.rows, d, |i, j| x.get(i, j) - self.mean[j]);
        let components = Mat::<f32>::from_fn(d, self.k, |j, c| self.components[c * d + j]);
        let projected = &centred * &components;
        Ok(Matrix {
            rows: x.rows,
            cols: self.k,
            data: (0..x.rows)
                .flat_map(|i| (0..self.k).map(move |c| (i, c)))
                .map(|(i, c)| projected[(i, c)])
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows of scikit-learn's iris data set (first 4 of each species), 4 features.
    fn iris() -> Matrix {
        Matrix::from_rows(&[
            [5.1, 3.5, 1.4, 0.2],
            [4.9, 3.0, 1.4, 0.2],
            [4.7, 3.2, 1.3, 0.2],
            [4.6, 3.1, 1.5, 0.2],
            [7.0, 3.2, 4.7, 1.4],
            [6.4, 3.2, 4.5, 1.5],
            [6.9, 3.1, 4.9, 1.5],
            [5.5, 2.3, 4.0, 1.3],
            [6.3, 3.3, 6.0, 2.5],
            [5.8, 2.7, 5.1, 1.9],
            [7.1, 3.0, 5.9, 2.1],
            [6.3, 2.9, 5.6, 1.8],
        ])
        .unwrap()
    }

    #[test]
    fn matches_scikit_learn_on_iris() {
        // Expected values computed once with scikit-learn 1.7.2: PCA(n_components=2).fit(X).
        let pca = Pca::fit(&iris(), 2).unwrap();
        let expected_ratio = [0.94413692, 0.04171135];
        for (a, b) in pca.explained_variance_ratio.iter().zip(expected_ratio) {
            assert!((a - b).abs() < 1e-6, "{:?}", pca.explained_variance_ratio);
        }
        let projected = pca.transform(&iris()).unwrap();
        assert_eq!((projected.rows, projected.cols), (12, 2));
        // Up to the sign of each component, scikit-learn's transform of the first row.
        let expected_first = [-2.77956662f64, 0.38754619];
        for (c, e) in expected_first.iter().enumerate() {
            assert!(((projected.get(0, c) as f64).abs() - e.abs()).abs() < 1e-4, "{:?}", projected.row(0));
        }
        // Components are orthonormal.
        let d = pca.input_dim();
        let dot = |a: usize, b: usize| -> f32 {
            (0..d).map(|j| pca.components[a * d + j] * pca.components[b * d + j]).sum()
        };
        assert!((dot(0, 0) - 1.0).abs() < 1e-5 && dot(0, 1).abs() < 1e-5);
    }

    #[test]
    fn wide_data_uses_the_gram_matrix_and_agrees() {
        // 5 rows x 8 columns: fewer rows than features.
        let x = Matrix::from_rows(&[
            [1.0, 2.0, 0.5, 3.0, 1.0, 0.0, 2.0, 1.5],
            [2.0, 1.0, 1.5, 2.0, 0.0, 1.0, 1.0, 0.5],
            [0.5, 3.0, 0.0, 4.0, 2.0, 0.5, 3.0, 2.0],
            [3.0, 0.0, 2.5, 1.0, 0.5, 2.0, 0.0, 0.0],
            [1.5, 1.5, 1.0, 2.5, 1.5, 1.0, 1.5, 1.0],
        ])
        .unwrap();
        let pca = Pca::fit(&x, 3).unwrap();
        let projected = pca.transform(&x).unwrap();
        // The projection keeps the variance the eigenvalues claim.
        for c in 0..3 {
            let column = projected.column(c);
            let variance = column.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / 4.0;
            assert!((variance - pca.explained_variance[c]).abs() < 1e-4, "{c}: {variance}");
        }
        assert!(pca.explained_variance_ratio.iter().sum::<f64>() <= 1.0 + 1e-9);
    }

    #[test]
    fn bad_dimensions_are_clear_errors() {
        let e = Pca::fit(&iris(), 5).unwrap_err();
        assert!(e.is_bad_input() && e.to_string().contains("min(rows, features) = 4"), "{e}");
        assert!(Pca::fit(&iris(), 0).unwrap_err().is_bad_input());
        let pca = Pca::fit(&iris(), 2).unwrap();
        let e = pca.transform(&Matrix::zeros(2, 3)).unwrap_err();
        assert!(e.to_string().contains("fitted on 4 features"), "{e}");
    }

    #[test]
    fn round_trips_through_json() {
        let pca = Pca::fit(&iris(), 2).unwrap();
        let back: Pca = serde_json::from_str(&serde_json::to_string(&pca).unwrap()).unwrap();
        assert_eq!(back.transform(&iris()).unwrap(), pca.transform(&iris()).unwrap());
    }
}
