//! The error type of everything in the trainer that is not libtorch, and the exit codes a
//! Job's `podFailurePolicy` keys on.

use std::path::PathBuf;

/// Exit code for input that can never work (bad manifest, bad data): a Job fails at once
/// instead of retrying. Same value as `EX_DATAERR` in sysexits.h.
pub const EXIT_BAD_INPUT: i32 = 65;
/// Exit code when a source (S3, HTTP, volume) cannot be reached: worth a retry, and the
/// operator reports it as `SourceUnreachable`. Same value as `EX_UNAVAILABLE`.
pub const EXIT_SOURCE_UNREACHABLE: i32 = 69;
/// Exit code for everything else (I/O, out of memory, bugs): worth a retry.
pub const EXIT_FAILURE: i32 = 1;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(thiserror::Error, Debug)]
pub enum Error {
    /// Input that no retry can fix; the message says what to change.
    #[error("{0}")]
    BadInput(String),
    /// A source that could not be reached or read (network, credentials service, timeouts).
    #[error("{0}")]
    SourceUnreachable(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A JSON file the project wrote earlier that no longer parses (torn, edited by hand).
    #[error("{path} is not valid JSON ({source}); delete it and run the step that writes it again")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: cannot decode image: {source}")]
    Image {
        path: PathBuf,
        #[source]
        source: image::ImageError,
    },
}

impl Error {
    pub fn bad_input(message: impl Into<String>) -> Self {
        Self::BadInput(message.into())
    }

    pub fn unreachable(message: impl Into<String>) -> Self {
        Self::SourceUnreachable(message.into())
    }

    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }

    /// The process exit code this error maps to.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::BadInput(_) | Self::Image { .. } | Self::Json { .. } => EXIT_BAD_INPUT,
            Self::SourceUnreachable(_) => EXIT_SOURCE_UNREACHABLE,
            Self::Io { .. } => EXIT_FAILURE,
        }
    }
}
