/// Errors of the tabular pipeline. `BadInput` is the user's to fix and its message says how;
/// the others are failures of this program or of the libraries under it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    BadInput(String),
    #[error("LightGBM failed: {0}")]
    LightGbm(String),
    #[error("linear algebra failed: {0}")]
    LinearAlgebra(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{context}: {source}")]
    Json {
        context: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn bad_input(message: impl Into<String>) -> Self {
        Error::BadInput(message.into())
    }

    /// Whether the user can fix this by changing the input or the spec.
    pub fn is_bad_input(&self) -> bool {
        matches!(self, Error::BadInput(_))
    }
}

impl From<lightgbm3::Error> for Error {
    fn from(e: lightgbm3::Error) -> Self {
        Error::LightGbm(e.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
