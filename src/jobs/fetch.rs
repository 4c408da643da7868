//! Downloading a job's media from a URL: direct HTTP(S) downloads guarded
//! against server-side request forgery, and platform pages (YouTube, Vimeo, …)
//! whose media URL yt-dlp finds and the same guarded download then fetches.
//!
//! ```text
//! url ─▶ platform page? ─yes─▶ yt_dlp::resolve ─▶ media url ─┐
//!              └─no──────────────────────────────────────────┴▶ direct::download (guard on every hop)
//! ```

mod direct;
mod guard;
mod yt_dlp;

use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::header::HeaderMap;
use url::Url;

use yt_dlp::is_platform_page;

/// Bounds on one download.
#[derive(Debug, Clone)]
pub struct FetchLimits {
    /// Largest file accepted, in bytes.
    pub max_bytes: u64,
    /// Deadline for the whole fetch: DNS, redirects, body and yt-dlp.
    pub timeout: Duration,
    /// Allow loopback, private, link-local and other non-public addresses.
    pub allow_private: bool,
    /// Non-public addresses reachable even when `allow_private` is off (an
    /// internal media store).
    pub trusted_addresses: Vec<IpAddr>,
    /// The yt-dlp executable: a name looked up on PATH, or a path.
    pub yt_dlp: PathBuf,
}

impl Default for FetchLimits {
    fn default() -> Self {
        Self {
            max_bytes: 500_000_000,
            timeout: Duration::from_secs(120),
            allow_private: false,
            trusted_addresses: Vec::new(),
            yt_dlp: PathBuf::from("yt-dlp"),
        }
    }
}

/// Why a URL could not be fetched; the messages are shown to API users.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("URL scheme must be http or https")]
    Scheme,
    #[error("URL has no host")]
    NoHost,
    #[error("address {0} is private; URL ingestion from private networks is disabled")]
    PrivateAddress(IpAddr),
    #[error("could not resolve host {host}: {reason}")]
    Resolve { host: String, reason: String },
    #[error("too many redirects")]
    TooManyRedirects,
    #[error("redirect without a valid Location header")]
    BadRedirect,
    #[error("HTTP {0} from server")]
    Status(u16),
    #[error("download exceeds the {0}-byte limit")]
    TooLarge(u64),
    #[error("download timed out after {} s", .0.as_secs_f64())]
    Timeout(Duration),
    #[error("download failed: {0}")]
    Request(String),
    #[error("could not save the download: {0}")]
    Io(#[from] io::Error),
    #[error("yt-dlp is not installed; platform URLs (YouTube, Vimeo, …) need it")]
    YtDlpMissing,
    /// yt-dlp's own output is in the log.
    #[error(
        "the platform page offers no downloadable audio (it may be private, removed, \
         region-locked or live)"
    )]
    YtDlp,
}

/// Only http and https can be fetched.
pub fn check_scheme(url: &Url) -> Result<(), FetchError> {
    match url.scheme() {
        "http" | "https" => Ok(()),
        _ => Err(FetchError::Scheme),
    }
}

/// Downloads `url` into `dest_dir` (created if missing) and returns the file.
///
/// Direct downloads are named after the last path segment of the final URL
/// (after redirects), limited to `[A-Za-z0-9._-]`, or `download`; platform
/// pages become `media.<ext>`. Nothing is left behind on failure or timeout.
pub async fn fetch(
    url: &Url,
    dest_dir: &Path,
    limits: &FetchLimits,
) -> Result<PathBuf, FetchError> {
    check_scheme(url)?;
    let work = async {
        tokio::fs::create_dir_all(dest_dir).await?;
        if is_platform_page(url) {
            let media = yt_dlp::resolve(url, limits).await?;
            let name = format!("media.{}", media.ext);
            direct::download(&media.url, &media.headers, dest_dir, Some(&name), limits).await
        } else {
            direct::download(url, &HeaderMap::new(), dest_dir, None, limits).await
        }
    };
    tokio::time::timeout(limits.timeout, work)
        .await
        .unwrap_or(Err(FetchError::Timeout(limits.timeout)))
}

