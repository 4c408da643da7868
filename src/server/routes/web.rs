//! The browser page (`clients/web`), embedded in the binary so it works offline from a
//! single file. No authentication: the page asks for an API key and calls the API itself.
//!
//! For work on the page, `WHOSPOKE_WEB_DIR=clients/web` serves the same files from disk
//! instead, read at each request, so a change needs no rebuild.

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::server::AppState;

/// A file of the page: its URL path, its name in `clients/web`, its type and embedded body.
struct Asset {
    path: &'static str,
    file: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

static ASSETS: [Asset; 4] = [
    Asset {
        path: "/",
        file: "index.html",
        content_type: HTML,
        body: include_str!("../../../clients/web/index.html"),
    },
    Asset {
        path: "/app.js",
        file: "app.js",
        content_type: JS,
        body: include_str!("../../../clients/web/app.js"),
    },
    Asset {
        path: "/worklet.js",
        file: "worklet.js",
        content_type: JS,
        body: include_str!("../../../clients/web/worklet.js"),
    },
    Asset {
        path: "/style.css",
        file: "style.css",
        content_type: CSS,
        body: include_str!("../../../clients/web/style.css"),
    },
];

/// `GET` routes for every file of the page.
pub fn routes() -> Router<AppState> {
    ASSETS.iter().fold(Router::new(), |router, asset| {
        router.route(asset.path, get(move || serve(asset)))
    })
}

/// The URL paths of the page's files.
pub fn paths() -> impl Iterator<Item = &'static str> {
    ASSETS.iter().map(|asset| asset.path)
}

async fn serve(asset: &'static Asset) -> Response {
    let body = match std::env::var_os("WHOSPOKE_WEB_DIR") {
        None => asset.body.to_owned(),
        Some(dir) => {
            match tokio::fs::read_to_string(std::path::Path::new(&dir).join(asset.file)).await {
                Ok(text) => text,
                Err(error) => {
                    return (
                        StatusCode::NOT_FOUND,
                        format!("WHOSPOKE_WEB_DIR: {}: {error}", asset.file),
                    )
                        .into_response();
                }
            }
        }
    };
    (
        [
            (header::CONTENT_TYPE, asset.content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}
