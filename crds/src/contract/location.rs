//! Artifact-store locations (`s3://bucket/prefix`, `pvc://claim/path`), parsed once.
//!
//! [`Location`] is what the operator is configured with (`OCELLUS_ARTIFACTS`,
//! `OCELLUS_BACKBONES`) and how it tells a pod where its artifacts are ([`Location::in_pod`]).
//! [`StoreUri`] is what the trainer makes of the strings it is handed (`--out`, `--bundle`,
//! `--backbones`, a Dataset's `status.location`): a local path (a mounted claim, or a folder
//! on this machine) or a prefix in an S3 bucket.

use std::fmt;
use std::path::PathBuf;
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

/// A folder in an S3 bucket: `s3://bucket/prefix`, the prefix without leading or trailing
/// slashes (empty for the bucket's root) and without `.`/`..` components.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct S3Prefix {
    pub bucket: String,
    pub prefix: String,
}

impl S3Prefix {
    /// Parses `s3://bucket[/prefix]`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let invalid = |why: &str| format!("{text:?} is not an S3 folder ({why}); write s3://bucket/prefix");
        let rest = text.strip_prefix("s3://").ok_or_else(|| invalid("no s3:// scheme"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(invalid("no bucket"));
        }
        let root = Self { bucket: bucket.to_owned(), prefix: String::new() };
        root.join(prefix).map_err(|_| invalid("a `.` or `..` component"))
    }

    /// The folder `sub` below this one (`a/b` joins as two components; empty components are
    /// dropped). Refuses `.` and `..`, so no join leaves the prefix.
    pub fn join(&self, sub: &str) -> Result<Self, String> {
        let mut parts: Vec<&str> = self.prefix.split('/').filter(|p| !p.is_empty()).collect();
        for part in sub.split('/').filter(|p| !p.is_empty()) {
            if part == "." || part == ".." {
                return Err(format!("{sub:?} may not contain `.` or `..` (below {self})"));
            }
            parts.push(part);
        }
        Ok(Self { bucket: self.bucket.clone(), prefix: parts.join("/") })
    }

    /// The object key of `relative` (a `/`-separated path) below this folder.
    pub fn key(&self, relative: &str) -> String {
        let relative = relative.trim_start_matches('/');
        if self.prefix.is_empty() { relative.to_owned() } else { format!("{}/{relative}", self.prefix) }
    }

    /// What a listing of this folder asks for: the prefix with a trailing slash (or nothing
    /// for the bucket's root), so `runs/a` never lists `runs/ab/…`.
    pub fn list_prefix(&self) -> String {
        if self.prefix.is_empty() { String::new() } else { format!("{}/", self.prefix) }
    }
}

impl fmt::Display for S3Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}", self.bucket)?;
        if !self.prefix.is_empty() {
            write!(f, "/{}", self.prefix)?;
        }
        Ok(())
    }
}

/// Where the trainer reads or writes a folder: on this machine (a mounted claim is a local
/// path too) or in S3.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreUri {
    Local(PathBuf),
    S3(S3Prefix),
}

impl StoreUri {
    /// `s3://…` is S3; `pvc://…` is refused (the operator hands pods the mounted path);
    /// anything else is a local path.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.starts_with("s3://") {
            return S3Prefix::parse(text).map(Self::S3);
        }
        if text.starts_with("pvc://") {
            return Err(format!(
                "{text:?}: a claim is reached through the folder where it is mounted; give that path"
            ));
        }
        Ok(Self::Local(PathBuf::from(text)))
    }

    /// The same as [`parse`](Self::parse), for a path that came in as a `PathBuf`
    /// (a clap argument).
    pub fn from_path(path: &std::path::Path) -> Result<Self, String> {
        match path.to_str() {
            Some(text) => Self::parse(text),
            None => Ok(Self::Local(path.to_owned())),
        }
    }

    pub fn s3(&self) -> Option<&S3Prefix> {
        match self {
            Self::S3(prefix) => Some(prefix),
            Self::Local(_) => None,
        }
    }
}

impl fmt::Display for StoreUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local(path) => write!(f, "{}", path.display()),
            Self::S3(prefix) => write!(f, "{prefix}"),
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

    #[test]
    fn store_uris_are_local_paths_or_s3_prefixes() {
        let uri = StoreUri::parse("s3://bucket//experiments/ns/exp/").unwrap();
        let prefix = uri.s3().unwrap();
        assert_eq!(prefix.prefix, "experiments/ns/exp");
        assert_eq!(uri.to_string(), "s3://bucket/experiments/ns/exp");
        assert_eq!(prefix.key("scoring/bundle.json"), "experiments/ns/exp/scoring/bundle.json");
        assert_eq!(prefix.list_prefix(), "experiments/ns/exp/");
        assert_eq!(
            prefix.join("datasets/cars").unwrap().to_string(),
            "s3://bucket/experiments/ns/exp/datasets/cars"
        );
        assert!(prefix.join("../other").is_err());
        let root = S3Prefix::parse("s3://bucket").unwrap();
        assert_eq!((root.key("result.json"), root.list_prefix()), ("result.json".into(), String::new()));
        assert_eq!(StoreUri::parse("/runs/a").unwrap(), StoreUri::Local("/runs/a".into()));
        for bad in ["s3://", "s3:///x", "s3://b/a/../c", "pvc://claim/x"] {
            assert!(StoreUri::parse(bad).is_err(), "{bad}");
        }
    }
}
