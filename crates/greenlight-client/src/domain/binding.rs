//! What ties an approval to the one HTTP request a gate held: a digest of the request
//! (method, canonical target, body) that the grant carries, and a preview approvers read.
//! A gate forwards only a request with the same digest, so an approval of
//! `DELETE FROM sessions WHERE expired` never releases `DROP TABLE users`.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The longest preview kept, in characters; longer ones are cut with `…`.
pub const MAX_PREVIEW_CHARS: usize = 2000;

/// The held request, as a gate describes it in `POST /v1/actions`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Binding {
    /// Lower-case hex SHA-256 of `{METHOD} {canonical path and query}\n{hex SHA-256 of
    /// the body}`.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[0-9a-f]{64}$"))]
    pub digest: String,
    /// What approvers are shown: the SQL statement, or the method, target and the start
    /// of the body.
    #[cfg_attr(feature = "openapi", schema(max_length = 2000))]
    pub preview: String,
}

impl Binding {
    /// The binding of one request; `preview` defaults to the method, target and the
    /// first bytes of the body.
    pub fn of(method: &str, target: &str, body: &[u8], preview: Option<&str>) -> Self {
        let preview = match preview {
            Some(p) => p.to_owned(),
            None if body.is_empty() => format!("{method} {target}"),
            None => format!(
                "{method} {target}\n{}",
                String::from_utf8_lossy(&body[..body.len().min(MAX_PREVIEW_CHARS)])
            ),
        };
        Self {
            digest: digest(method, target, body),
            preview: cut(&preview),
        }
    }

    /// Checks a binding sent by a client: a digest in the documented form, a preview
    /// within bounds.
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.digest.len() != 64
            || !self
                .digest
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err("binding.digest must be 64 lower-case hex digits (SHA-256)");
        }
        if self.preview.chars().count() > MAX_PREVIEW_CHARS {
            return Err("binding.preview must be at most 2000 characters");
        }
        Ok(())
    }
}

/// `hex(SHA-256("{METHOD} {target}\n" + hex(SHA-256(body))))`.
pub fn digest(method: &str, target: &str, body: &[u8]) -> String {
    let body_hash = hex::encode(Sha256::digest(body));
    let mut hasher = Sha256::new();
    hasher.update(method.as_bytes());
    hasher.update(b" ");
    hasher.update(target.as_bytes());
    hasher.update(b"\n");
    hasher.update(body_hash.as_bytes());
    hex::encode(hasher.finalize())
}

fn cut(text: &str) -> String {
    match text.char_indices().nth(MAX_PREVIEW_CHARS - 1) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_covers_method_target_and_body() {
        let base = Binding::of("POST", "/sql?db=prod", b"{\"q\":\"DELETE\"}", None);
        assert!(base.validate().is_ok());
        for other in [
            Binding::of("PUT", "/sql?db=prod", b"{\"q\":\"DELETE\"}", None),
            Binding::of("POST", "/sql?db=test", b"{\"q\":\"DELETE\"}", None),
            Binding::of("POST", "/sql?db=prod", b"{\"q\":\"DROP\"}", None),
        ] {
            assert_ne!(base.digest, other.digest);
        }
        assert_eq!(
            base.digest,
            Binding::of("POST", "/sql?db=prod", b"{\"q\":\"DELETE\"}", Some("x")).digest
        );
    }

    #[test]
    fn previews_are_bounded() {
        let long = "x".repeat(5000);
        let b = Binding::of("POST", "/a", long.as_bytes(), None);
        assert_eq!(b.preview.chars().count(), MAX_PREVIEW_CHARS);
        assert!(b.validate().is_ok());
        assert_eq!(
            Binding::of("DELETE", "/a/1", b"", None).preview,
            "DELETE /a/1"
        );
        let bad = Binding {
            digest: "ABC".into(),
            preview: String::new(),
        };
        assert!(bad.validate().is_err());
    }
}
