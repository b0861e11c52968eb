//! Credentials never reach status, Events or logs: what the trainer says about a failure goes
//! through [`scrub_credentials`] before the operator writes it anywhere.

/// Query parameters that carry secrets in URLs (presigned S3 URLs, tokens in links).
const SECRET_PARAMETERS: [&str; 8] = [
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
    "signature",
    "token",
    "access_token",
    "key",
    "password",
];

/// `text` with the user-info of every URL (`https://user:secret@host`) and the values of
/// secret-looking query parameters replaced by `***`.
pub fn scrub_credentials(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '`'))
            .unwrap_or(tail.len());
        let (url, after) = tail.split_at(end);
        out.push_str(&scrub_url(url));
        rest = after;
    }
    out.push_str(rest);
    out
}

/// One URL without its scheme.
fn scrub_url(url: &str) -> String {
    let authority_end = url.find(['/', '?', '#']).unwrap_or(url.len());
    let (authority, path) = url.split_at(authority_end);
    let authority = match authority.rfind('@') {
        Some(at) => format!("***@{}", &authority[at + 1..]),
        None => authority.to_owned(),
    };
    let Some(query_start) = path.find('?') else { return format!("{authority}{path}") };
    let (path, query) = path.split_at(query_start + 1);
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if SECRET_PARAMETERS.contains(&name.to_ascii_lowercase().as_str()) => {
                format!("{name}=***")
            }
            _ => pair.to_owned(),
        })
        .collect();
    format!("{authority}{path}{}", query.join("&"))
}

#[cfg(test)]
mod tests {
    use super::scrub_credentials;

    #[test]
    fn user_info_and_signatures_are_scrubbed_and_the_rest_is_kept() {
        assert_eq!(
            scrub_credentials("GET https://alice:hunter2@data.example/x.zip failed: 403"),
            "GET https://***@data.example/x.zip failed: 403"
        );
        assert_eq!(
            scrub_credentials("s3 said no for \"https://b.s3/k?X-Amz-Signature=abc&part=2\""),
            "s3 said no for \"https://b.s3/k?X-Amz-Signature=***&part=2\""
        );
        let plain = "target column \"price\" is not in Dataset cats (see http://docs.example/a?b=c)";
        assert_eq!(scrub_credentials(plain), plain);
        assert_eq!(scrub_credentials("no urls here"), "no urls here");
    }
}