/// A client for POSTing to a webhook `url`: http(s), resolved and checked
/// like a URL job's source, connections pinned to the checked addresses.
pub async fn webhook_target(
    url: &Url,
    limits: &FetchLimits,
) -> Result<reqwest::Client, FetchError> {
    check_scheme(url)?;
    guard::pinned_client(url, limits).await
}

/// reqwest's own message is vague ("error sending request"); the cause chain
/// says why (refused, TLS, reset, …).
fn request_error(err: reqwest::Error) -> FetchError {
    let err = err.without_url();
    let mut message = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    FetchError::Request(message)
}

/// Deletes a partial download unless it completed. Being a drop guard, it
/// also cleans up when the timeout cancels the download midway.
struct Leftover {
    path: PathBuf,
    kept: bool,
}

impl Leftover {
    fn new(path: PathBuf) -> Self {
        Self { path, kept: false }
    }

    fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Leftover {
    fn drop(&mut self) {
        if !self.kept {
            // Best effort: a failed removal leaves litter, not a wrong result.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    const BODY_LEN: usize = 1000;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    fn limits() -> FetchLimits {
        FetchLimits {
            max_bytes: BODY_LEN as u64,
            timeout: Duration::from_secs(10),
            allow_private: true,
            ..FetchLimits::default()
        }
    }

    fn response(status: &str, headers: &str, body: &[u8]) -> Vec<u8> {
        let mut out =
            format!("HTTP/1.1 {status}\r\nConnection: close\r\n{headers}\r\n").into_bytes();
        out.extend_from_slice(body);
        out
    }

    fn with_length(body: &[u8]) -> Vec<u8> {
        response(
            "200 OK",
            &format!("Content-Length: {}\r\n", body.len()),
            body,
        )
    }

    fn redirect_to(location: &str) -> Vec<u8> {
        response(
            "302 Found",
            &format!("Location: {location}\r\nContent-Length: 0\r\n"),
            b"",
        )
    }

    /// The raw HTTP/1.1 answer for a request path.
    fn route(path: &str) -> Vec<u8> {
        let body = vec![7u8; BODY_LEN];
        let big = vec![7u8; BODY_LEN * 5];
        match path {
            "/media/talk%20one.wav" => with_length(&body),
            "/big-declared.bin" => with_length(&big),
            // No Content-Length: the body ends when the connection closes.
            "/big-streamed.bin" => response("200 OK", "", &big),
            "/redirect" => redirect_to("/media/talk%20one.wav"),
            "/loop" => redirect_to("/loop"),
            "/to-ftp" => redirect_to("ftp://example.com/a.wav"),
            "/no-location" => response("302 Found", "Content-Length: 0\r\n", b""),
            loopback if loopback.starts_with("/to-loopback/") => {
                redirect_to(&format!("http://127.0.0.1:{}/a.wav", &loopback[13..]))
            }
            "/hop/0" => with_length(&body),
            // A chain of n redirects: /hop/n → /hop/n-1 → … → /hop/0.
            hop if hop.starts_with("/hop/") => {
                let n: u32 = hop[5..].parse().unwrap();
                redirect_to(&format!("/hop/{}", n - 1))
            }
            _ => response("404 Not Found", "Content-Length: 0\r\n", b""),
        }
    }

    /// Starts a tiny HTTP server on 127.0.0.1 and returns its base URL.
    /// `/stall` sends headers and a few bytes, then hangs.
    async fn serve() -> String {
        serve_on(IpAddr::from([127, 0, 0, 1])).await
    }

    async fn serve_on(ip: IpAddr) -> String {
        let listener = TcpListener::bind((ip, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let request = String::from_utf8_lossy(&request);
                    let path = request.split(' ').nth(1).unwrap_or("/").to_owned();
                    if path == "/stall" {
                        let head =
                            format!("HTTP/1.1 200 OK\r\nContent-Length: {BODY_LEN}\r\n\r\nabc");
                        let _ = socket.write_all(head.as_bytes()).await;
                        tokio::time::sleep(Duration::from_secs(60)).await;
                        return;
                    }
                    let _ = socket.write_all(&route(&path)).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        format!("http://{addr}")
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn scheme_check() {
        assert!(check_scheme(&url("http://example.com/a.wav")).is_ok());
        assert!(check_scheme(&url("https://example.com/a.wav")).is_ok());
        for bad in [
            "ftp://example.com/a.wav",
            "file:///etc/passwd",
            "data:,hello",
        ] {
            let err = check_scheme(&url(bad)).unwrap_err();
            assert_eq!(err.to_string(), "URL scheme must be http or https");
        }
    }

    #[tokio::test]
    async fn refuses_private_addresses_without_connecting() {
        let dir = tempfile::tempdir().unwrap();
        let strict = FetchLimits {
            allow_private: false,
            ..limits()
        };
        let err = fetch(&url("http://127.0.0.1:1/x"), dir.path(), &strict)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "address 127.0.0.1 is private; URL ingestion from private networks is disabled"
        );
        let err = fetch(&url("http://localhost:1/x"), dir.path(), &strict)
            .await
            .unwrap_err();
        assert!(
            matches!(err, FetchError::PrivateAddress(ip) if ip.is_loopback()),
            "{err}"
        );
        let err = fetch(&url("http://[::ffff:10.0.0.1]/x"), dir.path(), &strict)
            .await
            .unwrap_err();
        assert!(matches!(err, FetchError::PrivateAddress(_)), "{err}");
    }

    #[tokio::test]
    async fn refuses_other_schemes() {
        let dir = tempfile::tempdir().unwrap();
        let err = fetch(&url("file:///etc/passwd"), dir.path(), &limits())
            .await
            .unwrap_err();
        assert!(matches!(err, FetchError::Scheme));
    }

    #[tokio::test]
    async fn downloads_a_file() {
        let base = serve().await;
        let dir = tempfile::tempdir().unwrap();
        let path = fetch(
            &url(&format!("{base}/media/talk%20one.wav")),
            dir.path(),
            &limits(),
        )
        .await
        .unwrap();
        assert_eq!(path, dir.path().join("talk_20one.wav"));
        assert_eq!(std::fs::read(&path).unwrap(), vec![7u8; BODY_LEN]);
    }

    #[tokio::test]
    async fn creates_the_destination_directory() {
        let base = serve().await;
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("job").join("input");
        let path = fetch(&url(&format!("{base}/hop/0")), &dest, &limits())
            .await
            .unwrap();
        assert_eq!(path, dest.join("0"));
    }

    #[tokio::test]
    async fn refuses_a_declared_oversize_body() {
        let base = serve().await;
        let dir = tempfile::tempdir().unwrap();
        let err = fetch(
            &url(&format!("{base}/big-declared.bin")),
            dir.path(),
            &limits(),
        )
        .await
        .unwrap_err();
        assert_eq!(err.to_string(), "download exceeds the 1000-byte limit");
        assert!(entries(dir.path()).is_empty());
    }

    #[tokio::test]
    async fn aborts_an_oversize_stream_and_removes_the_partial_file() {
        let base = serve().await;
        let dir = tempfile::tempdir().unwrap();
        let err = fetch(
            &url(&format!("{base}/big-streamed.bin")),
            dir.path(),
            &limits(),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, FetchError::TooLarge(1000)), "{err}");
        assert!(entries(dir.path()).is_empty());
    }

    #[tokio::test]
    async fn reports_http_errors() {
        let base = serve().await;
        let dir = tempfile::tempdir().unwrap();
        let err = fetch(&url(&format!("{base}/missing.wav")), dir.path(), &limits())
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "HTTP 404 from server");
        assert!(entries(dir.path()).is_empty());
    }

    #[tokio::test]
    async fn reports_connection_failures() {
        // Bind then drop a listener to find a port nothing listens on.
        let port = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let err = fetch(
            &url(&format!("http://127.0.0.1:{port}/a.wav")),
            dir.path(),
            &limits(),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, FetchError::Request(_)), "{err}");
    }

    #[tokio::test]
    async fn follows_redirects() {
        let base = serve().await;
        let dir = tempfile::tempdir().unwrap();
        let path = fetch(&url(&format!("{base}/redirect")), dir.path(), &limits())
            .await
            .unwrap();
        assert_eq!(path, dir.path().join("talk_20one.wav"));
        let path = fetch(&url(&format!("{base}/hop/5")), dir.path(), &limits())
            .await
            .unwrap();
        assert_eq!(std::fs::metadata(path).unwrap().len(), BODY_LEN as u64);
    }

    #[tokio::test]
    async fn limits_redirects() {
        let base = serve().await;
        let dir = tempfile::tempdir().unwrap();
        for path in ["/hop/6", "/loop"] {
            let err = fetch(&url(&format!("{base}{path}")), dir.path(), &limits())
                .await
                .unwrap_err();
            assert_eq!(err.to_string(), "too many redirects");
        }
    }

    #[tokio::test]
    async fn checks_each_redirect_target() {
        let base = serve().await;
        let dir = tempfile::tempdir().unwrap();
        let err = fetch(&url(&format!("{base}/to-ftp")), dir.path(), &limits())
            .await
            .unwrap_err();
        assert!(matches!(err, FetchError::Scheme), "{err}");
        let err = fetch(&url(&format!("{base}/no-location")), dir.path(), &limits())
            .await
            .unwrap_err();
        assert!(matches!(err, FetchError::BadRedirect), "{err}");
    }

    #[tokio::test]
    async fn times_out_and_removes_the_partial_file() {
        let base = serve().await;
        let dir = tempfile::tempdir().unwrap();
        let quick = FetchLimits {
            timeout: Duration::from_millis(300),
            ..limits()
        };
        let err = fetch(&url(&format!("{base}/stall")), dir.path(), &quick)
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "download timed out after 0.3 s");
        assert!(entries(dir.path()).is_empty());
    }

