//! The OpenAPI 3.1 description of the API, served at `/openapi.json`.
//!
//! It is generated: every API route is added with `utoipa-axum`'s `routes!`,
//! which records the handler's `#[utoipa::path]` beside the route, so the
//! document and the router cannot disagree. Statuses a middleware answers
//! with (401, 429, 414 …) are added here, to the routes it is layered over.
//! The live WebSocket and WHIP routes are described as their HTTP exchanges
//! (upgrade, SDP offer → answer); the README's "Live streaming" section has
//! their messages.

use axum::http::StatusCode;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, HeaderBuilder, ObjectBuilder, OpenApi, Ref, ResponseBuilder, Type,
};
use utoipa::{Modify, OpenApi as _};
use utoipa_axum::router::OpenApiRouter;

use super::error::ErrorBody;

/// The parts of the document no route carries: title, security schemes, the error schema.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "whospoke",
        description = "Speaker diarization and extraction, wire-compatible with AudioPod's Speaker Extraction API."
    ),
    components(schemas(ErrorBody)),
    security(("ApiKey" = []), ("Bearer" = [])),
    modifiers(&SecuritySchemes)
)]
struct Base;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "ApiKey",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
        components.add_security_scheme(
            "Bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT or API key")
                    .build(),
            ),
        );
    }
}

/// An empty router carrying the document's base.
pub fn base<S: Clone + Send + Sync + 'static>() -> OpenApiRouter<S> {
    OpenApiRouter::with_openapi(Base::openapi())
}

/// An error status a middleware answers with.
#[derive(Debug, Clone, Copy)]
pub struct Refusal {
    pub status: StatusCode,
    pub description: &'static str,
    /// Rate limits say when to come back.
    pub retry_after: bool,
}

pub const UNAUTHORIZED: Refusal = Refusal {
    status: StatusCode::UNAUTHORIZED,
    description: "Missing or invalid credentials",
    retry_after: false,
};
pub const RATE_LIMITED: Refusal = Refusal {
    status: StatusCode::TOO_MANY_REQUESTS,
    description: "Rate limit exceeded (per caller and endpoint, or per client address)",
    retry_after: true,
};
pub const URI_TOO_LONG: Refusal = Refusal {
    status: StatusCode::URI_TOO_LONG,
    description: "The query string is too long",
    retry_after: false,
};
pub const HEADERS_TOO_LARGE: Refusal = Refusal {
    status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
    description: "The request headers are too large",
    retry_after: false,
};
pub const INTERNAL: Refusal = Refusal {
    status: StatusCode::INTERNAL_SERVER_ERROR,
    description: "Internal error (details are in the server's log)",
    retry_after: false,
};

/// Adds `refusals` to every operation `router` has so far: the statuses of
/// a middleware layered over exactly these routes. A route's own answer
/// with the same status keeps its description.
pub fn refused_with<S: Clone + Send + Sync + 'static>(
    mut router: OpenApiRouter<S>,
    refusals: &[Refusal],
) -> OpenApiRouter<S> {
    for item in router.get_openapi_mut().paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ];
        for operation in operations.into_iter().flatten() {
            add_refusals(operation, refusals);
        }
    }
    router
}

fn add_refusals(operation: &mut Operation, refusals: &[Refusal]) {
    for refusal in refusals {
        let mut response = ResponseBuilder::new()
            .description(refusal.description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Error")))
                    .build(),
            );
        if refusal.retry_after {
            let seconds = ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0));
            response = response.header(
                "Retry-After",
                HeaderBuilder::new()
                    .schema(Some(seconds))
                    .description(Some("Seconds to wait before trying again"))
                    .build(),
            );
        }
        operation
            .responses
            .responses
            .entry(refusal.status.as_u16().to_string())
            .or_insert_with(|| response.build().into());
    }
}
