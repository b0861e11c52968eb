//! The Ocellus trainer: what runs inside a trainer pod, and on a laptop as `ocellus`.

pub mod augment;
pub mod backbone;
pub mod device;
pub mod error;
pub mod preprocess;

pub use error::{Error, Result};
