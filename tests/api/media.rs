//! A tiny HTTP/1.1 file server on 127.0.0.1 for URL ingestion: it serves one file at one
//! path (404 elsewhere) and counts the requests it gets.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub struct MediaServer {
    /// `http://127.0.0.1:PORT/NAME`
    pub url: String,
    requests: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl MediaServer {
    pub async fn serve(name: &str, body: Vec<u8>) -> MediaServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a media server");
        let port = listener
            .local_addr()
            .expect("the media server's address")
            .port();
        let requests = Arc::new(AtomicUsize::new(0));
        let path = format!("/{name}");
        let body = Arc::new(body);
        let counter = requests.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(respond(stream, path.clone(), body.clone()));
            }
        });
        MediaServer {
            url: format!("http://127.0.0.1:{port}/{name}"),
            requests,
            task,
        }
    }

    /// Connections accepted so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for MediaServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn respond(mut stream: TcpStream, path: String, body: Arc<Vec<u8>>) {
    let mut head = Vec::new();
    let mut buffer = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buffer[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let mut request_line = head.lines().next().unwrap_or_default().split_whitespace();
    let method = request_line.next().unwrap_or_default().to_string();
    let target = request_line.next().unwrap_or_default();
    let found = target.split('?').next() == Some(path.as_str());
    let (status, content) = if found {
        ("200 OK", &body[..])
    } else {
        ("404 Not Found", &b"not found"[..])
    };
    let content_type = if found { "audio/wav" } else { "text/plain" };
    let header = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        content.len()
    );
    let _ = stream.write_all(header.as_bytes()).await;
    if method != "HEAD" {
        let _ = stream.write_all(content).await;
    }
    let _ = stream.shutdown().await;
}
