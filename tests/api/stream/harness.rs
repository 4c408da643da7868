//! The client side of the stream tests: audio clips, a WebSocket client for
//! `GET /api/v1/speaker/stream`, start messages and stream tokens.

use std::collections::BTreeMap;
use std::net::Shutdown;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use hound::WavReader;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::audio::{RttmTurn, parse_rttm};
use crate::client::{WithKey, expect_json};
use crate::server::{Server, User, project_dir};

const STREAM_PATH: &str = "/api/v1/speaker/stream";
pub(super) const TOKEN_PATH: &str = "/api/v1/speaker/stream/token";
pub(super) const PLENTY: u64 = 1_000_000;
/// The longest the server may stay silent while a test waits for its next message. The
/// machine is shared and slow, so this only catches a hung server, it measures nothing.
pub(super) const MESSAGE_TIMEOUT: Duration = Duration::from_secs(240);
/// Not a multiple of 2, 4 or 8 bytes: frames cut samples (and stereo frames) in two.
pub(super) const ODD_FRAME_BYTES: usize = 3001;

// ----- audio --------------------------------------------------------------------------------

/// Interleaved 16-bit PCM in memory.
#[derive(Clone)]
pub struct Pcm {
    pub(super) sample_rate: u32,
    pub(super) channels: u16,
    samples: Vec<i16>,
}

impl Pcm {
    pub fn read(path: &std::path::Path) -> Pcm {
        let mut reader = WavReader::open(path)
            .unwrap_or_else(|e| panic!("{} should be a WAV: {e}", path.display()));
        let spec = reader.spec();
        assert_eq!(
            (spec.sample_format, spec.bits_per_sample),
            (hound::SampleFormat::Int, 16),
            "{}: the stream tests expect 16-bit PCM",
            path.display()
        );
        let samples = reader
            .samples::<i16>()
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("decode {}: {e}", path.display()));
        Pcm {
            sample_rate: spec.sample_rate,
            channels: spec.channels,
            samples,
        }
    }

    fn frames(&self) -> usize {
        self.samples.len() / usize::from(self.channels)
    }

    pub fn seconds(&self) -> f64 {
        self.frames() as f64 / f64::from(self.sample_rate)
    }

    /// `seconds` of audio from `start_seconds` on.
    pub fn slice(&self, start_seconds: f64, seconds: f64) -> Pcm {
        let channels = usize::from(self.channels);
        let sample = |t: f64| (t * f64::from(self.sample_rate)) as usize * channels;
        let end = sample(start_seconds + seconds).min(self.samples.len());
        Pcm {
            samples: self.samples[sample(start_seconds)..end].to_vec(),
            ..*self
        }
    }

    pub fn s16le(&self) -> Vec<u8> {
        self.samples.iter().flat_map(|s| s.to_le_bytes()).collect()
    }

    /// The mono clip as 48 kHz stereo float: linear interpolation ×3, both channels equal.
    pub(super) fn f32le_48k_stereo(&self) -> Vec<u8> {
        assert_eq!(
            (self.sample_rate, self.channels),
            (16_000, 1),
            "the 48 kHz variant is made from 16 kHz mono"
        );
        let x: Vec<f32> = self
            .samples
            .iter()
            .map(|&s| f32::from(s) / 32768.0)
            .collect();
        let mut bytes = Vec::with_capacity(x.len() * 3 * 2 * 4);
        for (i, &a) in x.iter().enumerate() {
            let b = x.get(i + 1).copied().unwrap_or(a);
            for k in 0..3 {
                let value = a + (b - a) * k as f32 / 3.0;
                for _ in 0..2 {
                    bytes.extend_from_slice(&value.to_le_bytes());
                }
            }
        }
        bytes
    }

    /// Raw Opus packets of 20 ms (one per binary frame), as a WebRTC or browser client sends.
    pub fn opus_packets(&self) -> Vec<Vec<u8>> {
        assert_eq!(self.channels, 1, "the Opus clip is mono");
        let mut encoder = opus::Encoder::new(
            self.sample_rate,
            opus::Channels::Mono,
            opus::Application::Voip,
        )
        .expect("create an Opus encoder");
        let frame = self.sample_rate as usize / 50;
        self.samples
            .chunks_exact(frame)
            .map(|chunk| {
                let mut packet = vec![0u8; 4000];
                let len = encoder
                    .encode(chunk, &mut packet)
                    .expect("encode 20 ms of Opus");
                packet.truncate(len);
                packet
            })
            .collect()
    }
}

/// A clip with its reference turns (cut to the clip).
pub struct Reference {
    pub name: String,
    pub pcm: Pcm,
    pub turns: Vec<RttmTurn>,
}

