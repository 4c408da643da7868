//! Downloading a job's media from a URL: direct HTTP(S) downloads guarded
//! against server-side request forgery, and platform pages (YouTube, Vimeo, …)
//! through yt-dlp.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::{StatusCode, header::LOCATION, redirect};
use tokio::io::AsyncWriteExt;
use url::{Host, Url};

/// Redirect hops followed before giving up.
const MAX_REDIRECTS: usize = 5;

/// Longest file name `fetch` produces, well below the usual 255-byte limit.
const MAX_NAME_LEN: usize = 100;

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

/// Bounds on one download.
#[derive(Debug, Clone)]
pub struct FetchLimits {
    /// Largest file accepted, in bytes.
    pub max_bytes: u64,
    /// Deadline for the whole fetch: DNS, redirects, body and yt-dlp.
    pub timeout: Duration,
    /// Allow loopback, private, link-local and other non-public addresses.
    pub allow_private: bool,
    /// The yt-dlp executable: a name looked up on PATH, or a path.
    pub yt_dlp: PathBuf,
}

impl Default for FetchLimits {
    fn default() -> Self {
        Self {
            max_bytes: 500_000_000,
            timeout: Duration::from_secs(120),
            allow_private: false,
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
    #[error("yt-dlp failed: {0}")]
    YtDlp(String),
}

/// Only http and https can be fetched.
pub fn check_scheme(url: &Url) -> Result<(), FetchError> {
    match url.scheme() {
        "http" | "https" => Ok(()),
        _ => Err(FetchError::Scheme),
    }
}

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
            fetch_with_yt_dlp(url, dest_dir, limits).await
        } else {
            fetch_direct(url, dest_dir, limits).await
        }
    };
    tokio::time::timeout(limits.timeout, work)
        .await
        .unwrap_or(Err(FetchError::Timeout(limits.timeout)))
}

async fn fetch_direct(
    url: &Url,
    dest_dir: &Path,
    limits: &FetchLimits,
) -> Result<PathBuf, FetchError> {
    let mut url = url.clone();
    let mut redirects = 0;
    // Redirects are followed by hand so that every hop's target is checked.
    let response = loop {
        check_scheme(&url)?;
        let client = pinned_client(&url, limits.allow_private).await?;
        let response = client
            .get(url.clone())
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

    let path = dest_dir.join(file_name(&url));
    let mut file = tokio::fs::File::create(&path).await?;
    let partial = Leftover::new(path.clone(), false);
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

/// A client that connects only to addresses checked here, so a DNS answer
/// that changes between the check and the connection (rebinding) cannot
/// reach a private network.
async fn pinned_client(url: &Url, allow_private: bool) -> Result<reqwest::Client, FetchError> {
    let builder = reqwest::Client::builder()
        .redirect(redirect::Policy::none())
        // A proxy would resolve the host itself, defeating the pinning.
        .no_proxy();
    let builder = match url.host().ok_or(FetchError::NoHost)? {
        Host::Ipv4(ip) => {
            check_address(ip.into(), allow_private)?;
            builder
        }
        Host::Ipv6(ip) => {
            check_address(ip.into(), allow_private)?;
            builder
        }
        Host::Domain(domain) => {
            let port = url.port_or_known_default().ok_or(FetchError::NoHost)?;
            let resolve_error = |reason: String| FetchError::Resolve {
                host: domain.to_owned(),
                reason,
            };
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((domain, port))
                .await
                .map_err(|err| resolve_error(err.to_string()))?
                .collect();
            if addrs.is_empty() {
                return Err(resolve_error("no addresses".to_owned()));
            }
            for addr in &addrs {
                check_address(addr.ip(), allow_private)?;
            }
            builder.resolve_to_addrs(domain, &addrs)
        }
    };
    builder.build().map_err(request_error)
}

/// A client for POSTing to a webhook `url`: http(s), resolved and checked
/// like a URL job's source, connections pinned to the checked addresses.
pub async fn webhook_target(
    url: &Url,
    limits: &FetchLimits,
) -> Result<reqwest::Client, FetchError> {
    check_scheme(url)?;
    pinned_client(url, limits.allow_private).await
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

fn check_address(ip: IpAddr, allow_private: bool) -> Result<(), FetchError> {
    if !allow_private && is_private(ip) {
        return Err(FetchError::PrivateAddress(ip));
    }
    Ok(())
}

/// Addresses that do not belong to the public internet.
fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => is_private_v4(ip),
        IpAddr::V6(ip) => match embedded_v4(ip) {
            Some(v4) => is_private_v4(v4),
            None => is_private_v6(ip),
        },
    }
}

fn is_private_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        // 0.0.0.0/8 "this network", which includes the unspecified address.
        || a == 0
        // 100.64.0.0/10 carrier-grade NAT.
        || (a == 100 && b & 0xc0 == 64)
        // 240.0.0.0/4 reserved.
        || a >= 240
}

