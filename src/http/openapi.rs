//! `GET /openapi.json`: the OpenAPI 3.1 document of the HTTP API, generated from the
//! handlers' `#[utoipa::path]` attributes and the types' `ToSchema` derives, so that it
//! cannot drift from the code. `tests/it/openapi.rs` checks real answers against it.
//!
//! Each route module registers its handlers with `utoipa_axum::routes!`, which adds the
//! route and its path to the document together (`http/mod.rs` merges them); this file
//! holds what the whole document shares: its description, the error bodies, the signature
//! headers. It imports no route module, so route modules may use its types.

use super::AppState;
use crate::signing::{HEADER_CLIENT, HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP};
use axum::Router;
use axum::http::header;
use axum::routing::get;
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityRequirement, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

const DESCRIPTION: &str = "\
Just-in-time approval of risky actions: a client asks, people approve or deny in Slack \
(or a policy decides), and the client waits for the decision.

Every `/v1` request is signed with the client's secret as in the Standard Webhooks \
scheme, with four headers that go together: `greenlight-client` (the client id), \
`webhook-id` (unique per request; the idempotency key of `POST /v1/actions`), \
`webhook-timestamp` (unix seconds, at most 300 s off) and `webhook-signature` \
(`v1,` + base64 HMAC-SHA256, space-separated when several). The signed content is \
`{webhook-id}.{webhook-timestamp}.{content}`, where `content` is the raw body when there \
is one and `{METHOD} {path-and-query}` otherwise. A `webhook-id` may not be reused on \
any request but `POST /v1/actions`, whose repeats are idempotent.";

/// What the whole API document shares; the paths, and the schemas they use, are collected
/// from the route modules (see [`document`]).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Greenlight",
        version = env!("CARGO_PKG_VERSION"),
        description = DESCRIPTION
    ),
    components(schemas(ErrorBody, ErrorCode)),
    tags(
        (name = "actions", description = "Pending actions and their decisions"),
        (name = "grants", description = "Grants: the signed tokens that approved actions carry"),
        (name = "audit", description = "The hash-chained audit trail"),
        (name = "admin", description = "Operating the running server (role `admin`)"),
        (name = "health", description = "Liveness and readiness probes (unsigned)"),
    )
)]
pub struct ApiDoc;

/// The document as served: `collected` (this file's [`ApiDoc`] with the routes' paths
/// merged in) with the signature headers required on every `/v1` operation.
pub fn document(mut collected: utoipa::openapi::OpenApi) -> String {
    SignedRequests.modify(&mut collected);
    collected
        .to_json()
        .expect("the OpenAPI document serialises")
}

/// Serves `document`, serialised once when the routes are built.
pub fn router(document: String) -> Router<AppState> {
    let document = bytes::Bytes::from(document);
    Router::new().route(
        "/openapi.json",
        get(move || {
            let document = document.clone();
            async move { ([(header::CONTENT_TYPE, "application/json")], document) }
        }),
    )
}

// The error body and codes are the client crate's, which every part of Greenlight answers
// with; the document declares the codes of `ErrorCode::API`.
pub use crate::error::{ErrorBody, ErrorCode};

/// The errors any signed `/v1` request may get, whatever the route.
#[allow(dead_code)]
#[derive(utoipa::IntoResponses)]
pub enum SignedErrors {
    /// Invalid request
    #[response(status = 400)]
    Invalid(ErrorBody),
    /// Missing or wrong signature, unknown client, stale timestamp, or a reused `webhook-id`
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// Body over 64 KiB
    #[response(status = 413)]
    PayloadTooLarge(ErrorBody),
    /// A non-empty body that is not JSON
    #[response(status = 415)]
    UnsupportedMediaType(ErrorBody),
    /// The store cannot be reached; nothing was changed or approved
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// The only outcomes a break-glass decision may set (the service refuses the others).
#[allow(dead_code)]
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum BreakGlassOutcome {
    Approved,
    Denied,
}

/// `GET /.well-known/jwks.json`, built as JSON by the grant keys (`src/grants/keys.rs`).
#[allow(dead_code)]
#[derive(ToSchema)]
pub struct Jwks {
    /// The current key, then the previous one during a rotation.
    keys: Vec<Jwk>,
}

/// An Ed25519 public key (RFC 8037).
#[allow(dead_code)]
#[derive(ToSchema)]
pub struct Jwk {
    #[schema(pattern = "^OKP$")]
    kty: String,
    #[schema(pattern = "^Ed25519$")]
    crv: String,
    /// The public key, base64url without padding.
    #[schema(pattern = "^[A-Za-z0-9_-]+$")]
    x: String,
    kid: String,
    #[schema(pattern = "^EdDSA$")]
    alg: String,
    #[schema(rename = "use", pattern = "^sig$")]
    use_: String,
}

/// `true`, and nothing else: for a `valid` flag that tells two answers apart.
pub fn always_true() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Boolean)
        .enum_values(Some([true]))
        .build()
}

