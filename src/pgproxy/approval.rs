//! Asking Greenlight about one held message, and reading its answer as the SQLSTATE the
//! client gets. Every held message is an action bound to its exact bytes: the approval's
//! grant carries their digest, is checked against it, and is spent once before anything
//! is forwarded. Any failure refuses: fail closed.

use super::config::StatementRule;
use super::template::Vars;
use crate::client::{Client, ClientError};
use crate::domain::{Action, ActionRequest, Binding, Requester, Status};
use serde_json::{Map, Value};
use std::time::Duration;

/// SQLSTATE `insufficient_privilege`: denied, or refused by Greenlight.
pub const DENIED: &str = "42501";
/// SQLSTATE `query_canceled`: no decision in time, expired, or no answer at all.
pub const CANCELED: &str = "57014";

/// A message the proxy holds: what it is and what approvers see.
pub struct Held<'a> {
    pub rule: &'a StatementRule,
    /// Every SQL text of the message (one `Query`, or the `Parse`s of a batch).
    pub sql: String,
    pub kind: String,
    pub tables: String,
    pub user: &'a str,
    pub database: &'a str,
    pub requester: Requester,
    /// The bytes that will be forwarded if approved.
    pub bytes: &'a [u8],
}

/// Not forwarded: the SQLSTATE and message the client gets.
#[derive(Debug)]
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
}

impl Held<'_> {
    /// What the notice and errors call it: `DELETE on public.users`.
    pub fn describe(&self) -> String {
        let kind = self.kind.replace('_', " ").to_uppercase();
        if self.tables.is_empty() {
            kind
        } else {
            format!("{kind} on {}", self.tables)
        }
    }

    fn digest_target(&self) -> String {
        format!("postgres://{}@{}", self.user, self.database)
    }

    /// What Greenlight is asked: the rule's rendered action and resource, the requester.
    pub fn request(&self) -> ActionRequest {
        let vars = Vars {
            sql_kind: &self.kind,
            sql_tables: &self.tables,
            user: self.user,
            database: self.database,
        };
        let rule = self.rule;
        let mut context = Map::new();
        context.insert("database".into(), Value::from(self.database));
        context.insert("user".into(), Value::from(self.user));
        context.insert("statement_rule".into(), Value::from(rule.name.as_str()));
        context.insert("sql_kind".into(), Value::from(self.kind.as_str()));
        ActionRequest {
            action: rule.action.render(&vars),
            resource: rule.resource.render(&vars),
            requester: self.requester.clone(),
            reason: rule
                .reason
                .as_ref()
                .map(|t| t.render(&vars))
                .filter(|r| !r.is_empty()),
            context: Some(context),
            ttl_seconds: rule.ttl.map(|t| t.as_secs()),
            binding: Some(Binding::of(
                "QUERY",
                &self.digest_target(),
                self.bytes,
                Some(&self.sql),
            )),
            ..ActionRequest::default()
        }
    }
}

/// Creates the action. Pending: the caller tells the client and waits with [`decide`].
pub async fn ask(client: &Client, held: &Held<'_>) -> Result<Action, Refusal> {
    client
        .request(&held.request())
        .await
        .map_err(|e| failure(held, &e))
}

/// Waits up to `hold` for the decision on `action`, then checks and spends its grant.
pub async fn decide(
    client: &Client,
    held: &Held<'_>,
    action: Action,
    hold: Duration,
) -> Result<Action, Refusal> {
    let action = if action.is_pending() {
        client
            .wait(&action.id, hold)
            .await
            .map_err(|e| failure(held, &e))?
    } else {
        action
    };
    let what = held.describe();
    match action.status {
        Status::Approved => {
            let digest = Binding::of("QUERY", &held.digest_target(), held.bytes, None).digest;
            let claims = client
                .verify_grant(&action)
                .await
                .map_err(|e| failure(held, &e))?;
            if claims.dig.as_deref() != Some(digest.as_str()) {
                return Err(refused(format!(
                    "not approved: the approval {} is for another statement",
                    action.id
                )));
            }
            match client.consume_grant(&action).await {
                Ok(true) => Ok(action),
                Ok(false) => Err(refused(format!(
                    "not approved: the approval {} was already used or revoked",
                    action.id
                ))),
                Err(e) => Err(failure(held, &e)),
            }
        }
        Status::Pending => Err(Refusal {
            code: CANCELED,
            message: format!(
                "canceling statement: no decision on {what} within {} ({}; it stays pending)",
                humantime::format_duration(hold),
                action.id
            ),
        }),
        Status::Expired => Err(Refusal {
            code: CANCELED,
            message: format!(
                "canceling statement: the approval of {what} expired ({})",
                action.id
            ),
        }),
        other => {
            let decision = action.decision.as_ref();
            let by = decision
                .map(|d| d.decided_by.join(", "))
                .filter(|b| !b.is_empty())
                .unwrap_or_else(|| "policy".into());
            let reason = decision
                .and_then(|d| d.reason.as_deref())
                .map(|r| format!(": {r}"))
                .unwrap_or_default();
            Err(refused(format!(
                "permission denied: {what} was {other} by {by}{reason} ({})",
                action.id
            )))
        }
    }
}

fn refused(message: String) -> Refusal {
    Refusal {
        code: DENIED,
        message,
    }
}

/// Greenlight refused the request, or could not be asked: never forwarded.
fn failure(held: &Held<'_>, e: &ClientError) -> Refusal {
    let what = held.describe();
    match e {
        ClientError::Api {
            status: 400..=499,
            message,
            ..
        } => refused(format!(
            "permission denied: Greenlight refused to ask about {what}: {message}"
        )),
        ClientError::Grant(g) if !g.is_unavailable() => {
            tracing::warn!(error = %g, "an approval whose grant does not verify; refusing");
            refused(format!(
                "not approved: the grant for {what} does not verify"
            ))
        }
        other => {
            tracing::error!(error = %other, "cannot get an approval decision; refusing");
            Refusal {
                code: CANCELED,
                message: format!(
                    "canceling statement: the approval service is unavailable, {what} was not run"
                ),
            }
        }
    }
}
