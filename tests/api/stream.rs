//! Live diarization over WebSocket (issue 4): `GET /api/v1/speaker/stream` through a real
//! WebSocket client (tokio-tungstenite) against the real server binary.
//!
//! Audio: `tests/data/sample.wav` (30 s, two speakers, reference `tests/data/sample.rttm`) and,
//! when the shared dev set sits next to the repository (`../shared/data/dev`), the first 30 s
//! of `sim_d01` (two speakers) for the PCM happy paths. Every stream is sent faster than real
//! time: each frame goes out as soon as TCP takes it, and a reader task drains the server's
//! events meanwhile, so neither side can block the other.

use std::collections::{BTreeMap, BTreeSet};
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

use crate::audio::{RttmTurn, credits_for, parse_rttm, play_wav};
use crate::checks::{download, expect_not_found, listed_ids};
use crate::client::{WithKey, expect_json};
use crate::server::{Server, User, project_dir};
use crate::whip::{check_feed, watch_both};

const STREAM_PATH: &str = "/api/v1/speaker/stream";
const TOKEN_PATH: &str = "/api/v1/speaker/stream/token";
const PLENTY: u64 = 1_000_000;
/// The longest the server may stay silent while a test waits for its next message. The
/// machine is shared and slow, so this only catches a hung server, it measures nothing.
const MESSAGE_TIMEOUT: Duration = Duration::from_secs(240);
/// Not a multiple of 2, 4 or 8 bytes: frames cut samples (and stereo frames) in two.
const ODD_FRAME_BYTES: usize = 3001;
/// The server's default limit on one binary frame.
const MAX_FRAME_BYTES: usize = 1 << 20;
/// How far a stream's duration may be from the audio sent.
const DURATION_TOLERANCE_SECONDS: f64 = 0.1;
/// Stream tokens live this long in the auth test: long enough to use one at once, short
/// enough to wait for one to expire.
const STREAM_TOKEN_TTL: Duration = Duration::from_secs(5);
const HS256_SECRET: &str = "whospoke-test-secret-that-is-long-enough-for-hs256";

// ----- audio --------------------------------------------------------------------------------

