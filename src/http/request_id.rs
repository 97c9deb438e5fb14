//! Request ids: the caller's `x-request-id` when it is usable, else a new UUID (the
//! request-id layers of the router), returned on every response and recorded on the
//! request's span.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;

pub const HEADER: &str = "x-request-id";
/// Longer ids are replaced: a caller's id goes into every log line of its request.
const MAX_LEN: usize = 128;

/// Removes a caller's request id that is empty, too long or not visible ASCII, so that the
/// id layer generates one instead and the logs only carry short, plain ids.
pub async fn drop_unusable(mut req: Request, next: Next) -> Response {
    if req
        .headers()
        .get(HEADER)
        .is_some_and(|v| !usable(v.as_bytes()))
    {
        req.headers_mut().remove(HEADER);
    }
    next.run(req).await
}

fn usable(id: &[u8]) -> bool {
    !id.is_empty() && id.len() <= MAX_LEN && id.iter().all(u8::is_ascii_graphic)
}

#[cfg(test)]
mod tests {
    use super::{MAX_LEN, usable};

    #[test]
    fn short_visible_ids_are_kept() {
        assert!(usable(b"req-42"));
        assert!(usable(b"0b9c2d5e-8f1a-4c3b-9d7e-6a5f4e3d2c1b"));
        assert!(!usable(b""));
        assert!(!usable(b"two words"));
        assert!(!usable("caf\u{e9}".as_bytes()));
        assert!(!usable(&[b'a'; MAX_LEN + 1]));
    }
}
