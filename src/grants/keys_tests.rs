//! Tests of the grant keys: signing, verifying, rotation and the JWKS.

use super::*;
use crate::domain::{ActionId, DecidedBy, Outcome, PolicySnapshot, Requester, Status};

fn key() -> SigningKey {
    random_key().unwrap()
}

fn approved(by: DecidedBy) -> Action {
    let now = Utc::now();
    let mut action = Action {
        id: ActionId::generate(),
        status: Status::Pending,
        action: "db.drop_table".into(),
        resource: "postgres://prod/users".into(),
        requester: Requester {
            id: "u-123".into(),
            ..Default::default()
        },
        reason: None,
        context: Default::default(),
        client: "payments-api".into(),
        policy: PolicySnapshot::default(),
        votes: Vec::new(),
        created_at: now,
        expires_at: now,
        callback_url: None,
        escalation: None,
        binding: None,
        window: None,
        decision: None,
    };
    action.decide(Outcome::Approved, by, None, now).unwrap();
    action
}

fn decode_part(part: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

#[test]
fn kid_is_the_rfc_7638_thumbprint() {
    // RFC 8037 appendix A.3: the thumbprint of its example Ed25519 public key.
    let x = URL_SAFE_NO_PAD
        .decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
        .unwrap();
    let public = VerifyingKey::from_bytes(&x.try_into().unwrap()).unwrap();
    assert_eq!(
        PublicKey::new(&public).kid,
        "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
    );
}

#[test]
fn issues_a_token_whose_claims_and_header_match() {
    let keys = GrantKeys::new("https://greenlight.example", &key(), None).unwrap();
    let action = approved(DecidedBy::People(vec!["U0BOB".into(), "U0CAROL".into()]));
    let now = Utc::now();
    let grant = keys.issue(&action, Duration::from_secs(900), now);
    assert_eq!(grant.action, "db.drop_table");
    assert_eq!(grant.expires_at.timestamp(), now.timestamp() + 900);

    let parts: Vec<&str> = grant.token.split('.').collect();
    let header = decode_part(parts[0]);
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["kid"], keys.kid());

    let claims = keys.verify(&grant.token).unwrap();
    assert_eq!(claims.iss, "https://greenlight.example");
    assert_eq!(claims.sub, "u-123");
    assert_eq!(claims.aud, "payments-api");
    assert_eq!(claims.aid, action.id.to_string());
    assert_eq!(claims.approvers, ["U0BOB", "U0CAROL"]);
    assert_eq!(claims.exp - claims.iat, 900);
    assert!(ulid::Ulid::from_string(&claims.jti).is_ok());

    let auto = keys.issue(
        &approved(DecidedBy::Policy("reads".into())),
        Duration::from_secs(60),
        now,
    );
    assert_eq!(
        keys.verify(&auto.token).unwrap().approvers,
        ["policy:reads"]
    );
}

#[test]
fn rejects_expired_tampered_and_foreign_tokens() {
    let keys = GrantKeys::new("greenlight", &key(), None).unwrap();
    let action = approved(DecidedBy::People(vec!["U0BOB".into()]));
    let now = Utc::now();
    let token = keys.issue(&action, Duration::from_secs(60), now).token;
    let t = now.timestamp();
    assert!(keys.verify_at(&token, t + 59).is_ok());
    assert_eq!(keys.verify_at(&token, t + 60), Err(GrantRejection::Expired));

    // Another resource in the payload: the signature no longer matches.
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut claims = decode_part(&parts[1]);
    claims["res"] = "postgres://prod/payments".into();
    parts[1] = URL_SAFE_NO_PAD.encode(claims.to_string());
    let tampered = parts.join(".");
    assert_eq!(keys.verify(&tampered), Err(GrantRejection::BadSignature));
    assert_eq!(
        keys.verify("not a token"),
        Err(GrantRejection::BadSignature)
    );

    // Another key, even one claiming our `kid`.
    let other = GrantKeys::new("greenlight", &key(), None).unwrap();
    let foreign = other.issue(&action, Duration::from_secs(60), now).token;
    assert_eq!(keys.verify(&foreign), Err(GrantRejection::BadSignature));
    let forged = jsonwebtoken::encode(
        &Header {
            kid: Some(keys.kid().to_owned()),
            ..Header::new(Algorithm::EdDSA)
        },
        &other.verify(&foreign).unwrap(),
        &other.signing,
    )
    .unwrap();
    assert_eq!(keys.verify(&forged), Err(GrantRejection::BadSignature));

    // Our key, another issuer.
    let elsewhere = GrantKeys::new("https://elsewhere.example", &key(), None).unwrap();
    let token = elsewhere.issue(&action, Duration::from_secs(60), now).token;
    let same_key_other_issuer = GrantKeys {
        issuer: "greenlight".into(),
        ..elsewhere
    };
    assert_eq!(
        same_key_other_issuer.verify(&token),
        Err(GrantRejection::BadSignature)
    );
}

