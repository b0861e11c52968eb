use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not valid JSON ({source}); run the experiment again to rewrite it")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: {message}")]
    Csv { path: PathBuf, message: String },
    /// A file the report needs is absent: the folder is not a finished run.
    #[error("{0}")]
    Missing(String),
    /// The run's files disagree with each other.
    #[error("{0}")]
    Inconsistent(String),
    #[error("drawing a plot failed: {0}")]
    Plot(String),
    #[error(transparent)]
    Dataset(#[from] ocellus_dataset::Error),
}

impl Error {
    pub fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
        move |source| Error::Io { path: path.to_owned(), source }
    }

    pub fn csv(path: &Path, error: csv::Error) -> Error {
        Error::Csv { path: path.to_owned(), message: error.to_string() }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
