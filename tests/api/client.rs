//! Building submissions (multipart upload or url form) and checking responses.

use reqwest::multipart::{Form, Part};
use reqwest::{RequestBuilder, Response, Url};
use serde_json::Value;

use crate::server::{Server, User};

/// Authenticates a request the documented way: `X-API-Key: ap_...`.
pub trait WithKey {
    fn with_key(self, user: &User) -> Self;
}

impl WithKey for RequestBuilder {
    fn with_key(self, user: &User) -> Self {
        self.header("X-API-Key", &user.key)
    }
}

/// A `POST /api/v1/speaker/{extract,diarize}` request.
///
/// With a file (or `.multipart()`), the fields go into a multipart body; without, into an
/// `application/x-www-form-urlencoded` body (the url form). Query parameters go on the URL.
#[derive(Clone)]
pub struct Submission {
    path: &'static str,
    query: Vec<(String, String)>,
    fields: Vec<(String, String)>,
    file: Option<(String, Vec<u8>)>,
    multipart: bool,
}

impl Submission {
    pub fn extract() -> Submission {
        Submission::to("/api/v1/speaker/extract")
    }

    pub fn diarize() -> Submission {
        Submission::to("/api/v1/speaker/diarize")
    }

    fn to(path: &'static str) -> Submission {
        Submission {
            path,
            query: Vec::new(),
            fields: Vec::new(),
            file: None,
            multipart: false,
        }
    }

    pub fn path(&self) -> &'static str {
        self.path
    }

    /// The multipart `file` part.
    pub fn file(mut self, name: &str, bytes: Vec<u8>) -> Submission {
        self.file = Some((name.to_string(), bytes));
        self.multipart = true;
        self
    }

    /// A body field (multipart or url-encoded, whichever the body is).
    pub fn field(mut self, name: &str, value: &str) -> Submission {
        self.fields.push((name.to_string(), value.to_string()));
        self
    }

    pub fn url(self, url: &str) -> Submission {
        self.field("url", url)
    }

    pub fn query(mut self, name: &str, value: &str) -> Submission {
        self.query.push((name.to_string(), value.to_string()));
        self
    }

    /// A multipart body even without a file.
    pub fn multipart(mut self) -> Submission {
        self.multipart = true;
        self
    }

    pub fn request(&self, server: &Server) -> RequestBuilder {
        let mut url = Url::parse(&server.url(self.path)).expect("a valid server URL");
        if !self.query.is_empty() {
            url.query_pairs_mut().extend_pairs(&self.query);
        }
        let request = server.post(url.as_str());
        if !self.multipart {
            return request.form(&self.fields);
        }
        let mut form = Form::new();
        for (name, value) in &self.fields {
            form = form.text(name.clone(), value.clone());
        }
        if let Some((name, bytes)) = &self.file {
            let mime = if name.ends_with(".wav") {
                "audio/wav"
            } else {
                "application/octet-stream"
            };
            let part = Part::bytes(bytes.clone())
                .file_name(name.clone())
                .mime_str(mime)
                .expect("a valid MIME type");
            form = form.part("file", part);
        }
        request.multipart(form)
    }

    pub async fn send(&self, server: &Server, user: &User) -> reqwest::Result<Response> {
        self.request(server).with_key(user).send().await
    }

    /// Sends it and expects 200 with a new PENDING job; returns the job's id.
    pub async fn submit(&self, server: &Server, user: &User) -> i64 {
        let body = expect_json(self.send(server, user).await, 200, self.path).await;
        assert_eq!(
            body["status"], "PENDING",
            "POST {} should return a PENDING job: {body}",
            self.path
        );
        job_id(&body)
    }
}

pub fn job_id(job: &Value) -> i64 {
    job["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("a job's id should be an integer: {job}"))
}

/// Checks the status and returns the body as JSON (`null` when empty).
pub async fn expect_json(
    response: Result<Response, reqwest::Error>,
    status: u16,
    what: &str,
) -> Value {
    let (got, text) = status_and_text(response, what).await;
    assert_eq!(
        got, status,
        "{what}: expected HTTP {status}, got {got}: {text}"
    );
    if text.is_empty() {
        return Value::Null;
    }
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{what}: the body should be JSON ({e}): {text}"))
}

/// Checks the status and that the body is `{"detail": "<string>"}`; returns the detail.
pub async fn expect_detail(
    response: Result<Response, reqwest::Error>,
    status: u16,
    what: &str,
) -> String {
    let body = expect_json(response, status, what).await;
    body["detail"]
        .as_str()
        .unwrap_or_else(|| {
            panic!("{what}: an error body should be {{\"detail\": string}}, got {body}")
        })
        .to_string()
}

pub async fn status_and_text(
    response: Result<Response, reqwest::Error>,
    what: &str,
) -> (u16, String) {
    let response = response.unwrap_or_else(|e| panic!("{what}: the request failed: {e}"));
    let status = response.status().as_u16();
    let text = response
        .text()
        .await
        .unwrap_or_else(|e| panic!("{what}: reading the body failed: {e}"));
    (status, text)
}
