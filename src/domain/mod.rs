//! The domain types, from the `greenlight-client` crate (a service that only gates uses
//! them without the server), and what only the server does with them.

pub use greenlight_client::domain::*;

/// Parses a JSON body, naming the field at fault: `requester.id: missing field`.
pub fn from_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            format!("request body: {}", e.inner())
        } else {
            format!("{path}: {}", e.inner())
        }
    })
}