    #[tokio::test]
    async fn yt_dlp_missing() {
        let dir = tempfile::tempdir().unwrap();
        let page = url("https://www.youtube.com/watch?v=abc");
        for program in ["/nonexistent/yt-dlp", "whospoke-test-no-such-yt-dlp"] {
            let missing = FetchLimits {
                yt_dlp: PathBuf::from(program),
                ..limits()
            };
            let err = fetch(&page, dir.path(), &missing).await.unwrap_err();
            assert_eq!(
                err.to_string(),
                "yt-dlp is not installed; platform URLs (YouTube, Vimeo, …) need it"
            );
        }
        assert!(entries(dir.path()).is_empty());
    }

    #[tokio::test]
    async fn a_redirect_to_loopback_is_refused_in_strict_mode() {
        // The redirect's target; nothing may connect to it.
        let target = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        target.set_nonblocking(true).unwrap();
        let port = target.local_addr().unwrap().port();
        // The first hop is on 127.0.0.2, the one private address this guard trusts.
        let first = "127.0.0.2".parse().unwrap();
        let base = serve_on(first).await;
        let strict = FetchLimits {
            allow_private: false,
            trusted_addresses: vec![first],
            ..limits()
        };
        let dir = tempfile::tempdir().unwrap();
        let path = fetch(&url(&format!("{base}/hop/0")), dir.path(), &strict)
            .await
            .unwrap();
        assert_eq!(std::fs::metadata(path).unwrap().len(), BODY_LEN as u64);

        let err = fetch(
            &url(&format!("{base}/to-loopback/{port}")),
            dir.path(),
            &strict,
        )
        .await
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "address 127.0.0.1 is private; URL ingestion from private networks is disabled"
        );
        assert_eq!(
            target.accept().unwrap_err().kind(),
            io::ErrorKind::WouldBlock,
            "the guard refuses before connecting"
        );
    }

    /// Runs shell scripts standing in for yt-dlp: they print what yt-dlp
    /// prints (extension, media URL, headers), and the media comes from the
    /// test server through the guard. One test runs them all in turn:
    /// executing a file just written while another thread forks can fail with
    /// "text file busy".
    #[cfg(unix)]
    #[tokio::test]
    async fn yt_dlp_stand_ins() {
        use std::os::unix::fs::PermissionsExt;

        let base = serve().await;
        let bin = tempfile::tempdir().unwrap();
        let args_log = bin.path().join("args");
        let script = |name: &str, body: &str| {
            let path = bin.path().join(name);
            std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            FetchLimits {
                yt_dlp: path,
                ..limits()
            }
        };
        let resolver = |media: &str| {
            format!(
                "echo \"$@\" > '{}'\n\
                 printf '%s\\n' m4a '{media}' '{{\"User-Agent\": \"test\"}}'",
                args_log.display()
            )
        };
        let page = url("https://youtu.be/abc");

        let dir = tempfile::tempdir().unwrap();
        let ok = script("ok", &resolver(&format!("{base}/media/talk%20one.wav")));
        let path = fetch(&page, dir.path(), &ok).await.unwrap();
        assert_eq!(path, dir.path().join("media.m4a"));
        assert_eq!(std::fs::read(&path).unwrap(), vec![7u8; BODY_LEN]);
        assert_eq!(entries(dir.path()), ["media.m4a"]);
        let args = std::fs::read_to_string(&args_log).unwrap();
        assert!(args.starts_with("--ignore-config "), "{args}");
        assert!(args.contains("--no-playlist"), "{args}");
        assert!(args.contains("[protocol^=http][protocol!*=dash]"), "{args}");
        assert!(
            args.trim_end().ends_with("-- https://youtu.be/abc"),
            "{args}"
        );

        // The media URL yt-dlp names passes the guard like any other.
        let dir = tempfile::tempdir().unwrap();
        let strict = FetchLimits {
            allow_private: false,
            ..script("private", &resolver("http://127.0.0.1:9/a.m4a"))
        };
        let err = fetch(&page, dir.path(), &strict).await.unwrap_err();
        assert!(matches!(err, FetchError::PrivateAddress(_)), "{err}");
        assert!(entries(dir.path()).is_empty());

        let dir = tempfile::tempdir().unwrap();
        let big = script("big", &resolver(&format!("{base}/big-streamed.bin")));
        let err = fetch(&page, dir.path(), &big).await.unwrap_err();
        assert!(matches!(err, FetchError::TooLarge(1000)), "{err}");
        assert!(entries(dir.path()).is_empty());

        // yt-dlp's stderr goes to the log, not to the user.
        let failing = script(
            "fail",
            "echo 'ERROR: [youtube] abc: Video unavailable /home/whospoke' >&2\nexit 1",
        );
        for limits in [failing, script("silent", "exit 0")] {
            let dir = tempfile::tempdir().unwrap();
            let err = fetch(&page, dir.path(), &limits).await.unwrap_err();
            assert!(matches!(err, FetchError::YtDlp), "{err}");
            assert!(!err.to_string().contains('/'), "{err}");
            assert!(entries(dir.path()).is_empty());
        }

        let dir = tempfile::tempdir().unwrap();
        let slow = FetchLimits {
            timeout: Duration::from_millis(300),
            ..script("slow", "exec sleep 30")
        };
        let err = fetch(&page, dir.path(), &slow).await.unwrap_err();
        assert!(matches!(err, FetchError::Timeout(_)), "{err}");
        assert!(entries(dir.path()).is_empty());
    }
}