impl Reference {
    fn load(wav: PathBuf, rttm: PathBuf, seconds: f64) -> Reference {
        let pcm = Pcm::read(&wav).slice(0.0, seconds);
        let text = std::fs::read_to_string(&rttm)
            .unwrap_or_else(|e| panic!("read {}: {e}", rttm.display()));
        let end = pcm.seconds();
        let turns = parse_rttm(&text, &rttm.display().to_string())
            .into_iter()
            .filter(|turn| turn.start < end)
            .map(|turn| RttmTurn {
                duration: turn.duration.min(end - turn.start),
                ..turn
            })
            .collect();
        Reference {
            name: wav.display().to_string(),
            pcm,
            turns,
        }
    }
}

/// tests/data/sample.wav: 30 s, two speakers (speech from 6.7 s).
pub fn sample() -> Reference {
    let data = project_dir().join("tests/data");
    Reference::load(data.join("sample.wav"), data.join("sample.rttm"), 30.0)
}

/// The first 30 s of the dev set's `sim_d01` (two speakers from 0.8 s) when the shared dev
/// set is next to the repository; otherwise the bundled sample.
pub(super) fn conversation() -> Reference {
    let dev = project_dir().join("../shared/data/dev");
    let (wav, rttm) = (dev.join("wav/sim_d01.wav"), dev.join("rttm/sim_d01.rttm"));
    if wav.is_file() && rttm.is_file() {
        Reference::load(wav, rttm, 30.0)
    } else {
        eprintln!(
            "{} is missing: streaming tests/data/sample.wav",
            wav.display()
        );
        sample()
    }
}

// ----- the WebSocket client -----------------------------------------------------------------

