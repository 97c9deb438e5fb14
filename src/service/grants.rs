//! What `POST /v1/grants/verify` and `POST /v1/actions/{id}/revoke` do beyond the
//! signature: scope, revocation, single use and the uses of access windows, shared by
//! every replica through the store.

use super::revoke::Revoker;
use super::windows::UseRefused;
use super::{Client, Forbidden, Permission, Service, ServiceError, ServiceResult};
use crate::audit::AuditEvent;
use crate::domain::{Action, ActionId, WindowEnd};
use crate::grants::{Claims, GrantRejection};
use crate::store::StoreResult;
use chrono::{DateTime, Utc};
use std::time::Duration;

/// Store namespace of revoked actions' grants, keyed by action id.
pub const REVOKED: &str = "revoked";
/// Store namespace of consumed grants, keyed by `jti`.
pub const USED: &str = "grant-used";
/// How long a consumed grant is remembered past its expiry (clock skew between replicas).
const USED_MARGIN: Duration = Duration::from_secs(60);

/// A verification as the API takes it: `action`/`resource`, when given, must be the
/// grant's; `consume` makes it single use.
#[derive(Clone, Debug, Default)]
pub struct VerifyRequest {
    pub token: String,
    pub action: Option<String>,
    pub resource: Option<String>,
    pub consume: bool,
}

/// Checks a grant in a fixed order: signature, expiry, audience (`aud` must be
/// `audience` when one is given), scope, revocation, then single use: with `consume` the
/// grant is spent (only when everything else holds), without it a grant already spent
/// answers `already_used`.
/// Store errors are errors (the caller fails closed), never a verdict.
pub async fn check(
    service: &Service,
    request: &VerifyRequest,
    audience: Option<&str>,
    now: DateTime<Utc>,
) -> StoreResult<Result<Claims, GrantRejection>> {
    let claims = match service.grants().verify_at(&request.token, now.timestamp()) {
        Ok(claims) => claims,
        Err(rejection) => return Ok(Err(rejection)),
    };
    if audience.is_some_and(|aud| aud != claims.aud) {
        return Ok(Err(GrantRejection::WrongAudience));
    }
    let in_scope = request
        .action
        .as_ref()
        .is_none_or(|a| claims.covers_action(a))
        && request
            .resource
            .as_ref()
            .is_none_or(|r| claims.covers_resource(r));
    if !in_scope {
        return Ok(Err(GrantRejection::WrongScope));
    }
    if service.grant_revoked(&claims.aid).await? {
        return Ok(Err(GrantRejection::Revoked));
    }
    let used = if request.consume {
        let left = u64::try_from(claims.exp - now.timestamp()).unwrap_or(0);
        let ttl = Duration::from_secs(left) + USED_MARGIN;
        // `SET NX` on one key: exactly one consumer wins, whichever replica it asks.
        !service.consume_grant(&claims.jti, ttl).await?
    } else {
        // A consumed grant is spent for everyone, not only for the next consumer.
        service.grant_consumed(&claims.jti).await?
    };
    if used {
        return Ok(Err(GrantRejection::AlreadyUsed));
    }
    Ok(Ok(claims))
}

/// `POST /v1/grants/verify` for `client` (any role): a grant answers only to the client it
/// was issued to (its `aud`), or to an admin; to anyone else it is `wrong_audience`, and
/// is never consumed.
pub async fn verify(
    service: &Service,
    client: &Client,
    request: &VerifyRequest,
) -> ServiceResult<Result<Claims, GrantRejection>> {
    // A window's grant is used many times; spending it would end it for everyone.
    if request.consume
        && let Ok(claims) = service.grants().verify_at(&request.token, i64::MIN)
        && claims.win.is_some()
    {
        return Err(ServiceError::WindowGrantNotConsumable);
    }
    let audience = (!client.may(Permission::VerifyAnyGrant)).then(|| client.id());
    let verdict = check(service, request, audience, Utc::now()).await?;
    grant_verified(service, client, request, &verdict).await;
    Ok(verdict)
}

