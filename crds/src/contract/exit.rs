//! Exit codes of `ocellus` and `ocellus-dataset`. A Job's `podFailurePolicy` fails at once on
//! [`BAD_INPUT`]; every other failure is retried up to the Job's `backoffLimit`.

/// The input is wrong (`EX_DATAERR`): retrying cannot help, the user must fix the spec or data.
pub const BAD_INPUT: i32 = 65;
/// A source or store could not be reached (`EX_UNAVAILABLE`): worth a retry.
pub const SOURCE_UNREACHABLE: i32 = 69;
/// Anything else: worth a retry.
pub const OTHER: i32 = 1;
