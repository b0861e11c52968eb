//! The trainer's error: everything the dataset crate can fail with, plus libtorch's.

pub use ocellus_dataset::error::{EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_SOURCE_UNREACHABLE};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(thiserror::Error, Debug)]
pub enum Error {
    #[error(transparent)]
    Dataset(#[from] ocellus_dataset::Error),
    #[error(transparent)]
    Torch(#[from] tch::TchError),
    /// A bug or a broken invariant, not the user's input.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn bad_input(message: impl Into<String>) -> Self {
        ocellus_dataset::Error::bad_input(message).into()
    }

    pub fn io(path: impl Into<std::path::PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let wrap = ocellus_dataset::Error::io(path);
        move |source| wrap(source).into()
    }

    /// A report that cannot be drawn from a folder is the folder's fault unless plotting broke.
    pub fn from_report(error: ocellus_report::Error) -> Self {
        match error {
            ocellus_report::Error::Dataset(error) => error.into(),
            ocellus_report::Error::Plot(message) => Error::Internal(message),
            other => Error::bad_input(other.to_string()),
        }
    }

    /// The process exit code this error maps to.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Dataset(error) => error.exit_code(),
            Self::Torch(_) | Self::Internal(_) => EXIT_FAILURE,
        }
    }
}
