//! `--help` of every command, found by walking the command list: each option and argument
//! is described, and each command names the environment variables it reads.

use super::*;

/// The help of `greenlight WORDS... --help`.
fn help(words: &[&str]) -> String {
    let args: Vec<&str> = words.iter().copied().chain(["--help"]).collect();
    let r = run_sync(&args);
    assert_eq!(r.code, 0, "{args:?}: {r:?}");
    r.stdout
}

/// The lines of the section `title` (`Commands:`, `Options:`, ...), up to the next one.
fn section<'a>(help: &'a str, title: &str) -> Vec<&'a str> {
    help.lines()
        .skip_while(|l| *l != title)
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with(' '))
        .collect()
}

/// The subcommands a help lists (without `help`).
fn subcommands(help: &str) -> Vec<String> {
    section(help, "Commands:")
        .iter()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

/// `text` without clap's `[env: X=]`, `[default: ...]` and `[possible values: ...]`.
fn without_annotations(text: &str) -> String {
    let mut out = text.to_owned();
    for open in ["[env: ", "[default: ", "[possible values: "] {
        while let Some(start) = out.find(open) {
            let end = out[start..].find(']').map_or(out.len(), |e| start + e + 1);
            out.replace_range(start..end, "");
        }
    }
    out.trim().to_owned()
}

/// Each option and argument of the `Options:` and `Arguments:` sections with its
/// description: the text after it on its line, or on the lines indented under it.
fn entries(help: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for title in ["Arguments:", "Options:"] {
        for line in section(help, title) {
            let indent = line.len() - line.trim_start().len();
            let text = line.trim();
            if text.is_empty() || text == "Possible values:" || text.starts_with("- ") {
                continue;
            }
            if indent <= 6 && text.starts_with(['-', '<', '[']) {
                let (spec, rest) = text.split_once("  ").unwrap_or((text, ""));
                out.push((spec.to_owned(), rest.trim().to_owned()));
            } else if let Some((_, description)) = out.last_mut() {
                description.push(' ');
                description.push_str(text);
            }
        }
    }
    out
}

#[test]
fn every_option_and_argument_is_described() {
    let mut todo: Vec<Vec<String>> = vec![vec![]];
    let mut seen = 0;
    while let Some(words) = todo.pop() {
        let words_ref: Vec<&str> = words.iter().map(String::as_str).collect();
        let text = help(&words_ref);
        for (spec, description) in entries(&text) {
            assert!(
                !without_annotations(&description).is_empty(),
                "greenlight {} --help: `{spec}` has no description:\n{text}",
                words.join(" ")
            );
        }
        for sub in subcommands(&text) {
            todo.push(words.iter().cloned().chain([sub]).collect());
        }
        seen += 1;
    }
    assert!(seen >= 18, "only {seen} commands found");
}

#[test]
fn each_command_names_the_environment_it_reads() {
    const CLIENT: &[&str] = &[
        "GREENLIGHT_URL",
        "GREENLIGHT_CLIENT_ID",
        "GREENLIGHT_CLIENT_SECRET",
    ];
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["serve"],
            &[
                "GREENLIGHT_LISTEN",
                "GREENLIGHT_PUBLIC_URL",
                "REDIS_URL",
                "GREENLIGHT_POLICY",
                "SLACK_BOT_TOKEN",
                "SLACK_SIGNING_SECRET",
                "SLACK_DEFAULT_CHANNEL",
                "GREENLIGHT_GRANT_SIGNING_KEY",
                "GREENLIGHT_LOG_FORMAT",
                // The built-in policy's client secret, read outside the options.
                "GREENLIGHT_CLIENT_SECRET",
                "RUST_LOG",
            ],
        ),
        (&["request"], &["GREENLIGHT_REQUESTER"]),
        (&["gate"], &["GREENLIGHT_REQUESTER"]),
        (
            &["proxy"],
            &["GREENLIGHT_PROXY_UPSTREAM", "GREENLIGHT_PROXY_ROUTES"],
        ),
        (&["pending"], &[]),
        (&["status"], &[]),
        (&["wait"], &[]),
        (&["decide"], &[]),
        (&["access", "request"], &["GREENLIGHT_REQUESTER"]),
        (&["access", "list"], &[]),
        (&["access", "revoke"], &[]),
        (&["audit", "export"], &[]),
        (&["audit", "verify"], &[]),
        (&["oncall"], &["GREENLIGHT_POLICY"]),
        (
            &["secret", "derive"],
            &["GREENLIGHT_CLIENT_SECRET", "GREENLIGHT_NOTIFY_SECRET"],
        ),
    ];
    for (words, extra) in cases {
        let text = help(words);
        let client_command = !matches!(words[0], "serve" | "oncall" | "secret");
        let wanted = extra
            .iter()
            .chain(if client_command { CLIENT } else { &[] });
        for var in wanted {
            assert!(
                text.contains(var),
                "greenlight {} --help does not name {var}:\n{text}",
                words.join(" ")
            );
        }
    }
}
