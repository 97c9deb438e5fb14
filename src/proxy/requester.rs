//! Who asks, for `greenlight proxy`: headers set by a trusted gateway, or claims of a
//! bearer JWT verified against the identity provider's JWKS (cached, refetched on an
//! unknown key id, the same cache the client checks grants with). Besides the id, an
//! email and a Slack member id can be taken the same way, so approvers can be told
//! apart from the requester.

use super::config::{Fields, JwtSource, RequesterSource};
use crate::client::JwksCache;
use crate::domain::Requester as Person;
use crate::error::{ErrorBody, ErrorCode};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jsonwebtoken::Validation;
use serde_json::{Map, Value};

pub enum Requester {
    Header(Fields),
    Jwt(Box<Jwt>),
}

pub struct Jwt {
    source: JwtSource,
    jwks: JwksCache,
}

impl Requester {
    pub fn new(source: RequesterSource, http: reqwest::Client) -> Self {
        match source {
            RequesterSource::Header(h) => Requester::Header(h),
            RequesterSource::Jwt(source) => Requester::Jwt(Box::new(Jwt {
                jwks: JwksCache::new(source.jwks_url.clone(), http),
                source,
            })),
        }
    }

    /// The requester, or the `401` to answer.
    pub async fn identify(&self, headers: &HeaderMap) -> Result<Person, Response> {
        match self {
            Requester::Header(fields) => {
                let value = |name: &str| {
                    headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::trim)
                        .filter(|v| !v.is_empty())
                        .map(str::to_owned)
                };
                let id = value(&fields.id).ok_or_else(|| {
                    unauthorized(&format!(
                        "this request needs approval; the `{}` header names who asks",
                        fields.id
                    ))
                })?;
                Ok(Person {
                    id,
                    email: fields.email.as_deref().and_then(value),
                    slack_user_id: fields.slack_user.as_deref().and_then(value),
                    name: None,
                })
            }
            Requester::Jwt(jwt) => {
                let token = headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| {
                        v.strip_prefix("Bearer ")
                            .or_else(|| v.strip_prefix("bearer "))
                    })
                    .ok_or_else(|| {
                        unauthorized("this request needs approval and a bearer token")
                    })?;
                verify(&jwt.source, &jwt.jwks, token.trim())
                    .await
                    .map_err(|e| {
                        tracing::info!(error = %e, "bearer token rejected");
                        unauthorized("the bearer token does not verify")
                    })
            }
        }
    }
}

async fn verify(source: &JwtSource, jwks: &JwksCache, token: &str) -> anyhow::Result<Person> {
    let header = jsonwebtoken::decode_header(token)?;
    // Only the configured algorithms, whatever the token claims to use.
    if !source.algorithms.contains(&header.alg) {
        anyhow::bail!("algorithm {:?} is not accepted", header.alg);
    }
    let kid = header.kid.ok_or_else(|| anyhow::anyhow!("no key id"))?;
    let (key, _) = jwks.key(&kid).await?;
    let mut validation = Validation::new(header.alg);
    validation.set_required_spec_claims(&["exp"]);
    match &source.audience {
        Some(aud) => validation.set_audience(&[aud]),
        None => validation.validate_aud = false,
    }
    if let Some(iss) = &source.issuer {
        validation.set_issuer(&[iss]);
    }
    let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation)?.claims;
    let claim = |name: &str| match claims.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    };
    let names = &source.claims;
    Ok(Person {
        id: claim(&names.id).ok_or_else(|| anyhow::anyhow!("no string claim `{}`", names.id))?,
        email: names.email.as_deref().and_then(claim),
        slack_user_id: names.slack_user.as_deref().and_then(claim),
        name: None,
    })
}

fn unauthorized(message: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        axum::Json(ErrorBody::new(ErrorCode::Unauthorized, message)),
    )
        .into_response()
}
