//! The part of LightGBM's C API that `lightgbm3`'s safe wrapper does not reach: datasets built
//! with parameters (it always passes none, so `categorical_feature` and the binning settings
//! could not be set) and a training loop that keeps the best validation iteration. Prediction,
//! saving and importances go through `lightgbm3::Booster`, loaded from the trained model text.

use std::ffi::{CStr, CString, c_void};

use lightgbm3_sys as sys;

use crate::error::{Error, Result};
use crate::matrix::Matrix;

fn check(code: i32) -> Result<()> {
    if code == 0 {
        return Ok(());
    }
    // SAFETY: LGBM_GetLastError returns a pointer to a NUL-terminated thread-local buffer.
    let message = unsafe { CStr::from_ptr(sys::LGBM_GetLastError()) };
    Err(Error::LightGbm(message.to_string_lossy().into_owned()))
}

fn c_string(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::Internal(format!("parameter string with a NUL byte: {s:?}")))
}

pub struct Dataset {
    handle: sys::DatasetHandle,
}

impl Dataset {
    /// A dataset from a row-major matrix and its labels. `reference` (the training dataset)
    /// gives a validation dataset the training bin boundaries.
    pub fn new(x: &Matrix, labels: &[f32], parameters: &str, reference: Option<&Dataset>) -> Result<Dataset> {
        if x.rows != labels.len() || x.rows == 0 || x.cols == 0 {
            return Err(Error::Internal(format!(
                "a LightGBM dataset of {} x {} with {} labels",
                x.rows,
                x.cols,
                labels.len()
            )));
        }
        let parameters = c_string(parameters)?;
        let mut handle: sys::DatasetHandle = std::ptr::null_mut();
        // SAFETY: x.data holds rows * cols f32 values in row-major order; LightGBM copies them.
        check(unsafe {
            sys::LGBM_DatasetCreateFromMat(
                x.data.as_ptr() as *const c_void,
                sys::C_API_DTYPE_FLOAT32 as i32,
                x.rows as i32,
                x.cols as i32,
                1,
                parameters.as_ptr(),
                reference.map_or(std::ptr::null_mut(), |r| r.handle),
                &mut handle,
            )
        })?;
        let dataset = Dataset { handle };
        let field = c_string("label")?;
        // SAFETY: labels has rows f32 values; LightGBM copies them.
        check(unsafe {
            sys::LGBM_DatasetSetField(
                dataset.handle,
                field.as_ptr(),
                labels.as_ptr() as *const c_void,
                labels.len() as i32,
                sys::C_API_DTYPE_FLOAT32 as i32,
            )
        })?;
        Ok(dataset)
    }
}

impl Drop for Dataset {
    fn drop(&mut self) {
        // SAFETY: the handle came from LGBM_DatasetCreateFromMat and is freed once.
        unsafe { sys::LGBM_DatasetFree(self.handle) };
    }
}

/// A booster being trained. It borrows its datasets, which LightGBM reads during training.
pub struct Training<'a> {
    handle: sys::BoosterHandle,
    _data: std::marker::PhantomData<&'a Dataset>,
}

impl<'a> Training<'a> {
    pub fn new(train: &'a Dataset, parameters: &str) -> Result<Training<'a>> {
        let parameters = c_string(parameters)?;
        let mut handle: sys::BoosterHandle = std::ptr::null_mut();
        // SAFETY: train is a live dataset handle; the booster does not outlive it ('a).
        check(unsafe { sys::LGBM_BoosterCreate(train.handle, parameters.as_ptr(), &mut handle) })?;
        Ok(Training { handle, _data: std::marker::PhantomData })
    }

    pub fn add_validation(&mut self, valid: &'a Dataset) -> Result<()> {
        // SAFETY: both handles are live; valid outlives the booster ('a).
        check(unsafe { sys::LGBM_BoosterAddValidData(self.handle, valid.handle) })
    }

    /// One boosting round; true when no further split improves the model.
    pub fn update(&mut self) -> Result<bool> {
        let mut finished = 0;
        // SAFETY: live booster handle.
        check(unsafe { sys::LGBM_BoosterUpdateOneIter(self.handle, &mut finished) })?;
        Ok(finished != 0)
    }

    /// The first metric on the first validation dataset.
    pub fn validation_metric(&self) -> Result<f64> {
        let mut count = 0;
        // SAFETY: live booster handle.
        check(unsafe { sys::LGBM_BoosterGetEvalCounts(self.handle, &mut count) })?;
        if count < 1 {
            return Err(Error::Internal("LightGBM reports no validation metric".into()));
        }
        let mut results = vec![0.0f64; count as usize];
        let mut len = 0;
        // SAFETY: results has room for `count` values, as LightGBM requires.
        check(unsafe { sys::LGBM_BoosterGetEval(self.handle, 1, &mut len, results.as_mut_ptr()) })?;
        Ok(results[0])
    }

    /// The model text of the first `iterations` rounds.
    pub fn model_text(&self, iterations: usize) -> Result<String> {
        let mut needed: i64 = 0;
        let mut buffer = vec![0u8; 1 << 16];
        for _ in 0..2 {
            // SAFETY: buffer has buffer.len() bytes; LightGBM writes at most that many and
            // reports the full length in `needed`.
            check(unsafe {
                sys::LGBM_BoosterSaveModelToString(
                    self.handle,
                    0,
                    iterations as i32,
                    sys::C_API_FEATURE_IMPORTANCE_GAIN as i32,
                    buffer.len() as i64,
                    &mut needed,
                    buffer.as_mut_ptr() as *mut std::ffi::c_char,
                )
            })?;
            if needed as usize <= buffer.len() {
                break;
            }
            buffer = vec![0u8; needed as usize];
        }
        let text = CStr::from_bytes_until_nul(&buffer)
            .map_err(|_| Error::Internal("LightGBM model text without a terminating NUL".into()))?;
        Ok(text.to_string_lossy().into_owned())
    }
}

impl Drop for Training<'_> {
    fn drop(&mut self) {
        // SAFETY: the handle came from LGBM_BoosterCreate and is freed once.
        unsafe { sys::LGBM_BoosterFree(self.handle) };
    }
}
