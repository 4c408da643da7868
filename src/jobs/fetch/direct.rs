//! Direct HTTP(S) downloads: redirects followed by hand so every hop passes the
//! [guard](super::guard), the body counted against the size limit as it arrives.

use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION};
use tokio::io::AsyncWriteExt;
use url::Url;

use super::guard::pinned_client;
use super::{FetchError, FetchLimits, Leftover, check_scheme, request_error};

/// Redirect hops followed before giving up.
const MAX_REDIRECTS: usize = 5;

/// Longest file name produced, well below the usual 255-byte limit.
const MAX_NAME_LEN: usize = 100;

/// Downloads `url` with `headers` into `dest_dir` as `name`, or when `None` as
/// the last path segment of the final URL (after redirects).
pub async fn download(
    url: &Url,
    headers: &HeaderMap,
    dest_dir: &Path,
    name: Option<&str>,
    limits: &FetchLimits,
) -> Result<PathBuf, FetchError> {
    let mut url = url.clone();
    let mut redirects = 0;
    let response = loop {
        check_scheme(&url)?;
        let client = pinned_client(&url, limits).await?;
        let response = client
            .get(url.clone())
            .headers(headers.clone())
            .send()
            .await
            .map_err(request_error)?;
        let status = response.status();
        if is_redirect(status) {
            if redirects == MAX_REDIRECTS {
                return Err(FetchError::TooManyRedirects);
            }
            redirects += 1;
            let location = response
                .headers()
                .get(LOCATION)
                .and_then(|value| value.to_str().ok())
                .ok_or(FetchError::BadRedirect)?;
            url = url.join(location).map_err(|_| FetchError::BadRedirect)?;
            continue;
        }
        if !status.is_success() {
            return Err(FetchError::Status(status.as_u16()));
        }
        break response;
    };

    if response
        .content_length()
        .is_some_and(|len| len > limits.max_bytes)
    {
        return Err(FetchError::TooLarge(limits.max_bytes));
    }

    let path = dest_dir.join(name.map_or_else(|| file_name(&url), safe_name));
    let mut file = tokio::fs::File::create(&path).await?;
    let partial = Leftover::new(path.clone());
    let mut written = 0u64;
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(request_error)?;
        written += chunk.len() as u64;
        // Content-Length may be absent or wrong, so count what actually arrives.
        if written > limits.max_bytes {
            return Err(FetchError::TooLarge(limits.max_bytes));
        }
        file.write_all(&chunk).await?;
    }
    // tokio writes in the background; flushing surfaces late write errors.
    file.flush().await?;
    partial.keep();
    Ok(path)
}

fn is_redirect(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::MOVED_PERMANENTLY
            | StatusCode::FOUND
            | StatusCode::SEE_OTHER
            | StatusCode::TEMPORARY_REDIRECT
            | StatusCode::PERMANENT_REDIRECT
    )
}

/// A safe local file name from the URL's last path segment.
fn file_name(url: &Url) -> String {
    let segment = url
        .path_segments()
        .and_then(|mut segments| segments.next_back())
        .unwrap_or("");
    safe_name(segment)
}

/// `name` limited to `[A-Za-z0-9._-]`, without leading dots, at most
/// [`MAX_NAME_LEN`] bytes; `download` when nothing is left.
fn safe_name(name: &str) -> String {
    let sanitized: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    // Leading dots would give ".", ".." or a hidden file.
    let name = sanitized.trim_start_matches('.');
    if name.is_empty() {
        return "download".to_owned();
    }
    if name.len() <= MAX_NAME_LEN {
        return name.to_owned();
    }
    // Shorten the stem but keep a plausible extension: decoders sniff by it.
    let ext = name
        .rfind('.')
        .map(|dot| &name[dot..])
        .filter(|ext| ext.len() <= 16)
        .unwrap_or("");
    format!("{}{ext}", &name[..MAX_NAME_LEN - ext.len()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names() {
        let name = |s: &str| file_name(&Url::parse(s).unwrap());
        assert_eq!(name("https://a.example/x/talk.mp3"), "talk.mp3");
        assert_eq!(
            name("https://a.example/x/my%20talk(1).mp3?x=1"),
            "my_20talk_1_.mp3"
        );
        assert_eq!(name("https://a.example/"), "download");
        assert_eq!(name("https://a.example"), "download");
        assert_eq!(name("https://a.example/dir/"), "download");
        assert_eq!(name("https://a.example/..."), "download");
        assert_eq!(name("https://a.example/...hidden.wav"), "hidden.wav");
        let long = name(&format!("https://a.example/{}.flac", "a".repeat(300)));
        assert_eq!(long.len(), MAX_NAME_LEN);
        assert!(long.ends_with("a.flac"));
        assert_eq!(safe_name("media.m4a/../../x"), "media.m4a_.._.._x");
    }
}