/// Interleaved 16-bit PCM in memory.
#[derive(Clone)]
pub struct Pcm {
    sample_rate: u32,
    channels: u16,
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
    fn f32le_48k_stereo(&self) -> Vec<u8> {
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
fn conversation() -> Reference {
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
struct Closed {
    /// The close frame's code; `None` when the connection ended without one.
    code: Option<u16>,
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
    received: Vec<Value>,
    closed: Option<Closed>,
}

impl WsSession {
    /// Opens the connection; `Err` holds the HTTP answer if the upgrade was refused.
    async fn try_connect(server: &Server, auth: Auth<'_>) -> Result<WsSession, String> {
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

    async fn send_json(&mut self, message: &Value) -> Result<(), tungstenite::Error> {
        self.sink.send(Message::text(message.to_string())).await
    }

    async fn send_text(&mut self, text: &str) -> Result<(), tungstenite::Error> {
        self.sink.send(Message::text(text.to_string())).await
    }

    /// Sends a control message the server must still be reading.
    async fn control(&mut self, kind: &str) {
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
    async fn send_audio(&mut self, audio: &[u8], frame_bytes: usize) -> usize {
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
    async fn send_packets(&mut self, packets: &[Vec<u8>]) -> usize {
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
    async fn next(&mut self) -> Option<Value> {
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
    async fn until(&mut self, kind: &str) -> Value {
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
    async fn closing(&mut self) -> Closed {
        while self.next().await.is_some() {}
        self.closed.clone().expect("closed")
    }

    /// Expects an `error` with `code` (no `ready` on the way), then a close with one of
    /// `close_codes`. Returns the error message.
    async fn expect_error(&mut self, code: &str, close_codes: &[u16], what: &str) -> Value {
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
    async fn end(&mut self) -> Value {
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
    fn drop_connection(self) {
        self.socket
            .shutdown(Shutdown::Write)
            .expect("shut the socket down for writing");
    }

    /// The message types received so far, and the first error if any.
    fn summary(&self) -> String {
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

fn with(mut message: Value, field: &str, value: Value) -> Value {
    message[field] = value;
    message
}

fn start_s16(sample_rate: u32, channels: u16) -> Value {
    json!({"type": "start", "sample_rate": sample_rate, "channels": channels, "encoding": "pcm_s16le"})
}

// ----- what a finished stream must show -----------------------------------------------------

fn number(value: &Value, field: &str) -> f64 {
    value[field]
        .as_f64()
        .filter(|x| x.is_finite())
        .unwrap_or_else(|| panic!("{field} should be a finite number: {value}"))
}

fn is_speaker_label(label: &str) -> bool {
    label
        .strip_prefix("SPEAKER_")
        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
}

fn label<'a>(value: &'a Value, field: &str) -> &'a str {
    let text = value[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} should be a string: {value}"));
    assert!(
        is_speaker_label(text),
        "{field} should look like SPEAKER_1: {value}"
    );
    text
}

pub fn job_id_of(message: &Value) -> i64 {
    message["job_id"]
        .as_i64()
        .unwrap_or_else(|| panic!("job_id should be an integer: {message}"))
}

/// `ready`: a session id, the job id, and the latency and step in force.
fn check_ready(ready: &Value, latency_ms: Option<u64>) -> i64 {
    assert!(
        ready["session_id"].as_str().is_some_and(|s| !s.is_empty()),
        "ready carries a session_id: {ready}"
    );
    let latency = ready["latency_ms"]
        .as_u64()
        .unwrap_or_else(|| panic!("ready.latency_ms should be an integer: {ready}"));
    match latency_ms {
        Some(asked) => assert_eq!(latency, asked, "ready.latency_ms is the one asked: {ready}"),
        None => assert!(
            (500..=2000).contains(&latency),
            "the default latency is in 500–2000 ms: {ready}"
        ),
    }
    let step = ready["step_ms"]
        .as_u64()
        .unwrap_or_else(|| panic!("ready.step_ms should be an integer: {ready}"));
    assert!(
        step > 0 && step <= latency,
        "0 < step_ms <= latency_ms: {ready}"
    );
    job_id_of(ready)
}

/// A `speaker` event.
#[derive(Debug, Clone)]
struct Turn {
    label: String,
    start: f64,
    end: Option<f64>,
    is_final: bool,
}

/// The events of one finished stream, checked for form and consistency.
struct Events {
    turns: Vec<Turn>,
    /// Every label seen → the label it has after all relabels (a relabel moves every past
    /// and future turn of `from` to `to`).
    relabels: BTreeMap<String, String>,
    /// `usage` events: (audio_seconds, credits).
    usage: Vec<(f64, f64)>,
}

impl Events {
    /// Checks every message of a stream that lasted `seconds`.
    fn check(messages: &[Value], seconds: f64) -> Events {
        let mut turns = Vec::new();
        let mut relabels = BTreeMap::new();
        let mut retired: BTreeSet<String> = BTreeSet::new();
        let mut usage = Vec::new();
        for message in messages {
            match message["type"].as_str().unwrap_or_default() {
                "speaker" => {
                    let speaker = label(message, "speaker").to_string();
                    assert!(
                        !retired.contains(&speaker),
                        "a relabel moved {speaker} away, yet a later event uses it: {message}"
                    );
                    let start = number(message, "start");
                    let end = match &message["end"] {
                        Value::Null => None,
                        _ => Some(number(message, "end")),
                    };
                    let is_final = message["final"]
                        .as_bool()
                        .unwrap_or_else(|| panic!("final should be a boolean: {message}"));
                    let confidence = number(message, "confidence");
                    assert!(
                        (0.0..=1.0).contains(&confidence),
                        "confidence is within 0–1: {message}"
                    );
                    assert!(
                        start >= 0.0 && start <= seconds + DURATION_TOLERANCE_SECONDS,
                        "a turn starts inside the {seconds} s streamed: {message}"
                    );
                    if is_final {
                        let end =
                            end.unwrap_or_else(|| panic!("a final turn has an end: {message}"));
                        assert!(
                            end >= start && end <= seconds + DURATION_TOLERANCE_SECONDS,
                            "a final turn has start <= end <= {seconds} s: {message}"
                        );
                    } else if let Some(end) = end {
                        assert!(end >= start, "a turn's end is after its start: {message}");
                    }
                    turns.push(Turn {
                        label: speaker,
                        start,
                        end,
                        is_final,
                    });
                }
                "relabel" => {
                    let from = label(message, "from").to_string();
                    let to = label(message, "to").to_string();
                    assert_ne!(from, to, "a relabel changes the label: {message}");
                    retired.insert(from.clone());
                    retired.remove(&to);
                    relabels
                        .values_mut()
                        .filter(|current| **current == from)
                        .for_each(|current| *current = to.clone());
                    relabels.insert(from, to.clone());
                    relabels.entry(to.clone()).or_insert(to);
                }
                "usage" => {
                    usage.push((number(message, "audio_seconds"), number(message, "credits")));
                }
                "warning" => assert!(
                    message["code"].as_str().is_some(),
                    "a warning has a code: {message}"
                ),
                "ready" | "completed" => {}
                other => panic!("an unexpected {other:?} message in a stream: {message}"),
            }
        }
        let events = Events {
            turns,
            relabels,
            usage,
        };
        assert!(
            events.turns.iter().any(|t| t.is_final),
            "the stream had speech, so final turns: {messages:?}"
        );
        events
    }

    /// Follows relabels to the label a speaker has at the end.
    fn resolve(&self, label: &str) -> String {
        self.relabels
            .get(label)
            .cloned()
            .unwrap_or_else(|| label.to_string())
    }

    /// Final turns with their labels after every relabel: (label, start, end).
    fn finals(&self) -> Vec<(String, f64, f64)> {
        self.turns
            .iter()
            .filter(|t| t.is_final)
            .map(|t| (self.resolve(&t.label), t.start, t.end.expect("checked")))
            .collect()
    }

    fn final_labels(&self) -> BTreeSet<String> {
        self.finals()
            .into_iter()
            .map(|(label, _, _)| label)
            .collect()
    }
}

/// Per label, the 10 ms frames of `[0, seconds)` it covers.
fn coverage(turns: &[(String, f64, f64)], seconds: f64) -> BTreeMap<String, Vec<bool>> {
    let frames = (seconds * 100.0).ceil() as usize;
    let mut grid: BTreeMap<String, Vec<bool>> = BTreeMap::new();
    for (label, start, end) in turns {
        let row = grid
            .entry(label.clone())
            .or_insert_with(|| vec![false; frames]);
        let first = ((start * 100.0).round() as usize).min(frames);
        let last = ((end * 100.0).round() as usize).min(frames);
        row[first..last].iter_mut().for_each(|f| *f = true);
    }
    grid
}

fn rttm_spans(turns: &[RttmTurn]) -> Vec<(String, f64, f64)> {
    turns
        .iter()
        .map(|t| (t.label.clone(), t.start, t.start + t.duration))
        .collect()
}

/// The share of `reference` speech that `hypothesis` attributes to the right speaker, under
/// the best one-to-one mapping of reference speakers onto hypothesis speakers.
fn attributed_share(
    reference: &[(String, f64, f64)],
    hypothesis: &[(String, f64, f64)],
    seconds: f64,
) -> f64 {
    let reference = coverage(reference, seconds);
    let hypothesis = coverage(hypothesis, seconds);
    let reference: Vec<&Vec<bool>> = reference.values().collect();
    let hypothesis: Vec<&Vec<bool>> = hypothesis.values().collect();
    let overlap: Vec<Vec<usize>> = reference
        .iter()
        .map(|r| {
            hypothesis
                .iter()
                .map(|h| r.iter().zip(h.iter()).filter(|(a, b)| **a && **b).count())
                .collect()
        })
        .collect();
    fn best(overlap: &[Vec<usize>], row: usize, used: &mut [bool]) -> usize {
        if row == overlap.len() {
            return 0;
        }
        let mut best_total = best(overlap, row + 1, used);
        for column in 0..used.len() {
            if !used[column] {
                used[column] = true;
                best_total = best_total.max(overlap[row][column] + best(overlap, row + 1, used));
                used[column] = false;
            }
        }
        best_total
    }
    let correct = best(&overlap, 0, &mut vec![false; hypothesis.len()]);
    let total: usize = reference
        .iter()
        .map(|r| r.iter().filter(|f| **f).count())
        .sum();
    correct as f64 / total.max(1) as f64
}

/// What a `completed` message says, after its checks.
struct Completed {
    duration: f64,
    credits_used: i64,
    turns: Vec<RttmTurn>,
    labels: BTreeSet<String>,
}

/// Checks `completed` against the events before it: the RTTM names the final labels (after
/// relabels) and agrees with the final turns; the duration is the audio sent.
fn check_completed(
    completed: &Value,
    events: &Events,
    job_id: i64,
    seconds_sent: f64,
) -> Completed {
    assert_eq!(
        job_id_of(completed),
        job_id,
        "completed names the job of ready: {completed}"
    );
    let duration = number(completed, "duration_seconds");
    assert!(
        (duration - seconds_sent).abs() <= DURATION_TOLERANCE_SECONDS,
        "completed.duration_seconds {duration}, but {seconds_sent} s of audio were sent"
    );
    let credits_used = completed["credits_used"]
        .as_i64()
        .unwrap_or_else(|| panic!("completed.credits_used should be an integer: {completed}"));
    assert_eq!(
        credits_used,
        credits_for(duration),
        "credits_used is ceil(27.5 × {duration} s): {completed}"
    );
    let rttm = completed["rttm"]
        .as_str()
        .unwrap_or_else(|| panic!("completed.rttm should be the RTTM text: {completed}"));
    let turns = parse_rttm(rttm, "completed.rttm");
    let labels: BTreeSet<String> = turns.iter().map(|t| t.label.clone()).collect();
    assert_eq!(
        labels,
        events.final_labels(),
        "the RTTM's speakers are the final events' speakers after relabels ({:?}); RTTM:\n{rttm}",
        events.relabels
    );
    let speakers: BTreeSet<String> = completed["speakers"]
        .as_array()
        .unwrap_or_else(|| panic!("completed.speakers should be an array: {completed}"))
        .iter()
        .map(|s| label(s, "label").to_string())
        .collect();
    assert_eq!(
        speakers, labels,
        "completed.speakers lists the RTTM's speakers: {completed}"
    );
    let agreement = attributed_share(&events.finals(), &rttm_spans(&turns), duration);
    assert!(
        agreement >= 0.9,
        "the RTTM should give final-event speech to the same speaker; only {:.1} % agrees",
        agreement * 100.0
    );
    for (audio_seconds, credits) in &events.usage {
        assert!(
            *audio_seconds <= duration + DURATION_TOLERANCE_SECONDS
                && *credits <= credits_used as f64 + 1e-9,
            "usage never exceeds the stream ({duration} s, {credits_used} credits): \
             {:?}",
            events.usage
        );
    }
    assert!(
        events.usage.windows(2).all(|w| w[0].0 <= w[1].0),
        "usage.audio_seconds never decreases: {:?}",
        events.usage
    );
    Completed {
        duration,
        credits_used,
        turns,
        labels,
    }
}

/// The finished job over HTTP: COMPLETED, `job_type` stream, listed, one WAV per speaker at the
/// stream's own format and length, and the RTTM. Returns the job.
async fn check_job(
    server: &Server,
    user: &User,
    job_id: i64,
    format: (u32, u16),
    labels: Option<&BTreeSet<String>>,
) -> Value {
    let job = server.wait_for_status(user, job_id, "COMPLETED").await;
    assert_eq!(job["job_type"], "stream", "a stream's job: {job:#}");
    let duration = number(&job, "duration_seconds");
    let result = &job["result"];
    let speakers = result["speakers"]
        .as_array()
        .unwrap_or_else(|| panic!("job {job_id}: result.speakers should be an array: {job:#}"));
    let job_labels: BTreeSet<String> = speakers
        .iter()
        .map(|s| label(s, "label").to_string())
        .collect();
    if let Some(labels) = labels {
        assert_eq!(
            &job_labels, labels,
            "job {job_id}: the job's speakers are the stream's: {job:#}"
        );
    }
    for speaker in speakers {
        let what = format!("job {job_id} track {}", speaker["label"]);
        let url = speaker["download_url"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: a speaker has a download_url: {speaker}"));
        let (content_type, bytes) = download(server, url, &what).await;
        assert!(
            content_type.starts_with("audio/") && content_type.contains("wav"),
            "{what}: Content-Type should be audio/wav, got {content_type:?}"
        );
        let track = play_wav(&bytes, &what);
        assert_eq!(
            (track.spec.sample_rate, track.spec.channels),
            format,
            "{what}: a track keeps the stream's sample rate and channels"
        );
        let track_seconds = f64::from(track.frames) / f64::from(track.spec.sample_rate);
        assert!(
            (track_seconds - duration).abs() <= DURATION_TOLERANCE_SECONDS,
            "{what}: the track lasts {track_seconds} s, the stream {duration} s"
        );
        assert!(track.has_sound, "{what}: the track is all digital silence");
    }
    let files = result["files"]
        .as_array()
        .unwrap_or_else(|| panic!("job {job_id}: result.files should be an array: {job:#}"));
    let rttm_files: Vec<&Value> = files.iter().filter(|f| f["type"] == "rttm").collect();
    assert_eq!(
        rttm_files.len(),
        1,
        "job {job_id}: one rttm file: {files:#?}"
    );
    let url = rttm_files[0]["download_url"]
        .as_str()
        .unwrap_or_else(|| panic!("job {job_id}: the rttm file has a download_url: {files:#?}"));
    let what = format!("job {job_id} RTTM");
    let (_, bytes) = download(server, url, &what).await;
    let text = String::from_utf8(bytes).unwrap_or_else(|e| panic!("{what}: not UTF-8: {e}"));
    let rttm_labels: BTreeSet<String> = parse_rttm(&text, &what)
        .into_iter()
        .map(|t| t.label)
        .collect();
    assert_eq!(
        rttm_labels, job_labels,
        "{what}: the RTTM names the job's speakers"
    );
    let listing = server.list(user, "").await;
    assert!(
        listed_ids(&listing).contains(&job_id),
        "job {job_id} should be in its owner's job list: {listing:#}"
    );
    job
}

/// Streams a clip start to end and checks everything a finished stream shows: events,
/// `completed`, the job and its downloads, the charge, and accuracy against the reference.
async fn stream_and_check(
    server: &Server,
    user: &User,
    reference: &Reference,
    encoding: &str,
) -> Completed {
    let before = server.balance(user).await;
    let pcm = &reference.pcm;
    let mut session = WsSession::connect(server, Auth::Header(&user.key)).await;
    // pcm_f32le is the clip made 48 kHz stereo; the others keep the clip's format.
    let format = match encoding {
        "pcm_f32le" => (48_000, 2),
        _ => (pcm.sample_rate, pcm.channels),
    };
    let start = json!({
        "type": "start",
        "sample_rate": format.0,
        "channels": format.1,
        "encoding": encoding,
    });
    let ready = session.start(start).await;
    let job_id = check_ready(&ready, None);

    let seconds = match encoding {
        "pcm_s16le" | "pcm_f32le" => {
            let audio = if encoding == "pcm_s16le" {
                pcm.s16le()
            } else {
                pcm.f32le_48k_stereo()
            };
            let sent = session.send_audio(&audio, ODD_FRAME_BYTES).await;
            assert_eq!(
                sent,
                audio.len(),
                "the server closed mid-stream: {}",
                session.summary()
            );
            pcm.seconds()
        }
        _ => {
            let packets = pcm.opus_packets();
            let sent = session.send_packets(&packets).await;
            assert_eq!(
                sent,
                packets.len(),
                "the server closed mid-stream: {}",
                session.summary()
            );
            packets.len() as f64 * 0.02
        }
    };
    let completed = session.end().await;

    let messages = &session.received;
    let events = Events::check(messages, seconds);
    let first_speaker = events.turns.first().expect("checked: there are turns");
    assert!(
        !first_speaker.is_final,
        "provisional events come before finals; the first speaker event is final: {first_speaker:?}"
    );
    assert!(
        events.turns.iter().any(|t| !t.is_final),
        "a stream shows provisional turns"
    );
    assert!(
        !events.usage.is_empty(),
        "a {seconds} s stream reports usage: {}",
        session.summary()
    );
    assert!(
        events.final_labels().len() >= 2,
        "{}: two people speak, the final events name {:?}",
        reference.name,
        events.final_labels()
    );
    let completed = check_completed(&completed, &events, job_id, seconds);

    let share = attributed_share(
        &rttm_spans(&reference.turns),
        &rttm_spans(&completed.turns),
        completed.duration,
    );
    assert!(
        share >= 0.70,
        "{} ({encoding}): only {:.1} % of the reference speech goes to the matching speaker \
         (one-to-one mapping); RTTM:\n{:#?}",
        reference.name,
        share * 100.0,
        completed.turns
    );

    eprintln!(
        "{} ({encoding}): {} messages, speakers {:?}, relabels {:?}, {:.1} % of the reference \
         speech attributed",
        reference.name,
        session.received.len(),
        completed.labels,
        events.relabels,
        share * 100.0
    );
    check_job(server, user, job_id, format, Some(&completed.labels)).await;
    assert_eq!(
        server.balance(user).await,
        before - completed.credits_used,
        "the balance drops by exactly credits_used"
    );
    completed
}

// ----- the happy paths ----------------------------------------------------------------------

#[tokio::test]
async fn a_stream_of_pcm_s16le_gives_events_a_completed_job_and_the_right_speakers() {
    let server = Server::start(&[]);
    let user = server.create_user(PLENTY);
    stream_and_check(&server, &user, &conversation(), "pcm_s16le").await;
}

#[tokio::test]
async fn a_48_khz_stereo_float_stream_keeps_its_format_in_the_tracks() {
    let server = Server::start(&[]);
    let user = server.create_user(PLENTY);
    stream_and_check(&server, &user, &conversation(), "pcm_f32le").await;
}

#[tokio::test]
async fn a_stream_of_raw_opus_packets_is_diarized() {
    let server = Server::start(&[]);
    let user = server.create_user(PLENTY);
    stream_and_check(&server, &user, &sample(), "opus").await;
}

#[tokio::test]
async fn finalize_flushes_final_events_mid_stream_and_keepalive_is_accepted() {
    let server = Server::start(&[]);
    let user = server.create_user(PLENTY);
    let pcm = sample().pcm;
    // The sample's speech starts at 6.7 s; at 12 s a turn (10.6–14.7 s) is under way.
    let (first, second) = (pcm.slice(0.0, 12.0), pcm.slice(12.0, 4.0));
    let latency_ms = 5000;

    let mut session = WsSession::connect(&server, Auth::Header(&user.key)).await;
    session.control("keepalive").await;
    let start = with(
        start_message(&pcm, "pcm_s16le"),
        "latency_ms",
        json!(latency_ms),
    );
    let ready = session.start(start).await;
    let job_id = check_ready(&ready, Some(latency_ms));
    session.control("keepalive").await;
    let sent = session.send_audio(&first.s16le(), ODD_FRAME_BYTES).await;
    assert_eq!(
        sent,
        first.s16le().len(),
        "the server closed: {}",
        session.summary()
    );
    session.control("keepalive").await;
    session.control("finalize").await;

    // With 5 s of latency no turn could be final past 7 s yet: a final turn reaching the end
    // of the audio sent can only come from the flush.
    let flushed = loop {
        let message = session.next().await.unwrap_or_else(|| {
            panic!(
                "the connection closed ({:?}) after finalize; received: {}",
                session.closed,
                session.summary()
            )
        });
        assert!(
            !matches!(message["type"].as_str(), Some("error" | "completed")),
            "finalize neither fails nor ends the stream: {message}"
        );
        if message["type"] == "speaker"
            && message["final"] == true
            && message["end"]
                .as_f64()
                .is_some_and(|end| end >= first.seconds() - 1.0)
        {
            break message;
        }
    };

    let sent = session.send_audio(&second.s16le(), ODD_FRAME_BYTES).await;
    assert_eq!(
        sent,
        second.s16le().len(),
        "the stream goes on after finalize (got {flushed}): {}",
        session.summary()
    );
    let completed = session.end().await;
    let seconds = first.seconds() + second.seconds();
    let events = Events::check(&session.received, seconds);
    check_completed(&completed, &events, job_id, seconds);
    check_job(&server, &user, job_id, (16_000, 1), None).await;
}

// ----- authentication ------------------------------------------------------------------------

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs()
}

fn hs256(secret: &str, subject: &str, expires: u64) -> String {
    let claims = json!({"sub": subject, "exp": expires, "iat": now()});
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign a JWT")
}

/// `POST /api/v1/speaker/stream/token` → the single-use token.
async fn stream_token(server: &Server, user: &User) -> String {
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

/// Authenticates with `auth`, streams a second of speech, and checks the job is `user`'s.
async fn expect_accepted(server: &Server, user: &User, auth: Auth<'_>, speech: &Pcm) {
    let mut session = WsSession::connect(server, auth).await;
    let ready = session.start(start_message(speech, "pcm_s16le")).await;
    let job_id = check_ready(&ready, None);
    let sent = session.send_audio(&speech.s16le(), ODD_FRAME_BYTES).await;
    assert_eq!(
        sent,
        speech.s16le().len(),
        "{auth:?}: {}",
        session.summary()
    );
    let completed = session.end().await;
    assert_eq!(job_id_of(&completed), job_id, "{auth:?}: {completed}");
    let job = server.wait_for_status(user, job_id, "COMPLETED").await;
    assert_eq!(job["job_type"], "stream", "{auth:?}: {job}");
}

/// The contract for bad credentials: the upgrade succeeds, then an `unauthorized` error frame
/// and a 1008 close, also for a client that sends its start message at once (as browsers do).
/// `Err` says what happened instead.
async fn refusal(server: &Server, auth: Auth<'_>) -> Result<(), String> {
    let mut session = WsSession::try_connect(server, auth)
        .await
        .map_err(|e| format!("the upgrade was refused: {e}"))?;
    let _ = session.send_json(&start_s16(16_000, 1)).await;
    let closed = session.closing().await;
    let errors: Vec<&Value> = session
        .received
        .iter()
        .filter(|m| m["type"] == "error")
        .collect();
    let ready = session.received.iter().any(|m| m["type"] == "ready");
    let refused = !ready
        && errors.len() == 1
        && errors[0]["code"] == "unauthorized"
        && errors[0]["message"].as_str().is_some_and(|m| !m.is_empty());
    if refused && closed.code == Some(1008) {
        Ok(())
    } else {
        Err(format!("received {:?}, then {closed:?}", session.received))
    }
}

#[tokio::test]
async fn every_auth_path_works_and_bad_credentials_get_1008() {
    let server = Server::start(&[
        "--jwt-hs256-secret",
        HS256_SECRET,
        "--stream-token-ttl-seconds",
        &STREAM_TOKEN_TTL.as_secs().to_string(),
    ]);
    let user = server.create_user(PLENTY);
    let speech = sample().pcm.slice(10.0, 1.5);

    expect_accepted(&server, &user, Auth::Header(&user.key), &speech).await;
    expect_accepted(&server, &user, Auth::Bearer(&user.key), &speech).await;
    expect_accepted(&server, &user, Auth::KeyQuery(&user.key), &speech).await;
    let jwt = hs256(HS256_SECRET, &user.id, now() + 600);
    expect_accepted(&server, &user, Auth::Bearer(&jwt), &speech).await;
    let token = stream_token(&server, &user).await;
    expect_accepted(&server, &user, Auth::TokenQuery(&token), &speech).await;
    let mut failures = Vec::new();
    let mut refuse = async |auth: Auth<'_>, what: &str| {
        if let Err(e) = refusal(&server, auth).await {
            failures.push(format!("{what}: {e}"));
        }
    };
    refuse(Auth::TokenQuery(&token), "a stream token used twice").await;

    let response = server.post(TOKEN_PATH).send().await;
    expect_json(response, 401, "POST stream/token without credentials").await;

    let stale = stream_token(&server, &user).await;
    tokio::time::sleep(STREAM_TOKEN_TTL + Duration::from_secs(2)).await;
    refuse(Auth::TokenQuery(&stale), "an expired stream token").await;

    let wrong_key = format!("{}x", user.key);
    let expired_jwt = hs256(HS256_SECRET, &user.id, now() - 3600);
    let foreign_jwt = hs256(
        "another-secret-that-is-also-long-enough-for-hs256",
        &user.id,
        now() + 600,
    );
    let refused = [
        (Auth::None, "no credentials"),
        (Auth::Header(&wrong_key), "a wrong X-API-Key"),
        (Auth::Bearer(&wrong_key), "a wrong Bearer key"),
        (Auth::KeyQuery(&wrong_key), "a wrong ?api_key="),
        (Auth::TokenQuery("not-a-stream-token"), "an invalid ?token="),
        (Auth::TokenQuery(&user.key), "an API key passed as ?token="),
        (Auth::Bearer(&expired_jwt), "an expired JWT"),
        (
            Auth::Bearer(&foreign_jwt),
            "a JWT signed with another secret",
        ),
    ];
    for (auth, what) in refused {
        refuse(auth, what).await;
    }
    assert!(
        failures.is_empty(),
        "bad credentials should get an `unauthorized` error frame and a 1008 close:\n{}",
        failures.join("\n")
    );

    let listing = server.list(&user, "").await;
    assert_eq!(
        listing["total"], 5,
        "five accepted sessions, five jobs; refused ones make none: {listing:#}"
    );
}

// ----- refusals before audio ------------------------------------------------------------------

#[tokio::test]
async fn bad_start_messages_wrong_encodings_and_audio_before_start_are_refused() {
    let server = Server::start(&[]);
    let user = server.create_user(PLENTY);
    let good = start_s16(16_000, 1);
    let mut missing_rate = good.clone();
    missing_rate
        .as_object_mut()
        .expect("an object")
        .remove("sample_rate");

    let bad_starts: Vec<(String, &str)> = vec![
        (
            r#"{"type":"start","sample_rate":16000,"#.to_string(),
            "a start that is not JSON",
        ),
        (missing_rate.to_string(), "a start without sample_rate"),
        (
            with(good.clone(), "channels", json!(3)).to_string(),
            "3 channels",
        ),
        (
            with(good.clone(), "sample_rate", json!(4000)).to_string(),
            "4 kHz",
        ),
        (
            with(good.clone(), "sample_rate", json!(96_000)).to_string(),
            "96 kHz",
        ),
        (
            with(good.clone(), "latency_ms", json!(100)).to_string(),
            "latency 100 ms",
        ),
        (
            with(good.clone(), "latency_ms", json!(6000)).to_string(),
            "latency 6000 ms",
        ),
    ];
    for (text, what) in &bad_starts {
        let mut session = WsSession::connect(&server, Auth::Header(&user.key)).await;
        session
            .send_text(text)
            .await
            .unwrap_or_else(|e| panic!("{what}: sending the start failed: {e}"));
        let error = loop {
            let Some(message) = session.next().await else {
                panic!("{what}: closed ({:?}) without an error", session.closed);
            };
            assert!(
                message["type"] != "ready",
                "{what}: refused, not ready: {message}"
            );
            if message["type"] == "error" {
                break message;
            }
        };
        assert!(
            error["code"].as_str().is_some_and(|c| !c.is_empty()),
            "{what}: the error has a code: {error}"
        );
        let closed = session.closing().await;
        assert!(
            matches!(closed.code, Some(1008 | 4400)),
            "{what}: a bad start closes with 1008 or 4400, got {closed:?}"
        );
    }

    for encoding in ["mp3", "pcm_u8"] {
        let what = format!("encoding {encoding:?}");
        let mut session = WsSession::connect(&server, Auth::Header(&user.key)).await;
        session
            .send_json(&with(good.clone(), "encoding", json!(encoding)))
            .await
            .unwrap_or_else(|e| panic!("{what}: sending the start failed: {e}"));
        session
            .expect_error("unsupported_encoding", &[1008, 4400], &what)
            .await;
    }

    let mut session = WsSession::connect(&server, Auth::Header(&user.key)).await;
    session
        .send_binary(&sample().pcm.slice(10.0, 0.5).s16le())
        .await
        .expect("send audio before start");
    session
        .expect_error("audio_before_start", &[1008], "audio before start")
        .await;

    let listing = server.list(&user, "").await;
    assert_eq!(
        listing["total"], 0,
        "refused sessions make no job: {listing:#}"
    );
    assert_eq!(
        server.balance(&user).await,
        PLENTY as i64,
        "refused sessions cost nothing"
    );
}

// ----- ends that are not `end` ----------------------------------------------------------------

#[tokio::test]
async fn oversized_frames_close_1009_and_the_audio_before_them_is_finalized() {
    let server = Server::start(&[]);
    let user = server.create_user(PLENTY);
    let pcm = sample().pcm;
    let before = pcm.slice(6.0, 8.0);

    // Just over the limit, and far over it (where a protocol layer may cut the frame off).
    for frame_bytes in [MAX_FRAME_BYTES + 2, 4 * MAX_FRAME_BYTES] {
        let what = format!("a frame of {frame_bytes} bytes");
        let mut session = WsSession::connect(&server, Auth::Header(&user.key)).await;
        let job_id = check_ready(&session.start(start_message(&pcm, "pcm_s16le")).await, None);
        let sent = session.send_audio(&before.s16le(), ODD_FRAME_BYTES).await;
        assert_eq!(sent, before.s16le().len(), "{what}: {}", session.summary());
        let huge: Vec<u8> = pcm.s16le().into_iter().cycle().take(frame_bytes).collect();
        // The send itself may fail if the server closes while the frame is still going out.
        let _ = session.send_binary(&huge).await;
        session
            .expect_error("frame_too_large", &[1009], &what)
            .await;

        let job = check_job(&server, &user, job_id, (16_000, 1), None).await;
        let duration = number(&job, "duration_seconds");
        assert!(
            (duration - before.seconds()).abs() <= DURATION_TOLERANCE_SECONDS,
            "{what}: job {job_id} holds the {} s sent before the oversized frame, no more and \
             no less; duration_seconds {duration}",
            before.seconds()
        );
    }
}

#[tokio::test]
async fn a_dropped_connection_still_finalizes_everything_received() {
    let server = Server::start(&[]);
    let user = server.create_user(PLENTY);
    let balance = server.balance(&user).await;
    let audio = sample().pcm.slice(0.0, 20.0);

    let mut session = WsSession::connect(&server, Auth::Header(&user.key)).await;
    let job_id = check_ready(
        &session.start(start_message(&audio, "pcm_s16le")).await,
        None,
    );
    let sent = session.send_audio(&audio.s16le(), ODD_FRAME_BYTES).await;
    assert_eq!(sent, audio.s16le().len(), "{}", session.summary());
    session.drop_connection();

    let job = check_job(&server, &user, job_id, (16_000, 1), None).await;
    let duration = number(&job, "duration_seconds");
    assert!(
        (duration - audio.seconds()).abs() <= DURATION_TOLERANCE_SECONDS,
        "job {job_id}: all {} s received before the drop are finalized; duration_seconds {duration}",
        audio.seconds()
    );
    let speakers = job["result"]["speakers"].as_array().map_or(0, Vec::len);
    assert!(
        speakers >= 2,
        "both speakers of the first 20 s are in the job: {job:#}"
    );
    let credits_used = job["credits_used"]
        .as_i64()
        .unwrap_or_else(|| panic!("credits_used should be an integer: {job}"));
    assert_eq!(credits_used, credits_for(duration), "job {job_id}: {job}");
    assert_eq!(
        server.balance(&user).await,
        balance - credits_used,
        "a dropped stream is charged what it used"
    );
}

// ----- isolation and credits -------------------------------------------------------------------

/// Streams `audio` to the end as `user`; returns (ready, completed, all messages).
pub async fn whole_stream(server: &Server, user: &User, audio: &Pcm) -> (Value, Value, Vec<Value>) {
    let mut session = WsSession::connect(server, Auth::Header(&user.key)).await;
    let ready = session.start(start_message(audio, "pcm_s16le")).await;
    let sent = session.send_audio(&audio.s16le(), ODD_FRAME_BYTES).await;
    assert_eq!(sent, audio.s16le().len(), "{}", session.summary());
    let completed = session.end().await;
    (ready, completed, session.received)
}

#[tokio::test]
async fn concurrent_sessions_of_two_users_stay_isolated() {
    let server = Server::start(&[]);
    let (alice, bob) = (server.create_user(PLENTY), server.create_user(PLENTY));
    let pcm = sample().pcm;
    let (alice_audio, bob_audio) = (pcm.slice(0.0, 12.0), pcm.slice(12.0, 18.0));

    let ((alice_ready, alice_done, alice_messages), (bob_ready, bob_done, bob_messages)) = tokio::join!(
        whole_stream(&server, &alice, &alice_audio),
        whole_stream(&server, &bob, &bob_audio)
    );
    let alice_job = check_ready(&alice_ready, None);
    let bob_job = check_ready(&bob_ready, None);
    assert_ne!(alice_job, bob_job, "two sessions, two jobs");
    assert_ne!(
        alice_ready["session_id"], bob_ready["session_id"],
        "two sessions, two session ids"
    );
    for (who, audio, ready, done, messages, job) in [
        (
            "alice",
            &alice_audio,
            &alice_ready,
            &alice_done,
            &alice_messages,
            alice_job,
        ),
        (
            "bob",
            &bob_audio,
            &bob_ready,
            &bob_done,
            &bob_messages,
            bob_job,
        ),
    ] {
        let events = Events::check(messages, audio.seconds());
        check_completed(done, &events, job, audio.seconds());
        assert!(
            messages
                .iter()
                .filter(|m| m["session_id"].is_string())
                .all(|m| m["session_id"] == ready["session_id"]),
            "{who} only gets messages of its own session"
        );
    }

    check_job(&server, &alice, alice_job, (16_000, 1), None).await;
    check_job(&server, &bob, bob_job, (16_000, 1), None).await;
    expect_not_found(&server, &alice, bob_job).await;
    expect_not_found(&server, &bob, alice_job).await;
    assert_eq!(
        listed_ids(&server.list(&alice, "").await),
        vec![alice_job],
        "alice lists only her job"
    );
    assert_eq!(
        listed_ids(&server.list(&bob, "").await),
        vec![bob_job],
        "bob lists only his job"
    );
}

#[tokio::test]
async fn running_out_of_credits_ends_the_stream_with_4402_and_finalizes_it() {
    let server = Server::start(&[]);
    let allowed_seconds = 10.0;
    let credits = credits_for(allowed_seconds);
    let user = server.create_user(credits as u64);
    let audio = sample().pcm;

    let mut session = WsSession::connect(&server, Auth::Header(&user.key)).await;
    let job_id = check_ready(
        &session.start(start_message(&audio, "pcm_s16le")).await,
        None,
    );
    // Sends stop being accepted once the server closes.
    session.send_audio(&audio.s16le(), ODD_FRAME_BYTES).await;
    session
        .expect_error(
            "credits_exhausted",
            &[4402],
            "30 s streamed with credits for 10 s",
        )
        .await;

    let job = server.wait_for_status(&user, job_id, "COMPLETED").await;
    assert_eq!(job["job_type"], "stream", "{job:#}");
    let duration = number(&job, "duration_seconds");
    assert!(
        duration <= allowed_seconds + 1e-6,
        "job {job_id}: the credits paid for {allowed_seconds} s, the job holds {duration} s"
    );
    assert!(
        duration >= allowed_seconds - 1.0,
        "job {job_id}: the stream should get (nearly) all {allowed_seconds} s it can pay for, \
         it holds {duration} s"
    );
    let credits_used = job["credits_used"]
        .as_i64()
        .unwrap_or_else(|| panic!("credits_used should be an integer: {job}"));
    assert!(
        credits_used <= credits,
        "job {job_id}: charged {credits_used} of {credits} credits"
    );
    let balance = server.balance(&user).await;
    assert!(balance >= 0, "the balance never goes negative: {balance}");
    assert_eq!(
        balance,
        credits - credits_used,
        "the balance drops by exactly credits_used"
    );
    check_job(&server, &user, job_id, (16_000, 1), None).await;
}

#[tokio::test]
async fn a_user_without_credits_cannot_start_a_stream() {
    let server = Server::start(&[]);
    let user = server.create_user(0);
    let mut session = WsSession::connect(&server, Auth::Header(&user.key)).await;
    session
        .send_json(&start_s16(16_000, 1))
        .await
        .expect("send start");
    session
        .expect_error("insufficient_credits", &[4402], "a start with 0 credits")
        .await;
    assert_eq!(server.balance(&user).await, 0, "nothing is charged");
    let listing = server.list(&user, "").await;
    assert_eq!(
        listing["total"], 0,
        "a refused start makes no job: {listing:#}"
    );
}

#[tokio::test]
async fn the_owner_can_watch_a_websocket_session_over_sse_and_websocket() {
    let server = Server::start(&[]);
    let user = server.create_user(PLENTY);
    let stranger = server.create_user(PLENTY);
    let audio = sample().pcm;
    let mut session = WsSession::connect(&server, Auth::Header(&user.key)).await;
    let ready = session.start(start_message(&audio, "pcm_s16le")).await;
    let session_id = ready["session_id"]
        .as_str()
        .expect("a session id")
        .to_owned();
    let feed = format!("/api/v1/speaker/stream/{session_id}/events");

    let http = reqwest::Client::new();
    let status = |response: reqwest::Result<reqwest::Response>| {
        response.expect("the events endpoint answers").status()
    };
    assert_eq!(status(http.get(server.url(&feed)).send().await), 401);
    let as_stranger = http.get(server.url(&feed)).with_key(&stranger).send().await;
    assert_eq!(status(as_stranger), 404, "another user's session");
    let unknown = "/api/v1/speaker/stream/no-such-session/events";
    assert_eq!(
        status(http.get(server.url(unknown)).with_key(&user).send().await),
        404
    );

    let (sse, ws) = watch_both(&server, &feed, &user.key).await;
    let sent = session.send_audio(&audio.s16le(), ODD_FRAME_BYTES).await;
    assert_eq!(sent, audio.s16le().len(), "{}", session.summary());
    let completed = session.end().await;
    for (what, watcher) in [("SSE", sse), ("WebSocket feed", ws)] {
        let messages = tokio::time::timeout(MESSAGE_TIMEOUT, watcher)
            .await
            .unwrap_or_else(|_| panic!("the {what} closes after completed"))
            .expect("the watcher task");
        check_feed(what, &messages, &session_id, &completed);
        let spoken = |messages: &[Value]| {
            messages
                .iter()
                .filter(|m| m["type"] == "speaker" && m["final"] == true)
                .count()
        };
        assert_eq!(
            spoken(&messages),
            spoken(&session.received),
            "{what} sees every final event the client saw"
        );
    }
}

/// Text messages are capped before they are parsed: an oversize `start` is refused, and
/// an oversize message mid-stream ends the session with what was received finalized.
#[tokio::test]
async fn oversize_text_messages_close_1009() {
    let server = Server::start(&[]);
    let user = server.create_user(PLENTY);
    let pcm = sample().pcm;
    let padding = " ".repeat(5_000);

    let mut session = WsSession::connect(&server, Auth::Header(&user.key)).await;
    let mut start = start_message(&pcm, "pcm_s16le").to_string();
    start.push_str(&padding);
    let _ = session.send_text(&start).await;
    let error = session
        .expect_error("message_too_large", &[1009], "a 5 kB start")
        .await;
    assert!(
        error["message"]
            .as_str()
            .unwrap_or_default()
            .contains("4096 bytes"),
        "the message names the limit: {error}"
    );

    let before = pcm.slice(6.0, 8.0);
    let mut session = WsSession::connect(&server, Auth::Header(&user.key)).await;
    let job_id = check_ready(&session.start(start_message(&pcm, "pcm_s16le")).await, None);
    let sent = session.send_audio(&before.s16le(), ODD_FRAME_BYTES).await;
    assert_eq!(sent, before.s16le().len(), "{}", session.summary());
    let _ = session
        .send_text(&format!("{{\"type\":\"keepalive\"}}{padding}"))
        .await;
    session
        .expect_error("message_too_large", &[1009], "a 5 kB keepalive")
        .await;
    let job = check_job(&server, &user, job_id, (16_000, 1), None).await;
    let duration = number(&job, "duration_seconds");
    assert!(
        (duration - before.seconds()).abs() <= DURATION_TOLERANCE_SECONDS,
        "the job holds the audio sent before the oversize message: {duration} s"
    );
}

/// A load balancer reads `/readyz`: 503 while the node holds `--live-max-sessions`
/// sessions, ready again once one ends.
#[tokio::test]
async fn readiness_is_503_while_the_node_is_full() {
    let server = Server::start(&["--live-max-sessions", "1"]);
    let user = server.create_user(PLENTY);
    let ready = || async {
        let response = server.get("/readyz").send().await.expect("GET /readyz");
        let status = response.status().as_u16();
        (status, response.json::<Value>().await.expect("readyz JSON"))
    };
    assert_eq!(ready().await.0, 200);
    let pcm = sample().pcm;
    let mut session = WsSession::connect(&server, Auth::Header(&user.key)).await;
    session.start(start_message(&pcm, "pcm_s16le")).await;
    let (status, body) = ready().await;
    assert_eq!(status, 503, "full: {body}");
    assert!(
        body["detail"].as_str().is_some_and(|d| d.contains("full")),
        "{body}"
    );
    session.send_audio(&pcm.slice(0.0, 2.0).s16le(), 3200).await;
    session.control("end").await;
    session.until("completed").await;
    // The slot is given back just after `completed` is sent.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (status, body) = ready().await;
        if status == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a session ended, the node takes streams again: {status} {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// `"exclusive": true` at start: the finished job's timeline has one speaker at a time.
#[tokio::test]
async fn an_exclusive_stream_finishes_with_one_speaker_at_a_time() {
    let server = Server::start(&[]);
    let user = server.create_user(PLENTY);
    let pcm = sample().pcm;
    let mut session = WsSession::connect(&server, Auth::Header(&user.key)).await;
    session
        .start(with(
            start_message(&pcm, "pcm_s16le"),
            "exclusive",
            json!(true),
        ))
        .await;
    session.send_audio(&pcm.s16le(), 32_000).await;
    session.control("end").await;
    let completed = session.until("completed").await;
    let rttm = completed["rttm"].as_str().expect("the completed RTTM");
    let turns = crate::audio::parse_rttm(rttm, "the exclusive stream's RTTM");
    assert!(!turns.is_empty(), "{completed}");
    for (i, a) in turns.iter().enumerate() {
        for b in &turns[i + 1..] {
            let shared = (a.start + a.duration).min(b.start + b.duration) - a.start.max(b.start);
            assert!(
                a.label == b.label || shared < 1e-3,
                "two speakers at once: {a:?} {b:?}"
            );
        }
    }
}