/// How a client proves who it is.
#[derive(Clone, Copy, Debug)]
pub enum Auth<'a> {
    None,
    /// `X-API-Key: KEY`
    Header(&'a str),
    /// `Authorization: Bearer KEY_OR_JWT`
    Bearer(&'a str),
    /// `?api_key=KEY`
    KeyQuery(&'a str),
    /// `?token=STREAM_TOKEN`
    TokenQuery(&'a str),
}

/// How the server ended the connection.
#[derive(Clone, Debug)]
pub(super) struct Closed {
    /// The close frame's code; `None` when the connection ended without one.
    pub(super) code: Option<u16>,
    reason: String,
}

enum Incoming {
    Json(Value),
    Closed(Closed),
}

/// One WebSocket connection to the stream endpoint. A reader task turns every text frame
/// into JSON as it arrives; the test sends on `sink` meanwhile.
pub struct WsSession {
    sink: SplitSink<WebSocketStream<TcpStream>, Message>,
    incoming: mpsc::UnboundedReceiver<Incoming>,
    /// A second handle on the socket, to end TCP without a WebSocket close frame.
    socket: std::net::TcpStream,
    /// Every message received so far, in order.
    pub(super) received: Vec<Value>,
    pub(super) closed: Option<Closed>,
}

impl WsSession {
    /// Opens the connection; `Err` holds the HTTP answer if the upgrade was refused.
    pub(super) async fn try_connect(server: &Server, auth: Auth<'_>) -> Result<WsSession, String> {
        let query = match auth {
            Auth::KeyQuery(key) => format!("?api_key={key}"),
            Auth::TokenQuery(token) => format!("?token={token}"),
            _ => String::new(),
        };
        let url = server.ws_url(&format!("{STREAM_PATH}{query}"));
        let mut request = url
            .as_str()
            .into_client_request()
            .expect("a valid WebSocket URL");
        let header = |value: &str| HeaderValue::from_str(value).expect("a valid header value");
        match auth {
            Auth::Header(key) => {
                request.headers_mut().insert("X-API-Key", header(key));
            }
            Auth::Bearer(token) => {
                request
                    .headers_mut()
                    .insert("Authorization", header(&format!("Bearer {token}")));
            }
            _ => {}
        }

        let socket = std::net::TcpStream::connect(server.socket_addr())
            .unwrap_or_else(|e| panic!("connect to {}: {e}", server.base));
        let handle = socket.try_clone().expect("duplicate the socket handle");
        socket
            .set_nonblocking(true)
            .expect("make the socket non-blocking");
        let tcp = TcpStream::from_std(socket).expect("hand the socket to tokio");
        let ws = match tokio_tungstenite::client_async(request, tcp).await {
            Ok((ws, _)) => ws,
            Err(tungstenite::Error::Http(response)) => {
                let body = response
                    .body()
                    .as_deref()
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default()
                    .into_owned();
                return Err(format!("HTTP {}: {body}", response.status()));
            }
            Err(e) => return Err(format!("WebSocket handshake failed: {e}")),
        };

        let (sink, mut stream) = ws.split();
        let (sender, incoming) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut ending = Closed {
                code: None,
                reason: "the connection ended without a close frame".into(),
            };
            while let Some(item) = stream.next().await {
                match item {
                    Ok(Message::Text(text)) => {
                        let value = serde_json::from_str(&text).unwrap_or_else(
                            |e| json!({"type": "<not JSON>", "error": e.to_string(), "text": text.as_str()}),
                        );
                        let _ = sender.send(Incoming::Json(value));
                    }
                    Ok(Message::Binary(bytes)) => {
                        let _ = sender.send(Incoming::Json(
                            json!({"type": "<binary frame>", "bytes": bytes.len()}),
                        ));
                    }
                    Ok(Message::Close(frame)) => {
                        let closed = Closed {
                            code: frame.as_ref().map(|f| u16::from(f.code)),
                            reason: frame.map(|f| f.reason.to_string()).unwrap_or_default(),
                        };
                        let _ = sender.send(Incoming::Closed(closed));
                        // Keep polling so the close handshake completes, then stop.
                        while stream.next().await.is_some() {}
                        return;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        ending.reason = format!("the connection failed: {e}");
                        break;
                    }
                }
            }
            let _ = sender.send(Incoming::Closed(ending));
        });
        Ok(WsSession {
            sink,
            incoming,
            socket: handle,
            received: Vec::new(),
            closed: None,
        })
    }

    pub async fn connect(server: &Server, auth: Auth<'_>) -> WsSession {
        WsSession::try_connect(server, auth)
            .await
            .unwrap_or_else(|e| panic!("GET {STREAM_PATH} with {auth:?}: the upgrade failed: {e}"))
    }

    pub(super) async fn send_json(&mut self, message: &Value) -> Result<(), tungstenite::Error> {
        self.sink.send(Message::text(message.to_string())).await
    }

    pub(super) async fn send_text(&mut self, text: &str) -> Result<(), tungstenite::Error> {
        self.sink.send(Message::text(text.to_string())).await
    }

    /// Sends a control message the server must still be reading.
    pub(super) async fn control(&mut self, kind: &str) {
        let message = json!({ "type": kind });
        self.send_json(&message).await.unwrap_or_else(|e| {
            panic!(
                "sending {message} failed ({e}); received so far: {}",
                self.summary()
            )
        });
    }

    pub async fn send_binary(&mut self, bytes: &[u8]) -> Result<(), tungstenite::Error> {
        self.sink.send(Message::binary(bytes.to_vec())).await
    }

    /// Sends `audio` in frames of `frame_bytes` as fast as TCP takes them. Stops at the first
    /// failed send (the server closed) and returns how many bytes went out.
    pub(super) async fn send_audio(&mut self, audio: &[u8], frame_bytes: usize) -> usize {
        let mut sent = 0;
        for frame in audio.chunks(frame_bytes) {
            if self.send_binary(frame).await.is_err() {
                break;
            }
            sent += frame.len();
        }
        sent
    }

    /// One packet per binary frame. Returns how many went out.
    pub(super) async fn send_packets(&mut self, packets: &[Vec<u8>]) -> usize {
        let mut sent = 0;
        for packet in packets {
            if self.send_binary(packet).await.is_err() {
                break;
            }
            sent += 1;
        }
        sent
    }

    /// The next message, or `None` once the connection is closed.
    pub(super) async fn next(&mut self) -> Option<Value> {
        if self.closed.is_some() {
            return None;
        }
        let incoming = tokio::time::timeout(MESSAGE_TIMEOUT, self.incoming.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "the server sent nothing for {MESSAGE_TIMEOUT:?}; received so far: {}",
                    self.summary()
                )
            });
        match incoming {
            Some(Incoming::Json(value)) => {
                self.received.push(value.clone());
                Some(value)
            }
            Some(Incoming::Closed(closed)) => {
                self.closed = Some(closed);
                None
            }
            None => {
                self.closed = Some(Closed {
                    code: None,
                    reason: "the reader task ended".into(),
                });
                None
            }
        }
    }

    /// Reads until the first message of type `kind` (an `error` first is a failure).
    pub(super) async fn until(&mut self, kind: &str) -> Value {
        while let Some(message) = self.next().await {
            if message["type"] == kind {
                return message;
            }
            assert!(
                message["type"] != "error",
                "waiting for {kind:?}, the server sent an error: {message}; received: {}",
                self.summary()
            );
        }
        panic!(
            "the connection closed ({:?}) before a {kind:?} message; received: {}",
            self.closed,
            self.summary()
        );
    }

    /// Sends `start` and returns the `ready` answer.
    pub async fn start(&mut self, start: Value) -> Value {
        self.send_json(&start)
            .await
            .unwrap_or_else(|e| panic!("sending {start} failed: {e}"));
        self.until("ready").await
    }

    /// Reads to the end of the connection and returns how it was closed.
    pub(super) async fn closing(&mut self) -> Closed {
        while self.next().await.is_some() {}
        self.closed.clone().expect("closed")
    }

    /// Expects an `error` with `code` (no `ready` on the way), then a close with one of
    /// `close_codes`. Returns the error message.
    pub(super) async fn expect_error(
        &mut self,
        code: &str,
        close_codes: &[u16],
        what: &str,
    ) -> Value {
        let error = loop {
            let Some(message) = self.next().await else {
                panic!(
                    "{what}: the connection closed ({:?}) without an error message; received: {}",
                    self.closed,
                    self.summary()
                );
            };
            assert!(
                message["type"] != "ready",
                "{what}: the server should refuse, it answered ready: {message}"
            );
            if message["type"] == "error" {
                break message;
            }
        };
        assert_eq!(error["code"], code, "{what}: the error's code: {error}");
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: an error explains itself in message: {error}"
        );
        let closed = self.closing().await;
        assert!(
            closed.code.is_some_and(|c| close_codes.contains(&c)),
            "{what}: after the error the server should close with {close_codes:?}, got {closed:?}; \
             received: {}",
            self.summary()
        );
        error
    }

    /// Sends `end`, reads the remaining events up to `completed`, and expects a 1000 close.
    pub(super) async fn end(&mut self) -> Value {
        self.control("end").await;
        let completed = self.until("completed").await;
        let closed = self.closing().await;
        assert_eq!(
            closed.code,
            Some(1000),
            "after completed the server closes normally: {closed:?}"
        );
        completed
    }

    /// Ends TCP without a close frame (FIN after the audio already sent), as a client whose
    /// process died would. The reader task keeps draining so nothing resets the connection.
    pub(super) fn drop_connection(self) {
        self.socket
            .shutdown(Shutdown::Write)
            .expect("shut the socket down for writing");
    }

    /// The message types received so far, and the first error if any.
    pub(super) fn summary(&self) -> String {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for message in &self.received {
            *counts.entry(message["type"].to_string()).or_default() += 1;
        }
        let first_error = self.received.iter().find(|m| m["type"] == "error");
        let last: Vec<&Value> = self.received.iter().rev().take(3).collect();
        format!("{counts:?}; first error: {first_error:?}; last messages: {last:?}")
    }
}

