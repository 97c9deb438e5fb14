//! Characters that make text read differently from what it is: bidirectional controls
//! (the "Trojan Source" reordering) and invisible format characters. Approvers read
//! `action`, `resource`, `reason`, the requester and `context` in Slack, so a request
//! that carries one could show `prod` while saying `dorp`; such requests are refused.

/// Whether `c` reorders or hides text. Refused, with the reason for each range:
/// - U+061C ARABIC LETTER MARK, U+200E/U+200F LRM/RLM: invisible direction marks;
/// - U+200B–U+200D: zero-width space, non-joiner and joiner (invisible);
/// - U+2028/U+2029: line and paragraph separators (break a line where none shows);
/// - U+202A–U+202E: embeddings and overrides (LRE, RLE, PDF, LRO, RLO);
/// - U+2060–U+2064: word joiner and invisible operators;
/// - U+2066–U+2069: isolates (LRI, RLI, FSI, PDI);
/// - U+FEFF: zero-width no-break space (byte-order mark).
pub fn is_deceptive_format_char(c: char) -> bool {
    matches!(c,
        '\u{061C}'
        | '\u{200B}'..='\u{200F}'
        | '\u{2028}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{2069}'
        | '\u{FEFF}')
}

/// The first such character in `s`, if any.
pub fn deceptive_format_char(s: &str) -> Option<char> {
    s.chars().find(|&c| is_deceptive_format_char(c))
}

/// `s` with each such character written as `<U+202E>`, so an error message can name a
/// key that holds one without carrying it.
pub fn visible(s: &str) -> String {
    s.chars()
        .map(|c| {
            if is_deceptive_format_char(c) {
                format!("<U+{:04X}>", c as u32)
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// The first such character anywhere in a JSON value, keys included, with the JSON
/// pointer of where it was found (`/user/name`, or the key's own pointer), made
/// [`visible`].
pub fn deceptive_in_json(value: &serde_json::Value, at: &str) -> Option<(String, char)> {
    use serde_json::Value;
    match value {
        Value::String(s) => deceptive_format_char(s).map(|c| (at.to_owned(), c)),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| deceptive_in_json(v, &format!("{at}/{i}"))),
        Value::Object(map) => deceptive_in_map(map, at),
        Value::Null | Value::Bool(_) | Value::Number(_) => None,
    }
}

/// [`deceptive_in_json`] for an object.
pub fn deceptive_in_map(
    map: &serde_json::Map<String, serde_json::Value>,
    at: &str,
) -> Option<(String, char)> {
    map.iter().find_map(|(k, v)| {
        // RFC 6901 escaping, so the pointer names the key as it is.
        let path = format!("{at}/{}", visible(&k.replace('~', "~0").replace('/', "~1")));
        match deceptive_format_char(k) {
            Some(c) => Some((path, c)),
            None => deceptive_in_json(v, &path),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_listed_character_is_refused_and_ordinary_text_is_not() {
        for c in [
            '\u{061C}', '\u{200B}', '\u{200C}', '\u{200D}', '\u{200E}', '\u{200F}', '\u{2028}',
            '\u{2029}', '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2060}',
            '\u{2064}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}', '\u{FEFF}',
        ] {
            assert_eq!(
                deceptive_format_char(&format!("prod{c}x")),
                Some(c),
                "{c:?}"
            );
        }
        for ok in [
            "postgres://prod/users",
            "déploiement",
            "שלום עולם",
            "مرحبا",
            "日本語",
            "emoji 🚀 and ZWJ-free text",
            "tab\tand newline\n",
            "\u{2065}\u{2070}\u{2027}\u{200A}",
        ] {
            assert_eq!(deceptive_format_char(ok), None, "{ok}");
        }
    }

    #[test]
    fn json_values_and_keys_are_searched_at_any_depth() {
        let v = json!({"a": {"list": [1, "ok", {"deep": "x\u{202E}y"}]}});
        assert_eq!(
            deceptive_in_json(&v, ""),
            Some(("/a/list/2/deep".to_owned(), '\u{202E}'))
        );
        let v = json!({"a/b": {"k\u{200B}ey": 1}});
        assert_eq!(
            deceptive_in_json(&v, ""),
            Some(("/a~1b/k<U+200B>ey".to_owned(), '\u{200B}'))
        );
        assert_eq!(deceptive_in_json(&json!({"n": 1, "s": "fine"}), ""), None);
    }
}
