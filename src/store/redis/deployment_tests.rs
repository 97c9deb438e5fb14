//! Tests of reading a Redis deployment from its URL.

use super::*;

fn sentinel(url: &str) -> (Vec<(String, u16)>, String, i64, Credentials) {
    match Deployment::from_settings(Some(url), None).unwrap().unwrap() {
        Deployment::Sentinel {
            sentinels,
            master,
            db,
            credentials,
        } => (sentinels, master, db, credentials),
        _ => panic!("not sentinel"),
    }
}

#[test]
fn sentinel_urls_name_every_sentinel_the_master_and_the_database() {
    let (sentinels, master, db, creds) =
        sentinel("redis+sentinel://s1:26380,s2,[::1]:26381/mymaster/2");
    assert_eq!(
        sentinels,
        vec![
            ("s1".into(), 26380),
            ("s2".into(), 26379),
            ("::1".into(), 26381)
        ]
    );
    assert_eq!((master.as_str(), db), ("mymaster", 2));
    assert!(creds.username.is_none() && creds.password.is_none());

    let (_, master, db, creds) = sentinel("redis+sentinel://app:p%40ss@s1:26379/main");
    assert_eq!((master.as_str(), db), ("main", 0));
    assert_eq!(creds.username.as_deref(), Some("app"));
    assert_eq!(creds.password.as_deref(), Some("p@ss"));
}

#[test]
fn a_url_without_a_redis_scheme_says_what_is_expected() {
    for url in ["localhost:6379", "http://r:6379", "s3cret@host:6379"] {
        let Err(e) = Deployment::from_settings(Some(url), None) else {
            panic!("{url} accepted");
        };
        let e = e.to_string();
        assert!(e.contains("REDIS_URL: expected redis://"), "{e}");
        assert!(!e.contains("s3cret"), "{e}");
    }
    assert!(Deployment::from_settings(Some("rediss://h:6380"), None).is_ok());
}

#[test]
fn bad_sentinel_urls_are_refused_without_echoing_them() {
    for url in [
        "redis+sentinel://s1:26379",
        "redis+sentinel://:hunter2@/main",
        "redis+sentinel://s1:notaport/main",
        "redis+sentinel://s1/main/notadb",
    ] {
        let err = format!(
            "{:#}",
            Deployment::from_settings(Some(url), None).err().unwrap()
        );
        assert!(
            err.starts_with("REDIS_URL is not a valid Sentinel URL"),
            "{err}"
        );
        assert!(!err.contains("hunter2"), "{err}");
    }
}

#[test]
fn cluster_nodes_come_from_their_own_variable_with_redis_url_credentials() {
    let d = Deployment::from_settings(
        Some("redis://:secret@ignored:6379"),
        Some("10.0.0.1:7000, 10.0.0.2:7001"),
    )
    .unwrap()
    .unwrap();
    let Deployment::Cluster { nodes, credentials } = d else {
        panic!("not cluster")
    };
    assert_eq!(
        nodes,
        vec![("10.0.0.1".into(), 7000), ("10.0.0.2".into(), 7001)]
    );
    assert_eq!(credentials.password.as_deref(), Some("secret"));
    assert!(!format!("{credentials:?}").contains("secret"));

    for bad in ["", "host", "host:port", "redis://h:1"] {
        let err = Deployment::from_settings(None, Some(bad)).err().unwrap();
        assert!(
            err.to_string().starts_with("GREENLIGHT_REDIS_CLUSTER"),
            "{bad}"
        );
    }
}

#[test]
fn anything_else_is_a_single_server() {
    assert!(matches!(
        Deployment::from_settings(Some("redis://127.0.0.1:6379/0"), None).unwrap(),
        Some(Deployment::Single { .. })
    ));
    assert!(Deployment::from_settings(None, None).unwrap().is_none());
}
