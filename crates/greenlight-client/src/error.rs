//! The one error vocabulary: every error Greenlight answers, from the server, the
//! [`RequireApproval`](crate::middleware::RequireApproval) layer or `greenlight proxy`, is
//! `{"error": {"code": ..., "message": ...}}` with a code from [`ErrorCode`], and the
//! client reads it back into the same type.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// An error code, serialised in `snake_case`. A code this version does not know (a newer
/// server's) is kept as [`ErrorCode::Other`], so a client never fails to read an error.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 400: the request is malformed or a field is invalid.
    InvalidRequest,
    /// 401: missing or wrong signature, unknown client, stale timestamp, reused
    /// `webhook-id`; from a gate, a caller it cannot identify.
    Unauthorized,
    /// 403: the client's roles do not allow it; from a gate, not approved.
    Forbidden,
    /// 404
    NotFound,
    /// 409: a state that does not allow the change; from a gate, an approval already used.
    Conflict,
    /// 413
    PayloadTooLarge,
    /// 415: a non-empty body that is not JSON.
    UnsupportedMediaType,
    /// 422: the rule forbids self-approval and the requester has neither `email` nor
    /// `slack_user_id`.
    RequesterUnverifiable,
    /// 422: the request asks for an access window and the matching rule has no
    /// `max_window`.
    WindowNotAllowed,
    /// 429: declared by the API document; no part of this version answers it.
    RateLimited,
    /// 429: the client already has its `max_pending` actions pending.
    TooManyPending,
    /// 503: the server's store cannot be reached; nothing was changed or approved. From
    /// a gate, Greenlight cannot be reached or too many requests are held (503); from
    /// `greenlight proxy`, the upstream cannot be reached or did not answer (502, 504).
    Unavailable,
    /// 500: logged by the server with its cause, answered with nothing of it.
    Internal,
    /// 504 from a gate: no decision in time; the action stays pending.
    Pending,
    /// From a gate, an extractor's refusal with a status other than 400, 401, 403 or 413.
    Error,
    /// Set by the client: a success status whose body is not what was expected.
    BadResponse,
    /// Set by the client: an error status whose body is not an error body.
    HttpError,
    /// A code this version does not know.
    Other(String),
}

impl ErrorCode {
    /// The codes the server's API document declares, in its order.
    pub const API: [ErrorCode; 13] = [
        ErrorCode::InvalidRequest,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::Conflict,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::RequesterUnverifiable,
        ErrorCode::WindowNotAllowed,
        ErrorCode::RateLimited,
        ErrorCode::TooManyPending,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
    ];

    pub fn as_str(&self) -> &str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::RequesterUnverifiable => "requester_unverifiable",
            ErrorCode::WindowNotAllowed => "window_not_allowed",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::TooManyPending => "too_many_pending",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
            ErrorCode::Pending => "pending",
            ErrorCode::Error => "error",
            ErrorCode::BadResponse => "bad_response",
            ErrorCode::HttpError => "http_error",
            ErrorCode::Other(code) => code,
        }
    }

    /// The code of `s`; [`ErrorCode::Other`] when this version does not know it.
    pub fn parse(s: &str) -> Self {
        // The codes only a gate or the client itself sets.
        const OTHERS: [ErrorCode; 4] = [
            ErrorCode::Pending,
            ErrorCode::Error,
            ErrorCode::BadResponse,
            ErrorCode::HttpError,
        ];
        ErrorCode::API
            .iter()
            .chain(&OTHERS)
            .find(|c| c.as_str() == s)
            .cloned()
            .unwrap_or_else(|| ErrorCode::Other(s.to_owned()))
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<str>::deserialize(d)?;
        Ok(ErrorCode::parse(&s))
    }
}

// `{"error": {"code", "message"}}`, built with `ErrorBody::new`, read with
// `ErrorBody::parse`. (The doc comments are the API document's descriptions.)
/// The body of every error answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    /// For people; may change between versions.
    pub message: String,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            error: ErrorDetail {
                code,
                message: message.into(),
            },
        }
    }

    /// The body as JSON, to add fields beside `error` (a gate adds the `action`).
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("an error body serialises")
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an error body serialises")
    }

    /// Reads an error answer; `None` when `bytes` is not an error body. Fields beside
    /// `error` (a gate's `action`) are allowed and ignored.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        #[derive(Deserialize)]
        struct Lenient {
            error: Detail,
        }
        #[derive(Deserialize)]
        struct Detail {
            code: ErrorCode,
            message: String,
        }
        let Lenient { error } = serde_json::from_slice(bytes).ok()?;
        Some(Self::new(error.code, error.message))
    }
}

/// The API document declares the codes the server answers as a string enumeration.
#[cfg(feature = "openapi")]
mod schema {
    use super::ErrorCode;
    use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
    use utoipa::openapi::{RefOr, schema::SchemaType};

    impl utoipa::PartialSchema for ErrorCode {
        fn schema() -> RefOr<Schema> {
            let codes = ErrorCode::API.iter().map(|c| c.as_str().to_owned());
            ObjectBuilder::new()
                .schema_type(SchemaType::Type(Type::String))
                .description(Some(
                    "The API's error codes (and `internal`, a 500 whose message says nothing).",
                ))
                .enum_values(Some(codes))
                .into()
        }
    }

    impl utoipa::ToSchema for ErrorCode {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_known_code_reads_back_as_itself() {
        for code in ErrorCode::API.iter().chain(&[
            ErrorCode::Pending,
            ErrorCode::Error,
            ErrorCode::BadResponse,
            ErrorCode::HttpError,
        ]) {
            assert_eq!(&ErrorCode::parse(code.as_str()), code);
            assert_eq!(json!(code), json!(code.as_str()));
        }
    }

    #[test]
    fn an_unknown_code_is_kept() {
        let body = br#"{"error": {"code": "quota_exceeded", "message": "later"}}"#;
        let read = ErrorBody::parse(body).unwrap();
        assert_eq!(read.error.code, ErrorCode::Other("quota_exceeded".into()));
        assert_eq!(read.error.code.as_str(), "quota_exceeded");
    }

    #[test]
    fn the_body_is_the_documented_shape() {
        let body = ErrorBody::new(ErrorCode::NotFound, "no such action");
        assert_eq!(
            body.to_value(),
            json!({"error": {"code": "not_found", "message": "no such action"}})
        );
        assert_eq!(ErrorBody::parse(&body.to_bytes()), Some(body));
    }

    #[test]
    fn a_gate_answer_with_an_action_is_read() {
        let body = json!({"error": {"code": "pending", "message": "m"}, "action": {"id": "x"}});
        let read = ErrorBody::parse(body.to_string().as_bytes()).unwrap();
        assert_eq!(read.error.code, ErrorCode::Pending);
        assert!(ErrorBody::parse(b"<html>").is_none());
    }
}
