//! An axum service whose destructive route needs a person's approval, through the
//! [`RequireApproval`] layer. Reads and everything else pass straight through.
//!
//! ```sh
//! export GREENLIGHT_URL=http://127.0.0.1:8080 GREENLIGHT_CLIENT_ID=payments-api \
//!        GREENLIGHT_CLIENT_SECRET=whsec_...
//! cargo run -p greenlight-client --example approval_service   # listens on 127.0.0.1:3000
//! curl -X DELETE -H 'x-user: alice' localhost:3000/accounts/42   # held until decided
//! curl -X DELETE -H 'x-user: alice' -H 'Prefer: respond-async' localhost:3000/accounts/42
//! ```

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{delete, get};
use greenlight_client::client::Client;
use greenlight_client::domain::{ActionRequest, Requester};
use greenlight_client::middleware::RequireApproval;
use greenlight_client::middleware::headers::{ACTION_ID, GRANT};

/// The service: what it does once a request reaches it.
fn app(approval: RequireApproval) -> Router {
    Router::new()
        .route("/accounts/{id}", get(|| async { "an account" }))
        .route("/accounts/{id}", delete(delete_account))
        .layer(approval)
}

async fn delete_account(headers: HeaderMap) -> impl IntoResponse {
    // The gate put the approval here: keep it with the audit record of the deletion.
    let approved_by = headers.get(ACTION_ID).and_then(|v| v.to_str().ok());
    let has_grant = headers.contains_key(GRANT);
    tracing::info!(?approved_by, has_grant, "deleting");
    (StatusCode::OK, "deleted")
}

/// Which requests need approval, and how each is described to Greenlight.
fn approval(client: Client) -> RequireApproval {
    RequireApproval::new(client)
        .route("DELETE /accounts/*")
        .extract(|req| {
            // Behind your authentication layer this would be the authenticated user.
            let user = req
                .headers
                .get("x-user")
                .and_then(|v| v.to_str().ok())
                .ok_or((StatusCode::UNAUTHORIZED, "who are you?".to_owned()))?;
            Ok(ActionRequest {
                action: "accounts.delete".into(),
                resource: req.uri.path().trim_start_matches('/').into(),
                requester: Requester {
                    id: user.into(),
                    // How approvers are told apart from the requester.
                    email: req
                        .headers
                        .get("x-user-email")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned),
                    ..Default::default()
                },
                reason: req
                    .headers
                    .get("x-reason")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
                ..Default::default()
            })
        })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt::init();
    let client = Client::from_env()?;
    let listen = std::env::var("EXAMPLE_LISTEN").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    tracing::info!(%listen, "approval_service listening");
    axum::serve(listener, app(approval(client))).await?;
    Ok(())
}