pub fn start_message(pcm: &Pcm, encoding: &str) -> Value {
    json!({
        "type": "start",
        "sample_rate": pcm.sample_rate,
        "channels": pcm.channels,
        "encoding": encoding,
    })
}

pub(super) fn with(mut message: Value, field: &str, value: Value) -> Value {
    message[field] = value;
    message
}

pub(super) fn start_s16(sample_rate: u32, channels: u16) -> Value {
    json!({"type": "start", "sample_rate": sample_rate, "channels": channels, "encoding": "pcm_s16le"})
}

/// Streams `audio` to the end as `user`; returns (ready, completed, all messages).
pub async fn whole_stream(server: &Server, user: &User, audio: &Pcm) -> (Value, Value, Vec<Value>) {
    let mut session = WsSession::connect(server, Auth::Header(&user.key)).await;
    let ready = session.start(start_message(audio, "pcm_s16le")).await;
    let sent = session.send_audio(&audio.s16le(), ODD_FRAME_BYTES).await;
    assert_eq!(sent, audio.s16le().len(), "{}", session.summary());
    let completed = session.end().await;
    (ready, completed, session.received)
}

// ----- stream tokens ---------------------------------------------------------------------------

pub(super) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs()
}

pub(super) fn hs256(secret: &str, subject: &str, expires: u64) -> String {
    let claims = json!({"sub": subject, "exp": expires, "iat": now()});
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign a JWT")
}

/// `POST /api/v1/speaker/stream/token` → the single-use token.
pub(super) async fn stream_token(server: &Server, user: &User) -> String {
    let response = server.post(TOKEN_PATH).with_key(user).send().await;
    let body = expect_json(response, 200, &format!("POST {TOKEN_PATH}")).await;
    assert!(
        body["expires_in"].as_f64().is_some_and(|s| s > 0.0),
        "a stream token says when it expires: {body}"
    );
    body["token"]
        .as_str()
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| panic!("POST {TOKEN_PATH} returns a token: {body}"))
        .to_string()
}