/// `POST /v1/grants/verify` with `use: true`: one use of an access window's grant by
/// `client`, which must be its audience, for a concrete action and resource within its
/// scope, while it is neither expired nor revoked. A use is counted (across replicas) and
/// audited as `access_used`; the answer carries the count. A refusal is audited as any
/// other (`grant_verified`, invalid).
pub async fn use_window(
    service: &Service,
    client: &Client,
    request: &VerifyRequest,
) -> ServiceResult<Result<(Claims, u64), GrantRejection>> {
    let (Some(action), Some(resource)) = (&request.action, &request.resource) else {
        return Err(ServiceError::InvalidRequest(
            "action, resource: `use` needs the concrete action and resource".into(),
        ));
    };
    if request.consume {
        return Err(ServiceError::WindowGrantNotConsumable);
    }
    // The audience only, admins included: a use is the audience letting a request through.
    let verdict = match check(service, request, Some(client.id()), Utc::now()).await? {
        Ok(claims) if claims.win.is_none() => {
            return Err(ServiceError::InvalidRequest(
                "use: applies only to an access window's grant (`window_seconds`)".into(),
            ));
        }
        Ok(claims) => count_use(service, claims, action, resource).await?,
        Err(rejection) => Err(rejection),
    };
    let (claims, id, uses) = match verdict {
        Ok(counted) => counted,
        Err(rejection) => {
            crate::metrics::window_use(Some(rejection));
            grant_verified(service, client, request, &Err(rejection)).await;
            return Ok(Err(rejection));
        }
    };
    crate::metrics::window_use(None);
    tracing::info!(client = client.id(), action_id = %id, action, resource, uses,
        "access window used");
    service
        .audit()
        .record(AuditEvent::access_used(
            &id,
            client.id(),
            &claims.sub,
            action,
            resource,
            uses,
        ))
        .await;
    Ok(Ok((claims, uses)))
}

/// Counts a use of the window whose (valid, in scope) grant is `claims`, unless the policy
/// in force keeps `action` on `resource` out of the window or the window ended meanwhile.
async fn count_use(
    service: &Service,
    claims: Claims,
    action: &str,
    resource: &str,
) -> StoreResult<Result<(Claims, ActionId, u64), GrantRejection>> {
    // Signed by us, so it names a stored action; anything else is no use of anything.
    let Ok(id) = claims.aid.parse::<ActionId>() else {
        return Ok(Err(GrantRejection::BadSignature));
    };
    let Some(window) = service.load(&id).await? else {
        return Ok(Err(GrantRejection::Revoked));
    };
    Ok(
        match service
            .count_window_use(&window.action, action, resource)
            .await?
        {
            Ok(uses) => Ok((claims, id, uses)),
            Err(UseRefused::NotGoverned) => Err(GrantRejection::WrongScope),
            Err(UseRefused::Ended(WindowEnd::Revoked)) => Err(GrantRejection::Revoked),
            Err(UseRefused::Ended(WindowEnd::Expired)) => Err(GrantRejection::Expired),
        },
    )
}

/// Every answered verification, valid or not, passes here: the place to record it
/// (the audit trail's `grant_verified`).
async fn grant_verified(
    service: &Service,
    client: &Client,
    request: &VerifyRequest,
    verdict: &Result<Claims, GrantRejection>,
) {
    let event = match verdict {
        Ok(claims) => {
            tracing::info!(client = client.id(), action_id = %claims.aid,
                jti = %claims.jti, consume = request.consume, "grant verified");
            let action_id = claims.aid.parse::<ActionId>().ok();
            AuditEvent::grant_verified(client.id(), action_id.as_ref(), true, None, request.consume)
        }
        Err(rejection) => {
            tracing::info!(client = client.id(), consume = request.consume,
                reason = ?rejection, "grant rejected");
            let reason = serde_json::to_value(rejection)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned));
            AuditEvent::grant_verified(client.id(), None, false, reason.as_deref(), false)
        }
    };
    service.audit().record(event).await;
}

/// `POST /v1/actions/{id}/revoke` (role `admin`): from now on `verify` answers `revoked`
/// for the action's grant. Only an approved action has one (`409` otherwise); revoking
/// twice is harmless.
pub async fn revoke(
    service: &Service,
    client: &Client,
    id: &ActionId,
    reason: Option<&str>,
) -> ServiceResult<Action> {
    let action = if client.may(Permission::RevokeGrants) {
        service.get(client, id).await?
    } else {
        // Anyone else is refused as before, without telling whether the action exists.
        match service.get(client, id).await {
            Ok(a) => client.authorize_revoke(&a).map(|()| a)?,
            Err(ServiceError::NotFound) => {
                return Err(Forbidden::Lacks(Permission::RevokeGrants).into());
            }
            Err(e) => return Err(e),
        }
    };
    service
        .revoke_approved(&action, &Revoker::Client(client.id().to_owned()), reason)
        .await?;
    if action.window.is_some() {
        return service.get(client, id).await;
    }
    Ok(action)
}