fn is_private_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        // fe80::/10 link-local and the deprecated fec0::/10 site-local.
        || first & 0xffc0 == 0xfe80
        || first & 0xffc0 == 0xfec0
        // fc00::/7 unique local.
        || first & 0xfe00 == 0xfc00
}

/// The IPv4 address an IPv6 one actually reaches: IPv4-mapped
/// (`::ffff:0:0/96`), NAT64 (`64:ff9b::/96`) and 6to4 (`2002::/16`).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = ip.segments();
    let o = ip.octets();
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
    }
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(o[2], o[3], o[4], o[5]));
    }
    None
}

/// A safe local file name from the URL's last path segment.
fn file_name(url: &Url) -> String {
    let segment = url
        .path_segments()
        .and_then(|mut segments| segments.next_back())
        .unwrap_or("");
    let sanitized: String = segment
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

async fn fetch_with_yt_dlp(
    url: &Url,
    dest_dir: &Path,
    limits: &FetchLimits,
) -> Result<PathBuf, FetchError> {
    // yt-dlp works in its own directory because it leaves .part and fragment
    // files behind when it fails or is killed; the guard removes it either way.
    let work_dir = dest_dir.join(".yt-dlp");
    tokio::fs::create_dir_all(&work_dir).await?;
    let _work_dir = Leftover::new(work_dir.clone(), true);

    let output = tokio::process::Command::new(&limits.yt_dlp)
        .args(["-f", "bestaudio/best", "--no-playlist", "--no-progress"])
        .arg("--max-filesize")
        .arg(limits.max_bytes.to_string())
        // -P keeps the directory out of the output template, where a '%'
        // in it would be misread.
        .arg("-P")
        .arg(&work_dir)
        .args(["-o", "media.%(ext)s"])
        .args(["--print", "after_move:filepath", "--"])
        .arg(url.as_str())
        .stdin(Stdio::null())
        // The timeout drops this future; the child must not outlive it.
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|err| match err.kind() {
            io::ErrorKind::NotFound => FetchError::YtDlpMissing,
            _ => FetchError::YtDlp(format!("could not run {}: {err}", limits.yt_dlp.display())),
        })?;
    if !output.status.success() {
        return Err(FetchError::YtDlp(failure_message(&output)));
    }

    // Trust only the file name printed, and only inside the work directory.
    let stdout = String::from_utf8_lossy(&output.stdout);
    let produced = stdout
        .lines()
        .rev()
        .find_map(|line| Path::new(line.trim()).file_name())
        .map(|name| work_dir.join(name));
    let size = match &produced {
        Some(path) => tokio::fs::metadata(path)
            .await
            .ok()
            .filter(|meta| meta.is_file())
            .map(|meta| meta.len()),
        None => None,
    };
    let (Some(produced), Some(size)) = (produced, size) else {
        // --max-filesize makes yt-dlp skip a too-large file and still succeed.
        return Err(FetchError::YtDlp(format!(
            "no file was downloaded (the media may exceed the {}-byte limit)",
            limits.max_bytes
        )));
    };
    // The size is not always known before downloading, so check it after.
    if size > limits.max_bytes {
        return Err(FetchError::TooLarge(limits.max_bytes));
    }
    let dest = dest_dir.join(produced.file_name().unwrap_or_default());
    tokio::fs::rename(&produced, &dest).await?;
    Ok(dest)
}

