//! Untrusted text made safe for Slack mrkdwn: escaping, truncation that never cuts an
//! entity, and the only `<…>` constructs Greenlight writes, built from trusted ids
//! (`<@U…>`, `<!subteam^S…>`, `<!date^…>`, a plain https permalink).

use crate::domain::rfc3339;
use chrono::{DateTime, Utc};

/// Escapes text for Slack mrkdwn: `&`, `<` and `>` and nothing else, as Slack asks.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        push_escaped(&mut out, c);
    }
    out
}

pub(super) fn push_escaped(out: &mut String, c: char) {
    match c {
        '&' => out.push_str("&amp;"),
        '<' => out.push_str("&lt;"),
        '>' => out.push_str("&gt;"),
        c => out.push(c),
    }
}

/// How line breaks in untrusted text are rendered.
#[derive(Clone, Copy)]
pub(super) enum Lines {
    /// Collapsed to spaces, so a value cannot start a line of its own inside our layout.
    One,
    /// Kept, each new line continuing a `>` quote.
    Quoted,
}

/// Escapes `s` and truncates the result to at most `max` characters, ending with `…` when
/// cut. Truncation happens between escaped characters, never inside an entity.
pub(super) fn text(s: &str, max: usize, lines: Lines) -> String {
    let mut out = String::new();
    let mut len = 0;
    let mut piece = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        piece.clear();
        match (c, lines) {
            ('\r', _) if chars.peek() == Some(&'\n') => continue,
            ('\n' | '\r' | '\u{2028}' | '\u{2029}', Lines::Quoted) => piece.push_str("\n>"),
            ('\u{2028}' | '\u{2029}', Lines::One) => piece.push(' '),
            (c, _) if c.is_control() => piece.push(' '),
            (c, _) => push_escaped(&mut piece, c),
        }
        let n = piece.chars().count();
        // Keep room for the ellipsis unless this is the very last character.
        let room = if chars.peek().is_some() {
            max.saturating_sub(1)
        } else {
            max
        };
        if len + n > room {
            out.push('…');
            return out;
        }
        out.push_str(&piece);
        len += n;
    }
    out
}

pub(super) fn one_line(s: &str, max: usize) -> String {
    text(s, max, Lines::One)
}

/// Truncates already-safe text to `max` characters with `…`.
pub(super) fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// `U…`/`W…` followed by upper-case letters and digits: a Slack user id.
pub(super) fn is_user_id(s: &str) -> bool {
    is_slack_id(s, &['U', 'W'])
}

pub(super) fn is_subteam_id(s: &str) -> bool {
    is_slack_id(s, &['S'])
}

pub(super) fn is_slack_id(s: &str, prefixes: &[char]) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if prefixes.contains(&c))
        && s.len() >= 2
        && s.len() <= 32
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

/// A person: a mention when it is a Slack user id, escaped text otherwise.
pub(super) fn person(s: &str) -> String {
    if is_user_id(s) {
        format!("<@{s}>")
    } else {
        one_line(s, 200)
    }
}

/// An approver from the policy: `U…`/`W…` → `<@U…>`, `S…` → `<!subteam^S…>`, anything else
/// (`@handle`, an email) as escaped text.
pub fn mention(approver: &str) -> String {
    if is_user_id(approver) {
        format!("<@{approver}>")
    } else if is_subteam_id(approver) {
        format!("<!subteam^{approver}>")
    } else {
        one_line(approver, 200)
    }
}

/// A time every reader sees in their own zone, with an RFC 3339 fallback.
pub(super) fn slack_date(t: &DateTime<Utc>) -> String {
    format!(
        "<!date^{}^{{date_short_pretty}} at {{time}}|{}>",
        t.timestamp(),
        rfc3339::format(t)
    )
}

/// Text for inside a code block, shown as it will run. Inside a code block only a backtick
/// could end it early: it is shown as `ˋ`. Control and invisible format characters (bidi
/// overrides, zero-width) show as `�`, so the text approvers read is the text that runs.
/// Still to be escaped (`escape`) like any text.
pub(super) fn code_text(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '`' => '\u{2cb}',
            '\n' | '\t' => c,
            c if c.is_control() || is_invisible_format(c) => '\u{fffd}',
            c => c,
        })
        .collect()
}

/// Bidirectional controls and zero-width characters: they change what text looks like.
pub(super) fn is_invisible_format(c: char) -> bool {
    matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

/// A URL we can put inside `<…|…>` without it ending the link early.
pub(super) fn is_plain_https(url: &str) -> bool {
    url.starts_with("https://")
        && !url
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '|' | '<' | '>'))
}
