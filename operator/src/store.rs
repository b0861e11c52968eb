//! Where artifacts and backbones live (`s3://bucket/prefix` or `pvc://claim/sub/path`), and
//! how a trainer pod reaches them.

use std::fmt;
use std::str::FromStr;

/// A folder in an S3 bucket or on a PersistentVolumeClaim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    S3 { bucket: String, prefix: String },
    Pvc { claim: String, path: String },
}

impl FromStr for Location {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let split = |rest: &str| -> (String, String) {
            let (head, tail) = rest.split_once('/').unwrap_or((rest, ""));
            (head.to_owned(), tail.trim_matches('/').to_owned())
        };
        if let Some(rest) = text.strip_prefix("s3://") {
            let (bucket, prefix) = split(rest);
            if !bucket.is_empty() {
                return Ok(Self::S3 { bucket, prefix });
            }
        } else if let Some(rest) = text.strip_prefix("pvc://") {
            let (claim, path) = split(rest);
            if !claim.is_empty() && !path.split('/').any(|p| p == "..") {
                return Ok(Self::Pvc { claim, path });
            }
        }
        Err(format!(
            "{text:?} is not a store location; write s3://bucket/prefix or pvc://claim-name/sub/path"
        ))
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (scheme, head, tail) = match self {
            Self::S3 { bucket, prefix } => ("s3", bucket, prefix),
            Self::Pvc { claim, path } => ("pvc", claim, path),
        };
        write!(f, "{scheme}://{head}")?;
        if !tail.is_empty() {
            write!(f, "/{tail}")?;
        }
        Ok(())
    }
}

impl Location {
    /// The location as the trainer in a pod sees it: an `s3://` URI, or a path under the
    /// folder where the claim is mounted.
    pub fn in_pod(&self, mount_dir: &str) -> String {
        match self {
            Self::S3 { .. } => self.to_string(),
            Self::Pvc { path, .. } if path.is_empty() => mount_dir.to_owned(),
            Self::Pvc { path, .. } => format!("{mount_dir}/{path}"),
        }
    }

    pub fn claim(&self) -> Option<&str> {
        match self {
            Self::Pvc { claim, .. } => Some(claim),
            Self::S3 { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_both_schemes() {
        let s3: Location = "s3://bucket/a/b/".parse().unwrap();
        assert_eq!(s3, Location::S3 { bucket: "bucket".into(), prefix: "a/b".into() });
        assert_eq!(s3.to_string(), "s3://bucket/a/b");
        assert_eq!(s3.in_pod("/artifacts"), "s3://bucket/a/b");
        let pvc: Location = "pvc://claim/sub".parse().unwrap();
        assert_eq!(pvc.in_pod("/artifacts"), "/artifacts/sub");
        assert_eq!(pvc.claim(), Some("claim"));
        let root: Location = "pvc://claim".parse().unwrap();
        assert_eq!(root.in_pod("/artifacts"), "/artifacts");
    }

    #[test]
    fn refuses_other_schemes_and_escapes() {
        for bad in ["/data", "s3://", "pvc://claim/../x", "http://x"] {
            let error = bad.parse::<Location>().unwrap_err();
            assert!(error.contains("s3://bucket/prefix"), "{error}");
        }
    }
}
