//! The OpenAPI 3.1 description of the API, served at `/openapi.json`. The
//! live WebSocket and WHIP are described in prose (OpenAPI has no WebSocket
//! or WebRTC model); the README's "Live streaming" section is the protocol.

use serde_json::{Value, json};

/// The document; built once per request, it is small.
pub fn document() -> Value {
    let job_id =
        json!([{ "name": "id", "in": "path", "required": true, "schema": { "type": "integer" } }]);
    let errors = |codes: &[&str]| -> Value {
        codes
            .iter()
            .map(|code| {
                (
                    (*code).to_owned(),
                    json!({ "$ref": format!("#/components/responses/E{code}") }),
                )
            })
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    let job_response = json!({ "description": "The job", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Job" } } } });
    let submit = |kind: &str, summary: &str| {
        let mut responses = errors(&["400", "401", "402", "413", "422", "429"]);
        responses["200"] = job_response.clone();
        json!({
            "summary": summary,
            "parameters": speaker_parameters(),
            "requestBody": {
                "required": true,
                "content": {
                    "multipart/form-data": { "schema": { "type": "object", "required": ["file"], "properties": {
                        "file": { "type": "string", "format": "binary" },
                        "num_speakers": { "type": "integer", "minimum": 1 },
                        "min_speakers": { "type": "integer", "minimum": 1 },
                        "max_speakers": { "type": "integer", "minimum": 1 },
                        "webhook_url": { "type": "string", "format": "uri", "description": "Receives job.completed, job.failed and job.cancelled events (see /api/v1/webhooks/secret)" },
                        "exclusive": { "type": "boolean", "default": false, "description": "At most one speaker at a time in the timeline and tracks" } } } },
                    "application/x-www-form-urlencoded": { "schema": { "type": "object", "required": ["url"], "properties": {
                        "url": { "type": "string", "format": "uri" },
                        "num_speakers": { "type": "integer", "minimum": 1 },
                        "webhook_url": { "type": "string", "format": "uri" },
                        "exclusive": { "type": "boolean", "default": false } } } }
                }
            },
            "responses": responses,
            "x-job-type": kind,
        })
    };
    let with = |mut responses: Value, code: &str, body: Value| {
        responses[code] = body;
        responses
    };
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "whospoke",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Speaker diarization and extraction, wire-compatible with AudioPod's Speaker Extraction API.",
        },
        "security": [{ "ApiKey": [] }, { "Bearer": [] }],
        "paths": {
            "/api/v1/speaker/extract": { "post": submit("extraction", "Start a speaker extraction (tracks, RTTM, statistics)") },
            "/api/v1/speaker/diarize": { "post": submit("diarization", "Start a diarization (RTTM and statistics, no tracks)") },
            "/api/v1/speaker/jobs": { "get": {
                "summary": "List the caller's jobs, newest first",
                "parameters": [
                    { "name": "job_type", "in": "query", "schema": { "enum": ["extraction", "diarization", "stream"] } },
                    { "name": "status", "in": "query", "schema": { "enum": ["PENDING", "PROCESSING", "COMPLETED", "FAILED", "CANCELLED"] } },
                    { "name": "skip", "in": "query", "schema": { "type": "integer", "minimum": 0, "default": 0 } },
                    { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 200, "default": 50 } }
                ],
                "responses": with(errors(&["400", "401", "429"]), "200", json!({ "description": "A page of jobs", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/JobList" } } } })),
            } },
            "/api/v1/speaker/jobs/{id}": {
                "get": { "summary": "Job status and result", "parameters": job_id, "responses": with(errors(&["401", "404", "429"]), "200", job_response.clone()) },
                "delete": { "summary": "Delete a job and its files", "parameters": job_id, "responses": with(errors(&["401", "404", "429"]), "204", json!({ "description": "Deleted" })) },
            },
            "/api/v1/jobs/{id}": { "get": { "summary": "Job status and result (the SDK's polling path)", "parameters": job_id, "responses": with(errors(&["401", "404", "429"]), "200", job_response.clone()) } },
            "/api/v1/speaker/jobs/{id}/retry": { "post": { "summary": "Re-queue a FAILED job", "parameters": job_id, "responses": with(errors(&["400", "401", "402", "404", "429"]), "200", job_response.clone()) } },
            "/api/v1/speaker/jobs/{id}/cancel": { "post": { "summary": "Cancel a PENDING or PROCESSING job; its reservation is refunded", "parameters": job_id, "responses": with(errors(&["400", "401", "404", "429"]), "200", job_response) } },
            "/api/v1/webhooks/secret": {
                "get": { "summary": "The key that signs your webhooks: X-AudioPod-Signature = sha256=hex(HMAC-SHA256(secret, \"{X-AudioPod-Timestamp}.{raw body}\"))", "responses": with(errors(&["401", "429"]), "200", json!({ "description": "The secret", "content": { "application/json": { "schema": { "type": "object", "required": ["secret"], "properties": { "secret": { "type": "string" } } } } } })) },
                "post": { "summary": "Replace the webhook secret", "responses": with(errors(&["401", "429"]), "200", json!({ "description": "The new secret", "content": { "application/json": { "schema": { "type": "object", "required": ["secret"], "properties": { "secret": { "type": "string" } } } } } })) },
            },
            "/api/v1/webhooks/deliveries": { "get": {
                "summary": "Your webhook deliveries, newest first (status pending, delivered, failed or stopped)",
                "parameters": [
                    { "name": "skip", "in": "query", "schema": { "type": "integer", "minimum": 0, "default": 0 } },
                    { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 200, "default": 50 } }
                ],
                "responses": with(errors(&["401", "429"]), "200", json!({ "description": "A page of deliveries", "content": { "application/json": {} } })),
            } },
            "/api/v1/webhooks/deliveries/{id}/redeliver": { "post": {
                "summary": "Send a delivery again now",
                "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "integer" } }],
                "responses": with(errors(&["401", "404", "429"]), "200", json!({ "description": "The delivery, pending again", "content": { "application/json": {} } })),
            } },
            "/api/v1/files/{job_id}/{name}": { "get": {
                "summary": "Download a job file through a signed, expiring link (supports Range)",
                "security": [],
                "parameters": [
                    { "name": "job_id", "in": "path", "required": true, "schema": { "type": "integer" } },
                    { "name": "name", "in": "path", "required": true, "schema": { "type": "string" } },
                    { "name": "expires", "in": "query", "required": true, "schema": { "type": "integer" } },
                    { "name": "signature", "in": "query", "required": true, "schema": { "type": "string" } },
                    { "name": "Range", "in": "header", "schema": { "type": "string" } }
                ],
                "responses": with(with(errors(&["403", "404", "410", "416"]), "200", json!({ "description": "The file" })), "206", json!({ "description": "Part of the file" })),
            } },
            "/api/v1/speaker/stream": { "get": {
                "summary": "Live diarization over a WebSocket (upgrade)",
                "description": "Upgrade to a WebSocket. Authenticate with X-API-Key or Bearer, or ?api_key=, or ?token= from /api/v1/speaker/stream/token. Send {\"type\":\"start\",\"sample_rate\",\"channels\",\"encoding\":\"pcm_s16le\"|\"pcm_f32le\"|\"opus\",\"num_speakers\"?,\"max_speakers\"?,\"latency_ms\"?,\"extract\"?,\"name\"?,\"webhook_url\"?,\"exclusive\"?}, then binary audio; {\"type\":\"keepalive\"|\"finalize\"|\"end\"} control it. The server sends ready, speaker, relabel, usage, warning, error and completed messages as JSON text. The session becomes a job of type stream.",
                "parameters": [
                    { "name": "api_key", "in": "query", "schema": { "type": "string" } },
                    { "name": "token", "in": "query", "schema": { "type": "string" } }
                ],
                "responses": { "101": { "description": "Switching to the WebSocket protocol" } },
            } },
            "/api/v1/speaker/stream/{session_id}/events": { "get": {
                "summary": "Follow one of your running sessions: WebSocket on upgrade, else Server-Sent Events",
                "description": "ready, then every event of the session (speaker, relabel, usage, warning), then completed; then the feed closes. Accepts ?api_key= and ?token= for EventSource.",
                "parameters": [
                    { "name": "session_id", "in": "path", "required": true, "schema": { "type": "string" } },
                    { "name": "api_key", "in": "query", "schema": { "type": "string" } },
                    { "name": "token", "in": "query", "schema": { "type": "string" } }
                ],
                "responses": with(errors(&["401", "404", "429"]), "200", json!({ "description": "The feed", "content": { "text/event-stream": {} } })),
            } },
            "/api/v1/speaker/whip": { "post": {
                "summary": "WebRTC ingest (WHIP, RFC 9725): an SDP offer with one Opus audio track",
                "parameters": [
                    { "name": "num_speakers", "in": "query", "schema": { "type": "integer", "minimum": 1 } },
                    { "name": "max_speakers", "in": "query", "schema": { "type": "integer", "minimum": 1 } },
                    { "name": "latency_ms", "in": "query", "schema": { "type": "integer", "minimum": 500, "maximum": 5000 } },
                    { "name": "extract", "in": "query", "schema": { "type": "boolean" } },
                    { "name": "name", "in": "query", "schema": { "type": "string" } },
                    { "name": "webhook_url", "in": "query", "schema": { "type": "string", "format": "uri" } },
                    { "name": "exclusive", "in": "query", "schema": { "type": "boolean" } }
                ],
                "requestBody": { "required": true, "content": { "application/sdp": { "schema": { "type": "string" } } } },
                "responses": with(errors(&["400", "401", "402", "429"]), "201", json!({ "description": "The SDP answer; Location is the session", "content": { "application/sdp": { "schema": { "type": "string" } } } })),
            } },
            "/api/v1/speaker/whip/{session_id}": {
                "patch": {
                    "summary": "Trickle ICE candidates",
                    "parameters": [{ "name": "session_id", "in": "path", "required": true, "schema": { "type": "string" } }],
                    "requestBody": { "required": true, "content": { "application/trickle-ice-sdpfrag": { "schema": { "type": "string" } } } },
                    "responses": with(errors(&["400", "401", "404"]), "204", json!({ "description": "Candidates added" })),
                },
                "delete": {
                    "summary": "End the session; the answer is its completed message",
                    "parameters": [{ "name": "session_id", "in": "path", "required": true, "schema": { "type": "string" } }],
                    "responses": with(errors(&["401", "404"]), "200", json!({ "description": "The completed message" })),
                },
            },
            "/api/v1/speaker/stream/token": { "post": {
                "summary": "A single-use token for opening a stream with ?token= (browsers cannot set headers)",
                "responses": with(errors(&["401", "429"]), "200", json!({ "description": "The token", "content": { "application/json": { "schema": { "type": "object", "required": ["token", "expires_in"], "properties": { "token": { "type": "string" }, "expires_in": { "type": "integer", "description": "seconds" } } } } } })),
            } },
            "/api/v1/credits": { "get": { "summary": "The caller's credit balance", "responses": with(errors(&["401", "429"]), "200", json!({ "description": "Balance", "content": { "application/json": { "schema": { "type": "object", "properties": { "user_id": { "type": "string" }, "balance": { "type": "integer" } } } } } })) } },
            "/healthz": { "get": { "summary": "Liveness", "security": [], "responses": { "200": { "description": "Alive" } } } },
            "/readyz": { "get": { "summary": "Readiness", "security": [], "responses": { "200": { "description": "Ready" }, "503": { "description": "Not ready" } } } },
            "/metrics": { "get": { "summary": "Prometheus metrics", "security": [], "responses": { "200": { "description": "Prometheus text format" } } } },
        },
        "components": {
            "securitySchemes": {
                "ApiKey": { "type": "apiKey", "in": "header", "name": "X-API-Key" },
                "Bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT or API key" },
            },
            "responses": error_responses(),
            "schemas": {
                "Error": { "type": "object", "required": ["detail"], "properties": { "detail": { "type": "string" } } },
                "Job": { "type": "object", "required": ["id", "job_type", "status", "created_at", "user_id", "task_id"], "properties": {
                    "id": { "type": "integer" },
                    "job_type": { "enum": ["extraction", "diarization", "stream"] },
                    "status": { "enum": ["PENDING", "PROCESSING", "COMPLETED", "FAILED"] },
                    "created_at": { "type": "string", "format": "date-time" },
                    "updated_at": { "type": "string", "format": "date-time" },
                    "completed_at": { "type": ["string", "null"], "format": "date-time" },
                    "user_id": { "type": "string", "format": "uuid" },
                    "task_id": { "type": "string", "format": "uuid" },
                    "filename": { "type": "string" },
                    "display_name": { "type": "string" },
                    "error_message": { "type": ["string", "null"] },
                    "duration_seconds": { "type": ["number", "null"] },
                    "num_speakers": { "type": ["integer", "null"] },
                    "credits_used": { "type": ["integer", "null"] },
                    "result": { "oneOf": [{ "type": "null" }, { "$ref": "#/components/schemas/Result" }] },
                } },
                "Result": { "type": "object", "properties": {
                    "speakers": { "type": "array", "items": { "type": "object", "properties": {
                        "id": { "type": "integer" }, "label": { "type": "string" },
                        "audio_path": { "type": "string" }, "download_url": { "type": "string", "format": "uri" },
                        "audio_stats": { "type": "object", "properties": { "rms_db": { "type": "number" }, "peak": { "type": "number" } } },
                        "stats": { "type": "object" } } } },
                    "files": { "type": "array", "items": { "type": "object", "properties": {
                        "type": { "enum": ["audio", "rttm"] }, "speaker": { "type": ["string", "null"] },
                        "path": { "type": "string" }, "download_url": { "type": "string", "format": "uri" } } } },
                    "rttm_path": { "type": "string" },
                    "segments": { "type": "array", "items": { "type": "object", "properties": {
                        "speaker": { "type": "string" }, "start": { "type": "number" }, "end": { "type": "number" } } } },
                    "num_speakers": { "type": "integer" },
                    "duration_seconds": { "type": "number" },
                    "credits_used": { "type": "integer" },
                } },
                "JobList": { "type": "object", "properties": {
                    "items": { "type": "array", "items": { "$ref": "#/components/schemas/Job" } },
                    "total": { "type": "integer" },
                    "hasMore": { "type": "boolean" },
                } },
            },
        },
    })
}

fn speaker_parameters() -> Value {
    ["num_speakers", "min_speakers", "max_speakers"]
        .iter()
        .map(|name| json!({ "name": name, "in": "query", "schema": { "type": "integer", "minimum": 1 } }))
        .collect()
}

fn error_responses() -> Value {
    [
        ("400", "Invalid input"),
        ("401", "Missing or invalid credentials"),
        ("402", "Insufficient credits"),
        ("403", "Invalid download signature"),
        ("404", "Not found, or another user's"),
        ("410", "Download link expired"),
        ("413", "Upload too large"),
        ("416", "Range not satisfiable"),
        ("422", "The file cannot be decoded"),
        ("429", "Rate limit exceeded"),
    ]
    .iter()
    .map(|(code, description)| {
        (
            format!("E{code}"),
            json!({ "description": description, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } }),
        )
    })
    .collect::<serde_json::Map<_, _>>()
    .into()
}
