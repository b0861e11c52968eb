//! The Ocellus trainer: what runs inside a trainer pod, and on a laptop as `ocellus`.

pub mod artifacts;
pub mod augment;
pub mod backbone;
pub mod bundle;
pub mod device;
pub mod embed;
pub mod error;
pub mod finetune;
pub mod image_cells;
pub mod optimizer;
pub mod pipeline;
pub mod predict;
pub mod preprocess;
pub mod progress;
pub mod run;
pub mod serve;

pub use error::{Error, Result};
