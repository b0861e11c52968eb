//! A dense row-major `f32` matrix: the common currency between embeddings, encoders, PCA and
//! LightGBM (whose C API takes exactly this layout).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Matrix {
    pub rows: usize,
    pub cols: usize,
    /// `rows * cols` values, row after row.
    pub data: Vec<f32>,
}

impl Matrix {
    pub fn new(rows: usize, cols: usize, data: Vec<f32>) -> Result<Matrix> {
        if data.len() != rows * cols {
            return Err(Error::Internal(format!(
                "a {rows} x {cols} matrix needs {} values, got {}",
                rows * cols,
                data.len()
            )));
        }
        Ok(Matrix { rows, cols, data })
    }

    pub fn zeros(rows: usize, cols: usize) -> Matrix {
        Matrix { rows, cols, data: vec![0.0; rows * cols] }
    }

    /// Rows of equal length; `cols` is 0 when there are no rows.
    pub fn from_rows<R: AsRef<[f32]>>(rows: &[R]) -> Result<Matrix> {
        let cols = rows.first().map_or(0, |r| r.as_ref().len());
        let mut data = Vec::with_capacity(rows.len() * cols);
        for (i, row) in rows.iter().enumerate() {
            let row = row.as_ref();
            if row.len() != cols {
                return Err(Error::Internal(format!("row {i} has {} values, row 0 has {cols}", row.len())));
            }
            data.extend_from_slice(row);
        }
        Ok(Matrix { rows: rows.len(), cols, data })
    }

    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    pub fn row_mut(&mut self, i: usize) -> &mut [f32] {
        &mut self.data[i * self.cols..(i + 1) * self.cols]
    }

    pub fn get(&self, i: usize, j: usize) -> f32 {
        self.data[i * self.cols + j]
    }

    /// Column `j` as a vector.
    pub fn column(&self, j: usize) -> Vec<f32> {
        (0..self.rows).map(|i| self.get(i, j)).collect()
    }

    /// The columns `range` as a new matrix (for example one architecture's block of an embedding).
    pub fn columns(&self, range: std::ops::Range<usize>) -> Matrix {
        assert!(range.end <= self.cols, "columns {range:?} of a matrix with {} columns", self.cols);
        let mut data = Vec::with_capacity(self.rows * range.len());
        for i in 0..self.rows {
            data.extend_from_slice(&self.row(i)[range.clone()]);
        }
        Matrix { rows: self.rows, cols: range.len(), data }
    }

    /// The given rows, in the given order.
    pub fn select_rows(&self, indices: &[usize]) -> Matrix {
        let mut data = Vec::with_capacity(indices.len() * self.cols);
        for &i in indices {
            data.extend_from_slice(self.row(i));
        }
        Matrix { rows: indices.len(), cols: self.cols, data }
    }

    /// Side by side: the columns of every part, in order. All parts need the same row count.
    pub fn hstack(parts: &[&Matrix]) -> Result<Matrix> {
        let Some(first) = parts.first() else {
            return Ok(Matrix::zeros(0, 0));
        };
        let rows = first.rows;
        if let Some(p) = parts.iter().find(|p| p.rows != rows) {
            return Err(Error::Internal(format!("hstack of matrices with {rows} and {} rows", p.rows)));
        }
        let cols = parts.iter().map(|p| p.cols).sum();
        let mut data = Vec::with_capacity(rows * cols);
        for i in 0..rows {
            for p in parts {
                data.extend_from_slice(p.row(i));
            }
        }
        Ok(Matrix { rows, cols, data })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Matrix {
        Matrix::from_rows(&[vec![1.0, 2.0, 3.0], vec![4.0, 5.0, 6.0]]).unwrap()
    }

    #[test]
    fn rows_columns_and_selection() {
        let m = sample();
        assert_eq!((m.rows, m.cols), (2, 3));
        assert_eq!(m.row(1), &[4.0, 5.0, 6.0]);
        assert_eq!(m.column(2), vec![3.0, 6.0]);
        assert_eq!(m.columns(1..3).data, vec![2.0, 3.0, 5.0, 6.0]);
        assert_eq!(m.select_rows(&[1, 0, 1]).data, vec![4.0, 5.0, 6.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    }

    #[test]
    fn hstack_interleaves_rows() {
        let a = sample();
        let b = Matrix::from_rows(&[vec![7.0], vec![8.0]]).unwrap();
        let h = Matrix::hstack(&[&a, &b]).unwrap();
        assert_eq!((h.rows, h.cols), (2, 4));
        assert_eq!(h.data, vec![1.0, 2.0, 3.0, 7.0, 4.0, 5.0, 6.0, 8.0]);
        let short = Matrix::zeros(1, 1);
        assert!(Matrix::hstack(&[&a, &short]).is_err());
    }

    #[test]
    fn ragged_rows_are_refused() {
        assert!(Matrix::from_rows(&[vec![1.0, 2.0], vec![3.0]]).is_err());
        assert!(Matrix::new(2, 2, vec![0.0; 3]).is_err());
    }
}