#[test]
fn the_previous_key_still_verifies_and_is_published() {
    let (old, new) = (key(), key());
    let before = GrantKeys::new("greenlight", &old, None).unwrap();
    let action = approved(DecidedBy::People(vec!["U0BOB".into()]));
    let token = before
        .issue(&action, Duration::from_secs(60), Utc::now())
        .token;
    let after = GrantKeys::new("greenlight", &new, Some(&old.verifying_key())).unwrap();
    assert_eq!(after.verify(&token).unwrap().aid, action.id.to_string());
    let kids: Vec<Value> = after.jwks()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].clone())
        .collect();
    assert_eq!(kids, [after.kid(), before.kid()]);
    // Without it, the old grant is just a foreign token.
    let forgot = GrantKeys::new("greenlight", &new, None).unwrap();
    assert_eq!(forgot.verify(&token), Err(GrantRejection::BadSignature));
}

#[test]
fn loads_pem_settings_and_never_shows_keys() {
    let pem = generate_signing_key().unwrap();
    let mut settings = Settings::embedded();
    settings.grant_signing_key = Some(pem.clone());
    let keys = GrantKeys::from_settings(&settings).unwrap();
    assert!(!keys.is_generated());
    assert_eq!(keys.issuer(), "greenlight");
    let debug = format!("{keys:?}");
    assert!(debug.contains(keys.kid()));
    assert!(!debug.contains("PRIVATE"));

    // The old key moved to the previous slot, as PEM on one line with `\n`s.
    let mut rotated = Settings::embedded();
    rotated.grant_signing_key = Some(generate_signing_key().unwrap());
    rotated.grant_previous_key = Some(pem.expose_secret().replace('\n', "\\n").into());
    rotated.public_url = Some("https://greenlight.example/".into());
    let rotated = GrantKeys::from_settings(&rotated).unwrap();
    assert_eq!(rotated.issuer(), "https://greenlight.example");
    assert_eq!(rotated.jwks()["keys"][1]["kid"], keys.kid());

    let mut bad = Settings::embedded();
    bad.grant_signing_key = Some("-----BEGIN PRIVATE KEY-----\nnope\n".into());
    let err = format!("{:#}", GrantKeys::from_settings(&bad).unwrap_err());
    assert!(err.contains("GREENLIGHT_GRANT_SIGNING_KEY"), "{err}");
    assert!(err.contains("openssl genpkey"), "{err}");

    let generated = GrantKeys::from_settings(&Settings::embedded()).unwrap();
    assert!(generated.is_generated());
}

#[test]
fn accepts_keys_made_by_openssl() {
    // `openssl genpkey -algorithm ed25519` (PKCS#8 v1) and its `-pubout` form.
    let private = "-----BEGIN PRIVATE KEY-----\n\
                   MC4CAQAwBQYDK2VwBCIEIJCYHk5hyN3aP/EKUMsUzU9U49prrMAZK0RPkIWgOGxW\n\
                   -----END PRIVATE KEY-----\n";
    let public = "-----BEGIN PUBLIC KEY-----\n\
                  MCowBQYDK2VwAyEA4/GZt8nlzAJ+35G4siyENUE5ZuJlCHeyoXzC9jLMIOw=\n\
                  -----END PUBLIC KEY-----\n";
    let signing = parse_private(private).unwrap();
    assert_eq!(parse_public(public).unwrap(), signing.verifying_key());
    assert_eq!(parse_public(private).unwrap(), signing.verifying_key());
}
