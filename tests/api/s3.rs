//! moto's S3 server (from the project venv) on a free loopback port, with one bucket: the
//! S3-compatible storage of the storage and cluster tests.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::server::{free_port, project_dir};

pub const BUCKET: &str = "whospoke-test";

/// `moto_server` with [`BUCKET`] made, killed on drop.
pub struct S3Server {
    pub endpoint: String,
    child: Child,
}

impl S3Server {
    pub async fn start() -> S3Server {
        let port = free_port();
        let program = project_dir().join(".venv/bin/moto_server");
        let child = Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "start {} (installed by scripts/setup.sh): {e}",
                    program.display()
                )
            });
        let server = S3Server {
            endpoint: format!("http://127.0.0.1:{port}"),
            child,
        };
        let started = Instant::now();
        // moto accepts unsigned requests, so the bucket can be made with a plain PUT.
        loop {
            let made = http()
                .put(format!("{}/{BUCKET}", server.endpoint))
                .send()
                .await;
            if made.as_ref().is_ok_and(|r| r.status().is_success()) {
                return server;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "moto did not come up at {}: {made:?}",
                server.endpoint
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// What the server needs in its environment to reach this endpoint (moto takes any keys).
    pub fn env(&self) -> [(&'static str, &str); 5] {
        [
            ("AWS_ENDPOINT", self.endpoint.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_REGION", "us-east-1"),
        ]
    }

    /// Keys in the bucket, from the S3 ListObjectsV2 XML.
    pub async fn keys(&self) -> Vec<String> {
        let url = format!("{}/{BUCKET}?list-type=2", self.endpoint);
        let xml = http()
            .get(&url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .unwrap_or_else(|e| panic!("list {url}: {e}"))
            .text()
            .await
            .expect("a listing");
        xml.split("<Key>")
            .skip(1)
            .filter_map(|rest| rest.split("</Key>").next())
            .map(str::to_owned)
            .collect()
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("an HTTP client")
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
