//! The README's quickstart, run as written: its shell blocks, in order, with `greenlight`
//! on the PATH. A newcomer copies these commands; if they stop working, this fails.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::common::{cli::BIN, free_port};

/// The README's fenced `sh` blocks, in order.
fn readme_blocks() -> Vec<String> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in readme.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(_), "```") => blocks.push(current.take().unwrap()),
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

/// The block that contains `needle` (the README's wording may move, its commands may not).
fn block<'b>(blocks: &'b [String], needle: &str) -> &'b str {
    let found: Vec<&String> = blocks.iter().filter(|b| b.contains(needle)).collect();
    assert_eq!(
        found.len(),
        1,
        "one README block with {needle:?}: {found:?}"
    );
    found[0]
}

/// `bash -c SCRIPT` in the repository, with this build's `greenlight` first on the PATH and
/// the server on `port`; nothing else from the test's environment that names Greenlight.
fn shell(script: &str, port: u16) -> Command {
    let bin_dir = Path::new(BIN).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("bash");
    cmd.arg("-ec")
        .arg(script)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k.starts_with("GREENLIGHT_") || k == "REDIS_URL" || k.starts_with("SLACK_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("PATH", path)
        .env("GREENLIGHT_LISTEN", format!("127.0.0.1:{port}"))
        .env("GREENLIGHT_URL", format!("http://127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    cmd
}

/// A block running in the background with everything it started (its own process
/// group), killed together when dropped, even when the test fails.
struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(pid) = self.0.id() {
            // SAFETY: kill(2) with a negative pid signals that process group; no memory is touched.
            unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
        }
    }
}

/// Starts a server block in the background and waits until it answers `/healthz`.
async fn serve(script: &str, port: u16) -> Group {
    let child = shell(script, port).spawn().expect("bash runs");
    let url = format!("http://127.0.0.1:{port}/healthz");
    for _ in 0..200 {
        if reqwest::get(&url)
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Group(child);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = child.wait_with_output().await.unwrap();
    panic!(
        "the README's server block did not start:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs a requesting block that waits; returns the action id it printed, and the process.
async fn request(script: &str, port: u16) -> (String, Child) {
    let mut child = shell(script, port).spawn().expect("bash runs");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("the request prints its action")
        .unwrap()
        .expect("a line");
    let id = first
        .split_whitespace()
        .find(|w| w.starts_with("act_"))
        .unwrap_or_else(|| panic!("an action id in {first:?}"))
        .to_owned();
    assert!(first.contains("pending"), "{first}");
    // The rest of its output (the decision) is read when it exits.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (id, child)
}

/// Runs a block to completion; answers its standard output, failing on a non-zero exit.
async fn run(script: &str, port: u16) -> String {
    let out = shell(script, port).output().await.expect("bash runs");
    assert!(
        out.status.success(),
        "{script}\nexit {:?}\n{}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The README's placeholder action id, replaced by the one the request printed.
const EXAMPLE_ID: &str = "act_01KAQ3Z7X0M9J8W2V5T4R6Y1NB";

async fn exits_approved(mut child: Child) {
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("the waiting request ends once decided")
        .unwrap();
    assert_eq!(status.code(), Some(0), "exit 0: approved");
}

#[tokio::test]
async fn the_readme_quickstart_runs_as_written() {
    let blocks = readme_blocks();
    let port = free_port();

    // "Run the service": the install step is what put `greenlight` on the PATH here.
    let run_service = block(&blocks, "cargo install --locked --path . &&");
    let (install, serve_cmd) = run_service.split_once("&&").expect("install && serve");
    assert!(
        install.contains("cargo install --locked --path ."),
        "{install}"
    );
    let server = serve(serve_cmd, port).await;

    let (id, waiting) = request(block(&blocks, "--reason \"ship it\" --wait"), port).await;
    let decide = block(
        &blocks,
        "greenlight decide act_01KAQ3Z7X0M9J8W2V5T4R6Y1NB --approve\n",
    );
    let out = run(&decide.replace(EXAMPLE_ID, &id), port).await;
    assert!(
        out.contains(&id),
        "`greenlight pending` lists the action: {out}"
    );
    exits_approved(waiting).await;
    drop(server);
}

#[tokio::test]
async fn the_readme_policy_file_walkthrough_runs_as_written() {
    let blocks = readme_blocks();
    let port = free_port();

    let server = serve(
        block(&blocks, "GREENLIGHT_POLICY=examples/policy.toml"),
        port,
    )
    .await;
    let (id, waiting) = request(block(&blocks, "--context env=prod"), port).await;
    let out = run(
        &block(&blocks, "--reason \"looks fine\"").replace(EXAMPLE_ID, &id),
        port,
    )
    .await;
    assert!(
        out.contains(&id),
        "pending lists it, the audit trail has it: {out}"
    );
    assert!(
        out.contains("\"event\":\"approved\""),
        "the approval is audited: {out}"
    );
    exits_approved(waiting).await;
    drop(server);
}
