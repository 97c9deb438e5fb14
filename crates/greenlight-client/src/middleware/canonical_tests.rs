use super::*;
use proptest::prelude::*;

#[test]
fn tricks_reach_one_form() {
    for raw in [
        "/accounts/42",
        "/x/../accounts/42",
        "/accounts/./42",
        "/x/%2e%2e/accounts/42",
        "/x/%2E%2E/accounts/42",
        "/x/.%2e/accounts/42",
        "//accounts/42",
        "/accounts//42",
        "/accounts/42/",
        "/accounts/%34%32",
        "/%61ccounts/42",
        "/accounts/42/.",
        "/accounts/42/x/..",
        "/../../accounts/42",
    ] {
        assert_eq!(path(raw).as_deref(), Ok("/accounts/42"), "{raw}");
    }
    assert_eq!(path("/").as_deref(), Ok("/"));
    assert_eq!(path("/..").as_deref(), Ok("/"));
    assert_eq!(path("//").as_deref(), Ok("/"));
    // Escapes of reserved characters stay escaped, in upper case.
    assert_eq!(path("/a%3fb/%c3%a9").as_deref(), Ok("/a%3Fb/%C3%A9"));
    assert_eq!(path("/caf\u{e9}").as_deref(), Ok("/caf\u{e9}"));
    assert_eq!(
        target("/x/../accounts/42?force=1&x=%2e").as_deref(),
        Ok("/accounts/42?force=1&x=%2e")
    );
}

#[test]
fn what_an_upstream_could_read_otherwise_is_refused() {
    use CanonicalError::*;
    for (raw, why) in [
        ("/accounts%2F42", EncodedSeparator),
        ("/accounts%2f42", EncodedSeparator),
        ("/accounts%5C42", EncodedSeparator),
        ("/accounts/42%00", EncodedSeparator),
        ("/x/%252e%252e/accounts/42", EncodedSeparator),
        ("/accounts\\42", AmbiguousCharacter),
        ("/accounts;x=1/42", AmbiguousCharacter),
        ("/accounts/%ff", NotUtf8),
        ("/accounts/%c3", NotUtf8),
        ("/accounts/%4", BadEscape),
        ("/accounts/%zz", BadEscape),
        ("/accounts/%+1", BadEscape),
        ("accounts/42", NotOriginForm),
        ("*", NotOriginForm),
    ] {
        assert_eq!(path(raw), Err(why), "{raw}");
    }
}

#[test]
fn methods_are_upper_case_and_head_is_get() {
    assert!(method(&Method::DELETE).is_ok());
    let lower = Method::from_bytes(b"delete").unwrap();
    assert!(matches!(method(&lower), Err(CanonicalError::Method(_))));
    assert!(method_matches(&Method::GET, &Method::HEAD));
    assert!(!method_matches(&Method::DELETE, &Method::HEAD));
    assert!(!method_matches(&Method::GET, &Method::POST));
}

#[test]
fn parameters_are_decoded_for_templates() {
    assert_eq!(decode_param("42"), "42");
    assert_eq!(decode_param("a%20b"), "a b");
}

/// What a typical upstream routes on: the path as a WHATWG URL parser normalises it
/// (the `url` crate, as browsers, Go and many frameworks), then each segment decoded.
fn upstream_view(forwarded: &str) -> Option<Vec<String>> {
    let url = url::Url::parse(&format!("http://upstream{forwarded}")).ok()?;
    url.path_segments().map(|segments| {
        segments
            .map(|s| decode_param(s).into_owned())
            .filter(|s| !s.is_empty())
            .collect()
    })
}

fn segments(canonical: &str) -> Vec<String> {
    canonical
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| decode_param(s).into_owned())
        .collect()
}

/// Paths built from the pieces path tricks are made of.
fn tricky_path() -> impl Strategy<Value = String> {
    let piece = prop::sample::select(vec![
        "accounts", "42", "admin", "x", ".", "..", "", "%2e", "%2E", "%2e%2e", ".%2e", "%34%32",
        "%61", "%2F", "%2f", "%5C", "%25", "%252e", "%00", "%20", "%3F", "%3B", ";", "\\", "~",
        "%7E", "%C3%A9", "%ff", "é", "a.b", "%", "%4", "..%2f", "-", "_",
    ]);
    prop::collection::vec(piece, 0..8).prop_map(|pieces| {
        let mut p = String::new();
        for piece in pieces {
            p.push('/');
            p.push_str(piece);
        }
        if p.is_empty() { "/".into() } else { p }
    })
}

proptest! {
    /// For any path: what the gate matched routes on is what the upstream reads, and the
    /// canonical form is a fixed point.
    #[test]
    fn the_matched_path_is_the_forwarded_path(raw in tricky_path()) {
        if let Ok(canonical) = path(&raw) {
            let again = path(&canonical);
            prop_assert_eq!(again.as_deref(), Ok(canonical.as_str()));
            let upstream = upstream_view(&canonical);
            prop_assert_eq!(upstream.as_ref(), Some(&segments(&canonical)), "{}", canonical);
            // A route on `/accounts/{id}` or `/admin/*` matches the canonical path exactly
            // when it matches what the upstream routes on.
            let read = upstream.unwrap();
            let ours = segments(&canonical);
            let delete_route = |s: &[String]| s.len() == 2 && s[0] == "accounts";
            let admin_route = |s: &[String]| s.first().is_some_and(|f| f == "admin");
            prop_assert_eq!(delete_route(&ours), delete_route(&read));
            prop_assert_eq!(admin_route(&ours), admin_route(&read));
        }
    }

    #[test]
    fn canonical_paths_hold_no_dot_segments_or_empty_segments(raw in tricky_path()) {
        if let Ok(canonical) = path(&raw) {
            prop_assert!(canonical.starts_with('/'));
            prop_assert!(canonical == "/" || !canonical.ends_with('/'));
            prop_assert!(!canonical.contains("//"));
            for s in canonical.split('/').skip(1) {
                prop_assert!(s != "." && s != "..");
                prop_assert!(!s.to_ascii_lowercase().contains("%2e"));
            }
        }
    }
}
