//! The command line: export, verify, and what verify says about damage.

use super::*;
use crate::common::cli::greenlight;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn run(mut cmd: Command, args: &[&str]) -> Run {
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.args(args).output())
        .await
        .expect("finishes within 30 s")
        .expect("the binary runs");
    Run {
        code: out.status.code().expect("exited"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn lines_of(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn id_of(line: &str) -> String {
    serde_json::from_str::<Value>(line).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn export_then_verify_and_detect_damage(backend: Backend) {
    let app = spawn_app(backend).await;
    // Interleaved, so one action's entries are not contiguous.
    let (a, _) = created(&app, "deploy.prod").await;
    created(&app, "read.logs").await;
    assert_eq!(app.decide(&a, "approved").await.status, 200);
    created(&app, "db.drop_database").await;

    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("audit.jsonl");
    let path = export.to_str().unwrap();
    let r = run(
        greenlight(&app, "auditor"),
        &["audit", "export", "--output", path],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("exported 8 entries"), "{}", r.stderr);
    let lines = lines_of(&export);
    assert_eq!(lines.len(), 8);
    let head: Entry = serde_json::from_str(&lines[7]).unwrap();

    let ok = run(greenlight(&app, "auditor"), &["audit", "verify", path]).await;
    assert_eq!(ok.code, 0, "{}{}", ok.stdout, ok.stderr);
    assert_eq!(
        ok.stdout.trim(),
        format!("ok: 8 entries, head {}", head.hash)
    );
    // The same trail, fetched live.
    let live = run(greenlight(&app, "auditor"), &["audit", "verify", "--live"]).await;
    assert_eq!((live.code, live.stdout.trim()), (0, ok.stdout.trim()));
    // Standard output works too, identically.
    let stdout = run(greenlight(&app, "admin"), &["audit", "export"]).await;
    assert_eq!(stdout.code, 0);
    assert_eq!(stdout.stdout.lines().collect::<Vec<_>>(), lines);

    // One field of line 3 changed.
    let edited = dir.path().join("edited.jsonl");
    let mut changed = lines.clone();
    let mut entry: Value = serde_json::from_str(&changed[2]).unwrap();
    entry["actor"] = json!("U0MALLORY");
    changed[2] = entry.to_string();
    std::fs::write(&edited, changed.join("\n") + "\n").unwrap();
    let r = run(
        greenlight(&app, "auditor"),
        &["audit", "verify", edited.to_str().unwrap()],
    )
    .await;
    assert_eq!(r.code, 1);
    let expected = format!(
        "broken at line 3 (entry {}): hash mismatch",
        id_of(&lines[2])
    );
    assert!(r.stdout.starts_with(&expected), "{}", r.stdout);

    // Line 4 deleted: the entry after the gap, now line 4, is named.
    let gap = dir.path().join("gap.jsonl");
    let mut shortened = lines.clone();
    shortened.remove(3);
    std::fs::write(&gap, shortened.join("\n") + "\n").unwrap();
    let r = run(
        greenlight(&app, "auditor"),
        &["audit", "verify", gap.to_str().unwrap()],
    )
    .await;
    assert_eq!(r.code, 1);
    let expected = format!(
        "broken at line 4 (entry {}): prev mismatch",
        id_of(&lines[4])
    );
    assert!(r.stdout.starts_with(&expected), "{}", r.stdout);

    // A line that is not an entry.
    let garbage = dir.path().join("garbage.jsonl");
    let mut damaged = lines.clone();
    damaged[5] = "{\"id\": \"1-0\", \"time\": ".into();
    std::fs::write(&garbage, damaged.join("\n")).unwrap();
    let r = run(
        greenlight(&app, "auditor"),
        &["audit", "verify", garbage.to_str().unwrap()],
    )
    .await;
    assert_eq!(r.code, 1);
    assert!(
        r.stdout
            .starts_with("broken at line 6 (entry ?): unparsable entry"),
        "{}",
        r.stdout
    );

    // One action's entries: they have gaps, and verify says why it fails.
    let only_a = dir.path().join("a.jsonl");
    let r = run(
        greenlight(&app, "auditor"),
        &[
            "audit",
            "export",
            "--action-id",
            &a,
            "-o",
            only_a.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let a_lines = lines_of(&only_a);
    assert_eq!(a_lines.len(), 2);
    assert!(a_lines.iter().all(|l| l.contains(&a)));
    let r = run(
        greenlight(&app, "auditor"),
        &["audit", "verify", only_a.to_str().unwrap()],
    )
    .await;
    assert_eq!(r.code, 1);
    assert!(
        r.stdout.starts_with("broken at line 2") && r.stdout.contains("--action-id"),
        "{}",
        r.stdout
    );

    // --since: from the first entry at or after that time, still verifiable.
    let all = run(
        greenlight(&app, "auditor"),
        &["audit", "export", "--since", "2000-01-01T00:00:00Z"],
    )
    .await;
    assert_eq!(all.stdout.lines().count(), 8);
    let later = run(
        greenlight(&app, "auditor"),
        &["audit", "export", "--since", "2999-01-01T00:00:00Z"],
    )
    .await;
    assert_eq!((later.code, later.stdout.as_str()), (0, ""));

    // A requester may not export; bad arguments are usage errors.
    let r = run(greenlight(&app, "app"), &["audit", "export"]).await;
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("forbidden"), "{}", r.stderr);
    let r = run(greenlight(&app, "auditor"), &["audit", "verify"]).await;
    assert_eq!(r.code, 2);
    let r = run(
        greenlight(&app, "auditor"),
        &["audit", "export", "--since", "yesterday"],
    )
    .await;
    assert_eq!(r.code, 2);
}

on_both_backends!(export_then_verify_and_detect_damage);