/// The end of yt-dlp's stderr, where its `ERROR:` line is.
fn failure_message(output: &std::process::Output) -> String {
    const TAIL_LEN: usize = 500;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stderr = stderr.trim();
    if stderr.is_empty() {
        return format!("{} with no error message", output.status);
    }
    let mut start = stderr.len().saturating_sub(TAIL_LEN);
    while !stderr.is_char_boundary(start) {
        start += 1;
    }
    let ellipsis = if start > 0 { "…" } else { "" };
    format!("{ellipsis}{}", &stderr[start..])
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

/// Deletes a file or directory this module created unless the download
/// succeeded. Being a drop guard, it also cleans up when the timeout cancels
/// the download midway.
struct Leftover {
    path: PathBuf,
    is_dir: bool,
    kept: bool,
}

impl Leftover {
    fn new(path: PathBuf, is_dir: bool) -> Self {
        Self {
            path,
            is_dir,
            kept: false,
        }
    }

    fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Leftover {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        // Best effort: a failed removal leaves litter, not a wrong result.
        let _ = if self.is_dir {
            std::fs::remove_dir_all(&self.path)
        } else {
            std::fs::remove_file(&self.path)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
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
            "/hop/0" => with_length(&body),
            // A chain of n redirects: /hop/n → /hop/n-1 → … → /hop/0.
            hop if hop.starts_with("/hop/") => {
                let n: u32 = hop[5..].parse().unwrap();
                redirect_to(&format!("/hop/{}", n - 1))
            }
            _ => response("404 Not Found", "Content-Length: 0\r\n", b""),
        }
    }

    /// Starts a tiny HTTP server on loopback and returns its base URL.
    /// `/stall` sends headers and a few bytes, then hangs.
    async fn serve() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
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
    fn private_addresses() {
        for ip in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:c0a8:0101::1",
        ] {
            assert!(is_private(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(!is_private(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn file_names() {
        let name = |s: &str| file_name(&url(s));
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

    /// Runs shell scripts standing in for yt-dlp. One test runs them all in
    /// turn: executing a file just written while another thread forks can
    /// fail with "text file busy".
    #[cfg(unix)]
    #[tokio::test]
    async fn yt_dlp_stand_ins() {
        use std::os::unix::fs::PermissionsExt;

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
        // Writes `size` bytes to <-P dir>/media.m4a and prints its path.
        let writer = |size: usize| {
            format!(
                "echo \"$@\" > '{}'\n\
                 while [ $# -gt 0 ]; do [ \"$1\" = -P ] && dir=\"$2\"; shift; done\n\
                 head -c {size} /dev/zero > \"$dir/media.m4a\"\n\
                 echo \"$dir/media.m4a\"",
                args_log.display()
            )
        };
        let page = url("https://youtu.be/abc");

        let dir = tempfile::tempdir().unwrap();
        let path = fetch(&page, dir.path(), &script("ok", &writer(10)))
            .await
            .unwrap();
        assert_eq!(path, dir.path().join("media.m4a"));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 10);
        assert_eq!(entries(dir.path()), ["media.m4a"]);
        let args = std::fs::read_to_string(&args_log).unwrap();
        assert!(args.contains("-f bestaudio/best --no-playlist"), "{args}");
        assert!(args.contains("--max-filesize 1000"), "{args}");
        assert!(
            args.trim_end().ends_with("-- https://youtu.be/abc"),
            "{args}"
        );

        let dir = tempfile::tempdir().unwrap();
        let err = fetch(&page, dir.path(), &script("big", &writer(BODY_LEN + 1)))
            .await
            .unwrap_err();
        assert!(matches!(err, FetchError::TooLarge(1000)), "{err}");
        assert!(entries(dir.path()).is_empty());

        let dir = tempfile::tempdir().unwrap();
        let failing = script(
            "fail",
            "echo 'WARNING: something' >&2\n\
             echo 'ERROR: [youtube] abc: Video unavailable' >&2\nexit 1",
        );
        let err = fetch(&page, dir.path(), &failing).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "yt-dlp failed: WARNING: something\nERROR: [youtube] abc: Video unavailable"
        );
        assert!(entries(dir.path()).is_empty());

        let dir = tempfile::tempdir().unwrap();
        let err = fetch(&page, dir.path(), &script("silent", "exit 0"))
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "yt-dlp failed: no file was downloaded (the media may exceed the 1000-byte limit)"
        );

        let dir = tempfile::tempdir().unwrap();
        let slow = FetchLimits {
            timeout: Duration::from_millis(300),
            ..script("slow", "exec sleep 30")
        };
        let started = std::time::Instant::now();
        let err = fetch(&page, dir.path(), &slow).await.unwrap_err();
        assert!(matches!(err, FetchError::Timeout(_)), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(entries(dir.path()).is_empty());
    }
}
