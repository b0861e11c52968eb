//! An HTTP(S) source whose URL ends in `/`: a folder served with an HTML index (nginx
//! `autoindex`, Apache `mod_autoindex`, `python -m http.server`), whose images and tables are
//! fetched into a folder that the layouts then read as an extracted archive.
//!
//! Index pages are read for links that resolve below the folder's URL; parent, sort and
//! external links are not followed. A link ending in `/` is a subfolder, read in turn. An index
//! page lists no ETags, so every import fetches every file again (16 at a time, with the
//! Dataset's timeout, size cap and retries); hidden and macOS junk names are skipped as in an
//! archive.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

use futures_util::stream::{self, StreamExt};
use reqwest::Url;

use super::{FetchOptions, http};
use crate::layout::{has_image_extension, is_ignored_name, is_table_name};
use crate::{Error, Result};

/// How many files download at once.
const CONCURRENCY: usize = 16;
/// Index pages read at most (folders, with the top one).
const MAX_PAGES: usize = 10_000;

/// What a folder fetch did, for the import's log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FolderSummary {
    pub pages: usize,
    pub fetched: usize,
    pub skipped: usize,
}

/// Whether an `http` source names a folder: its URL's path ends in `/`.
pub fn is_folder(url: &str) -> bool {
    Url::parse(url).is_ok_and(|url| url.path().ends_with('/'))
}

/// Reads the index pages under `url` and downloads its images and tables into `dest`, each at
/// its path below the folder.
pub async fn fetch_folder(url: &str, dest: &Path, options: &FetchOptions) -> Result<FolderSummary> {
    let base = Url::parse(url)
        .map_err(|e| Error::bad_input(format!("{url}: not a URL ({e}); check spec.source.http.url")))?;
    let client = http::client()?;
    std::fs::create_dir_all(dest).map_err(Error::io(dest))?;
    let pages_dir = tempfile::tempdir_in(super::parent_dir(dest)).map_err(Error::io(dest))?;
    let mut pending = vec![base.clone()];
    let mut seen = HashSet::from([base.clone()]);
    let mut files: Vec<(Url, PathBuf)> = Vec::new();
    let mut summary = FolderSummary::default();
    while let Some(page) = pending.pop() {
        summary.pages += 1;
        let saved = pages_dir.path().join(format!("{}.html", summary.pages));
        http::download(&client, page.as_str(), &saved, options).await?;
        let text = String::from_utf8_lossy(&std::fs::read(&saved).map_err(Error::io(&saved))?).into_owned();
        for link in links(&text) {
            let Some((target, relative)) = below(&base, &page, &link) else { continue };
            if relative.components().any(|name| is_ignored_name(&name.as_os_str().to_string_lossy())) {
                summary.skipped += 1;
            } else if target.path().ends_with('/') {
                if seen.insert(target.clone()) {
                    if seen.len() > MAX_PAGES {
                        return Err(Error::bad_input(format!(
                            "{url}: more than {MAX_PAGES} folders are listed below it; point \
                             spec.source.http.url at a smaller folder, or upload an archive"
                        )));
                    }
                    pending.push(target);
                }
            } else {
                let name = relative.to_string_lossy();
                if has_image_extension(&name) || is_table_name(&name) {
                    files.push((target, relative));
                } else {
                    summary.skipped += 1;
                }
            }
        }
    }
    files.sort();
    files.dedup();
    if files.is_empty() {
        return Err(Error::bad_input(format!(
            "{url}: its index pages list no images and no CSV or Parquet table ({} pages read); \
             check spec.source.http.url (a folder ends with `/`) and that the server lists the folder",
            summary.pages
        )));
    }
    let results: Vec<Result<u64>> = stream::iter(&files)
        .map(|(file_url, relative)| {
            let target = dest.join(relative);
            let client = &client;
            async move {
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent).map_err(Error::io(parent))?;
                }
                http::download(client, file_url.as_str(), &target, options).await
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    for result in results {
        result?;
        summary.fetched += 1;
    }
    Ok(summary)
}

/// The `href` values of an HTML page, entities for `&`, quotes and `'` decoded.
fn links(html: &str) -> Vec<String> {
    let lower = html.to_ascii_lowercase();
    let mut links = Vec::new();
    let mut at = 0;
    while let Some(found) = lower[at..].find("href=") {
        let start = at + found + "href=".len();
        let rest = &html[start..];
        let (value, used) = match rest.chars().next() {
            Some(quote @ ('"' | '\'')) => match rest[1..].find(quote) {
                Some(end) => (&rest[1..=end], end + 2),
                None => break,
            },
            _ => {
                let end = rest.find(|c: char| c.is_whitespace() || c == '>').unwrap_or(rest.len());
                (&rest[..end], end)
            }
        };
        links.push(
            value.replace("&quot;", "\"").replace("&#39;", "'").replace("&#x27;", "'").replace("&amp;", "&"),
        );
        at = start + used.max(1);
    }
    links
}

/// `link` on `page`, resolved, when it lies strictly below `base`: the URL (no query or
/// fragment) and its decoded path below `base`, every segment a plain name.
fn below(base: &Url, page: &Url, link: &str) -> Option<(Url, PathBuf)> {
    if link.starts_with('?') || link.starts_with('#') {
        return None;
    }
    let mut target = page.join(link).ok()?;
    target.set_query(None);
    target.set_fragment(None);
    let encoded = target.as_str().strip_prefix(base.as_str())?;
    if encoded.is_empty() {
        return None;
    }
    let decoded = percent_encoding::percent_decode_str(encoded).decode_utf8().ok()?;
    let relative = PathBuf::from(decoded.trim_end_matches('/'));
    let plain = relative.components().all(|part| matches!(part, Component::Normal(_)));
    (plain && relative.components().next().is_some()).then_some((target, relative))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_read_quoted_unquoted_and_with_entities() {
        let page = r#"<a href="cat/">cat/</a><A HREF='dog%20s/'>x</A> <a href=a.png>a</a>
            <a href="?C=N;O=D">Name</a><a href="b&amp;c.png">"#;
        assert_eq!(links(page), ["cat/", "dog%20s/", "a.png", "?C=N;O=D", "b&c.png"]);
    }

    #[test]
    fn only_links_below_the_folder_are_kept() {
        let base = Url::parse("http://h/data/pets/").unwrap();
        let page = Url::parse("http://h/data/pets/cat/").unwrap();
        let kept = |link| below(&base, &page, link).map(|(_, path)| path);
        assert_eq!(kept("1.png"), Some(PathBuf::from("cat/1.png")));
        assert_eq!(kept("my%20photo.jpg"), Some(PathBuf::from("cat/my photo.jpg")));
        assert_eq!(kept("/data/pets/dog/"), Some(PathBuf::from("dog")));
        assert_eq!(kept("../"), None, "the folder itself");
        assert_eq!(kept("../../"), None, "its parent");
        assert_eq!(kept("http://elsewhere/x.png"), None);
        assert_eq!(kept("?C=M;O=A"), None);
        assert_eq!(kept("%2E%2E/%2E%2E/x.png"), None);
    }
}
