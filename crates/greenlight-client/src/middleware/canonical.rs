//! One canonical form of a request target, computed once by a gate: routes are matched on
//! exactly the path that is forwarded, so a path the upstream would read differently
//! (`/x/../accounts/42`, `/accounts/%34%32`, `//accounts/42/`) cannot slip past a route.
//!
//! The rules, in order:
//! 1. Percent-encoded unreserved characters (`A-Z a-z 0-9 - . _ ~`, RFC 3986 section 2.3)
//!    are decoded; every other escape is kept, with upper-case hex.
//! 2. Dot segments are removed (RFC 3986 section 5.2.4), `%2e` included once decoded.
//! 3. Empty segments go: `//` is one `/`, and a trailing `/` is dropped (`/` stays `/`).
//!
//! Refused, because an upstream could read them as something else: an encoded `/`, `\` or
//! NUL (`%2F`, `%5C`, `%00`), a raw `\` or `;` (path parameters, which some servers strip
//! before routing), an encoded `%` (`%25`: a double-encoded dot or slash is read as one
//! by servers that decode twice), a path that does not decode to UTF-8, and anything that
//! is not an origin-form path.

use http::{Method, Uri};
use percent_encoding::percent_decode_str;
use std::borrow::Cow;

/// Why a request target has no safe canonical form; answered `400`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CanonicalError {
    #[error("the request path must start with `/`")]
    NotOriginForm,
    #[error("the request path has an invalid percent escape")]
    BadEscape,
    #[error("the request path has an encoded `/`, `\\`, `%` or NUL")]
    EncodedSeparator,
    #[error("the request path has a `\\` or `;`")]
    AmbiguousCharacter,
    #[error("the request path is not UTF-8 once decoded")]
    NotUtf8,
    #[error("the request method `{0}` is not in canonical (upper-case) form")]
    Method(String),
}

/// The canonical form of `path` (without the query).
pub fn path(raw: &str) -> Result<String, CanonicalError> {
    if !raw.starts_with('/') {
        return Err(CanonicalError::NotOriginForm);
    }
    if raw.contains(['\\', ';']) {
        return Err(CanonicalError::AmbiguousCharacter);
    }
    if std::str::from_utf8(&percent_decode_str(raw).collect::<Vec<u8>>()).is_err() {
        return Err(CanonicalError::NotUtf8);
    }
    let mut out: Vec<String> = Vec::new();
    for segment in raw.split('/') {
        let segment = decode_unreserved(segment)?;
        match segment.as_str() {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            _ => out.push(segment),
        }
    }
    Ok(format!("/{}", out.join("/")))
}

/// The canonical form of a path and query: the path canonical, the query as sent.
pub fn target(path_and_query: &str) -> Result<String, CanonicalError> {
    let (p, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    let mut canonical = path(p)?;
    if let Some(q) = query {
        canonical.push('?');
        canonical.push_str(q);
    }
    Ok(canonical)
}

/// The canonical form of a request's target: `None` when it already is canonical, or why
/// it cannot be. The method is checked too ([`method`]).
pub fn uri(method: &Method, uri: &Uri) -> Result<Option<Uri>, CanonicalError> {
    self::method(method)?;
    let raw = uri.path_and_query().map_or("/", |p| p.as_str());
    let canonical = target(raw)?;
    if canonical == raw {
        return Ok(None);
    }
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(canonical.parse().map_err(|_| CanonicalError::BadEscape)?);
    Uri::from_parts(parts)
        .map(Some)
        .map_err(|_| CanonicalError::BadEscape)
}

/// Refuses a method that is not upper case: `delete` is not `DELETE` to the HTTP grammar,
/// but some servers read it so.
pub fn method(method: &Method) -> Result<(), CanonicalError> {
    if method.as_str().bytes().any(|b| b.is_ascii_lowercase()) {
        return Err(CanonicalError::Method(method.as_str().to_owned()));
    }
    Ok(())
}

/// Whether a request with `method` is under a route written for `route_method`: the same
/// method, or `HEAD` for a `GET` route (servers answer `HEAD` with their `GET` handler).
pub fn method_matches(route_method: &Method, method: &Method) -> bool {
    route_method == method || (route_method == Method::GET && method == Method::HEAD)
}

/// A path parameter as templates see it: fully percent-decoded (`%20` is a space).
pub fn decode_param(value: &str) -> Cow<'_, str> {
    percent_decode_str(value).decode_utf8_lossy()
}

fn decode_unreserved(segment: &str) -> Result<String, CanonicalError> {
    let bytes = segment.as_bytes();
    let mut out = String::with_capacity(segment.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            // Multi-byte UTF-8 passes whole: `%` never occurs inside one.
            let next = segment[i..].find('%').map_or(segment.len(), |n| i + n);
            out.push_str(&segment[i..next]);
            i = next;
            continue;
        }
        let hex = segment.get(i + 1..i + 3).ok_or(CanonicalError::BadEscape)?;
        let byte = u8::from_str_radix(hex, 16).map_err(|_| CanonicalError::BadEscape)?;
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(CanonicalError::BadEscape);
        }
        match byte {
            b'/' | b'\\' | b'%' | 0 => return Err(CanonicalError::EncodedSeparator),
            b if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') => {
                out.push(char::from(b));
            }
            b => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.push('%');
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0xf)]));
            }
        }
        i += 3;
    }
    Ok(out)
}

#[cfg(test)]
#[path = "canonical_tests.rs"]
mod tests;
