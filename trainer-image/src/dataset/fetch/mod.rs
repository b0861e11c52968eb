//! Fetching sources and images: HTTP(S) and S3.
