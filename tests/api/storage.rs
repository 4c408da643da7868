//! S3-compatible storage is configuration: the same server with `--storage-url s3://…`
//! keeps every job file in a bucket (moto's S3 server, from the project venv), serves
//! the downloads from there and deletes them with the job.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::audio::{self, sample_frames, sample_seconds};
use crate::checks::{check_downloads, completed_job};
use crate::client::Submission;
use crate::server::{Server, project_dir};

const BUCKET: &str = "whospoke-test";
const PREFIX: &str = "tenant-a";

/// `moto_server` on a free loopback port, killed on drop.
struct S3Server {
    endpoint: String,
    child: Child,
}

impl S3Server {
    async fn start() -> S3Server {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port for moto")
            .port();
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
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client");
        let started = Instant::now();
        // moto accepts unsigned requests, so the bucket can be made with a plain PUT.
        loop {
            let made = http
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

    /// Keys in the bucket, from the S3 ListObjectsV2 XML.
    async fn keys(&self) -> Vec<String> {
        let url = format!("{}/{BUCKET}?list-type=2", self.endpoint);
        let xml = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client")
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

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn job_files_live_in_s3_compatible_storage_when_configured() {
    let s3 = S3Server::start().await;
    let storage_url = format!("s3://{BUCKET}/{PREFIX}");
    let server = Server::start_with(
        true,
        &["--storage-url", &storage_url],
        &[
            ("AWS_ENDPOINT", s3.endpoint.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_REGION", "us-east-1"),
        ],
    );
    let user = server.create_user(1_000_000);

    let id = Submission::extract()
        .file("sample.wav", audio::sample_bytes())
        .submit(&server, &user)
        .await;
    let outputs = completed_job(&server, &user, id, "extraction", sample_seconds()).await;
    check_downloads(&server, &outputs, sample_frames()).await;

    let keys = s3.keys().await;
    let expected = [
        format!("{PREFIX}/jobs/{id}/speaker_0.wav"),
        format!("{PREFIX}/jobs/{id}/speaker_1.wav"),
        format!("{PREFIX}/jobs/{id}/sample.rttm"),
    ];
    for key in &expected {
        assert!(
            keys.contains(key),
            "{key} should be in the bucket: {keys:?}"
        );
    }
    assert!(
        keys.iter().any(
            |key| key.starts_with(&format!("{PREFIX}/inputs/")) && key.ends_with("/sample.wav")
        ),
        "the upload is kept in the bucket too: {keys:?}"
    );
    assert!(
        !server.data_dir().join("objects").exists(),
        "nothing goes to the local object folder when S3 is configured"
    );

    let deleted = server
        .delete(&format!("/api/v1/speaker/jobs/{id}"))
        .header("X-API-Key", &user.key)
        .send()
        .await
        .expect("DELETE the job");
    assert_eq!(deleted.status().as_u16(), 204, "DELETE a completed job");
    let left = s3.keys().await;
    assert!(
        left.is_empty(),
        "deleting the job empties the bucket: {left:?}"
    );
}