/// `false`, and nothing else.
pub fn always_false() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Boolean)
        .enum_values(Some([false]))
        .build()
}

/// The signature headers: one security scheme each, all required together on every
/// `/v1` operation (OpenAPI has no scheme for an HMAC over the request).
struct SignedRequests;

const SIGNATURE_HEADERS: [(&str, &str); 4] = [
    (
        HEADER_CLIENT,
        "The client id, as declared in the policy file.",
    ),
    (
        HEADER_ID,
        "Unique per request; the idempotency key of `POST /v1/actions`.",
    ),
    (
        HEADER_TIMESTAMP,
        "Unix seconds; at most 300 s from the server's clock.",
    ),
    (
        HEADER_SIGNATURE,
        "`v1,<base64 HMAC-SHA256 of {webhook-id}.{webhook-timestamp}.{content}>`, \
         space-separated when several (secret rotation).",
    ),
];

impl Modify for SignedRequests {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        for (name, description) in SIGNATURE_HEADERS {
            components.add_security_scheme(
                name,
                SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                    name,
                    description,
                ))),
            );
        }
        let all_four = SIGNATURE_HEADERS
            .iter()
            .fold(SecurityRequirement::default(), |req, (name, _)| {
                req.add(*name, Vec::<String>::new())
            });
        for (path, item) in doc.paths.paths.iter_mut() {
            if !path.starts_with("/v1/") {
                continue;
            }
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
                &mut item.head,
                &mut item.options,
                &mut item.trace,
            ]
            .into_iter()
            .flatten()
            {
                op.security = Some(vec![all_four.clone()]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::error::ApiError;
    use axum::response::IntoResponse;

    /// Every error the API can answer has a code the document declares.
    #[tokio::test]
    async fn every_api_error_code_is_in_the_schema() {
        let errors = [
            ApiError::Invalid("x".into()),
            ApiError::Unauthorized("x"),
            ApiError::Forbidden("x".into()),
            ApiError::NotFound("x".into()),
            ApiError::Conflict("x".into()),
            ApiError::PayloadTooLarge,
            ApiError::UnsupportedMediaType,
            ApiError::RequesterUnverifiable("x".into()),
            ApiError::WindowNotAllowed("x".into()),
            ApiError::TooManyPending("x".into()),
            ApiError::Unavailable,
            ApiError::Internal(anyhow::anyhow!("x")),
        ];
        for error in errors {
            let response = error.into_response();
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            let body: ErrorBody = serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("{status}: {e}: {}", String::from_utf8_lossy(&bytes)));
            let expected = match status.as_u16() {
                422 if body.error.code == ErrorCode::WindowNotAllowed => {
                    ErrorCode::WindowNotAllowed
                }
                400 => ErrorCode::InvalidRequest,
                401 => ErrorCode::Unauthorized,
                403 => ErrorCode::Forbidden,
                404 => ErrorCode::NotFound,
                409 => ErrorCode::Conflict,
                413 => ErrorCode::PayloadTooLarge,
                415 => ErrorCode::UnsupportedMediaType,
                422 => ErrorCode::RequesterUnverifiable,
                429 => ErrorCode::TooManyPending,
                503 => ErrorCode::Unavailable,
                _ => ErrorCode::Internal,
            };
            assert_eq!(body.error.code, expected, "{status}");
            assert!(ErrorCode::API.contains(&body.error.code), "{status}");
        }
    }

    #[test]
    fn the_document_is_openapi_3_1_and_signs_every_v1_operation() {
        let doc: serde_json::Value =
            serde_json::from_str(&document(super::super::documented().1)).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let security = &op["security"];
                if path.starts_with("/v1/") {
                    assert_eq!(
                        security[0].as_object().map(|o| o.len()),
                        Some(4),
                        "{method} {path}"
                    );
                } else {
                    assert!(security.is_null(), "{method} {path}");
                }
            }
        }
    }
}
