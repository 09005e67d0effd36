//! The library's one error type.

use std::path::PathBuf;

/// Everything that can go wrong in glassbox, each variant carrying the context a user needs to
/// act on it (the file, the model, the device).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An input image could not be opened or decoded, or is unusable (empty, too large).
    #[error("{}: {reason}", path.display())]
    Image {
        /// The file as given.
        path: PathBuf,
        /// Why it was refused, in one line.
        reason: String,
    },
    /// A model name that is not built in.
    #[error("unknown model '{name}' (built-in: {available})")]
    UnknownModel {
        /// The name asked for.
        name: String,
        /// The built-in model ids, comma-separated.
        available: String,
    },
    /// A class name or index that the model does not have.
    #[error("model '{model}' has no class '{class}'")]
    UnknownClass {
        /// The model id.
        model: String,
        /// The class as given.
        class: String,
    },
    /// The weights of a model that is not embedded could not be found.
    #[error(
        "model '{model}': weights file {file_name} not found (looked in {searched}); set GLASSBOX_WEIGHTS to the folder holding it"
    )]
    WeightsNotFound {
        /// The model id.
        model: String,
        /// The burnpack file name.
        file_name: String,
        /// The folders searched, comma-separated.
        searched: String,
    },
    /// A model's weights did not load into its network.
    #[error("model '{model}': cannot load weights: {reason}")]
    ModelLoad {
        /// The model id.
        model: String,
        /// The store's complaint.
        reason: String,
    },
    /// The model produced NaN or infinite values.
    #[error(
        "model '{model}' produced non-finite outputs ({count} of {total} values); the explanation would be garbage"
    )]
    NonFinite {
        /// The model id.
        model: String,
        /// How many values were NaN or infinite.
        count: usize,
        /// How many values were produced.
        total: usize,
    },
    /// No GPU could be used where one was required.
    #[error("no usable GPU: {0}")]
    NoGpu(String),
    /// The compute device failed while running a batch, even at chunk size 1.
    #[error("device failure on {device}: {reason}")]
    Device {
        /// The device description.
        device: String,
        /// What failed.
        reason: String,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An argument is out of its valid range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

/// `Result` with glassbox's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
