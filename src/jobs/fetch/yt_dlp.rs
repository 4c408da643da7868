//! Platform pages (YouTube, Vimeo, …): yt-dlp reads the page and names the
//! media URL; we download that URL ourselves, through the guard, so yt-dlp
//! never fetches media and a page cannot point it at a private address.

use std::io;
use std::process::Stdio;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use url::{Host, Url};

use super::{FetchError, FetchLimits, check_scheme};

/// Sites whose pages hold media behind players rather than at the URL itself;
/// subdomains (www., m., music., …) count too.
const PLATFORM_DOMAINS: &[&str] = &[
    "youtube.com",
    "youtu.be",
    "vimeo.com",
    "dailymotion.com",
    "twitch.tv",
    "soundcloud.com",
    "tiktok.com",
    "x.com",
    "twitter.com",
    "facebook.com",
];

/// Formats downloadable with one plain HTTP(S) request: no HLS or DASH
/// manifests, which would name further URLs.
const FORMAT: &str =
    "bestaudio[protocol^=http][protocol!*=dash]/best[protocol^=http][protocol!*=dash]";

/// Bytes of yt-dlp's stderr kept for the log.
const STDERR_LOG_BYTES: usize = 2_000;

/// Whether `url` is a page on a video/audio platform, which needs yt-dlp.
pub fn is_platform_page(url: &Url) -> bool {
    if check_scheme(url).is_err() {
        return false;
    }
    let Some(Host::Domain(host)) = url.host() else {
        return false;
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    PLATFORM_DOMAINS.iter().any(|domain| {
        host == *domain
            || host
                .strip_suffix(domain)
                .is_some_and(|sub| sub.ends_with('.'))
    })
}

/// The media behind a platform page, as yt-dlp found it.
#[derive(Debug)]
pub struct Media {
    pub url: Url,
    /// The file extension the platform gives it ("m4a", "webm", …).
    pub ext: String,
    /// Headers the platform expects with the request (User-Agent, …).
    pub headers: HeaderMap,
}

/// Asks yt-dlp, ignoring any configuration file on this machine, for the
/// media URL of `page`. It only reads the page; it downloads nothing.
pub async fn resolve(page: &Url, limits: &FetchLimits) -> Result<Media, FetchError> {
    let output = tokio::process::Command::new(&limits.yt_dlp)
        .args(["--ignore-config", "--no-cache-dir", "--no-playlist"])
        .args(["-f", FORMAT])
        .args(["--print", "%(ext)s", "--print", "%(url)s"])
        .args(["--print", "%(http_headers)j", "--"])
        .arg(page.as_str())
        .stdin(Stdio::null())
        // The timeout drops this future; the child must not outlive it.
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|err| match err.kind() {
            io::ErrorKind::NotFound => FetchError::YtDlpMissing,
            _ => {
                tracing::error!(error = %err, yt_dlp = %limits.yt_dlp.display(), "cannot run yt-dlp");
                FetchError::YtDlp
            }
        })?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        tracing::warn!(%page, status = %output.status, stderr = tail(&stderr), "yt-dlp failed");
        return Err(FetchError::YtDlp);
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    parse(&stdout).ok_or_else(|| {
        tracing::warn!(%page, stdout = tail(&stdout), "yt-dlp named no downloadable media");
        FetchError::YtDlp
    })
}

/// Reads the three printed lines: extension, URL, headers as JSON.
fn parse(stdout: &str) -> Option<Media> {
    let mut lines = stdout
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty());
    let ext = lines.next()?;
    let url = Url::parse(lines.next()?).ok()?;
    let headers: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(lines.next().unwrap_or("{}")).unwrap_or_default();
    let headers = headers
        .iter()
        .filter_map(|(name, value)| {
            Some((
                HeaderName::try_from(name.as_str()).ok()?,
                HeaderValue::try_from(value.as_str()?).ok()?,
            ))
        })
        .collect();
    Some(Media {
        url,
        ext: ext.to_owned(),
        headers,
    })
}

/// The end of a long text, where yt-dlp puts its `ERROR:` line.
fn tail(text: &str) -> &str {
    let mut start = text.len().saturating_sub(STDERR_LOG_BYTES);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn platform_pages() {
        for page in [
            "https://www.youtube.com/watch?v=abc",
            "https://youtube.com/watch?v=abc",
            "https://m.youtube.com/watch?v=abc",
            "https://music.youtube.com/watch?v=abc",
            "https://youtu.be/abc",
            "http://vimeo.com/123",
            "https://www.dailymotion.com/video/x1",
            "https://www.twitch.tv/videos/1",
            "https://soundcloud.com/a/b",
            "https://www.tiktok.com/@a/video/1",
            "https://x.com/a/status/1",
            "https://twitter.com/a/status/1",
            "https://www.facebook.com/watch?v=1",
            "https://WWW.YouTube.com./watch?v=abc",
        ] {
            assert!(is_platform_page(&url(page)), "{page}");
        }
        for other in [
            "https://example.com/video.mp4",
            "https://notyoutube.com/watch?v=abc",
            "https://youtube.com.evil.example/watch",
            "https://box.com/a.wav",
            "ftp://youtube.com/a",
            "http://127.0.0.1/a.wav",
        ] {
            assert!(!is_platform_page(&url(other)), "{other}");
        }
    }

    #[test]
    fn parses_what_yt_dlp_prints() {
        let media = parse(
            "m4a\nhttps://cdn.example/v/1.m4a?sig=x\n\
             {\"User-Agent\": \"Mozilla/5.0\", \"Bad Name\": \"x\", \"Accept\": 1}\n",
        )
        .unwrap();
        assert_eq!(media.ext, "m4a");
        assert_eq!(media.url.as_str(), "https://cdn.example/v/1.m4a?sig=x");
        assert_eq!(media.headers.len(), 1);
        assert_eq!(media.headers["user-agent"], "Mozilla/5.0");
        assert!(parse("m4a\n").is_none());
        assert!(parse("m4a\nnot a url\n{}").is_none());
    }
}
