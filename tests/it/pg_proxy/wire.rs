//! The wire under the clients: the extended protocol (parameters, prepared statements
//! reused, a pipeline behind a held statement), transaction blocks, and frames the proxy
//! cannot read, which close the connection and never reach the database.

use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Preparing runs nothing and passes; every execution of a held prepared statement is
/// held on its own, with its SQL shown to approvers; reads with parameters pass.
async fn every_execution_of_a_held_prepared_statement_is_held(backend: Backend) {
    let app = spawn_app(backend).await;
    let s = setup(&app).await;
    let client = Arc::new(connect(&s.via_proxy).await);
    let rows = client
        .query("SELECT name FROM users WHERE id = $1", &[&1i32])
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, String>(0), "ada");
    let update = client
        .prepare("UPDATE users SET name = $1 WHERE id = $2")
        .await
        .unwrap();
    assert!(
        app.service.pending(10).await.unwrap().is_empty(),
        "a prepare was held"
    );

    let (c, stmt) = (client.clone(), update.clone());
    let held = tokio::spawn(async move { c.execute(&stmt, &[&"ida", &1i32]).await });
    let action = pending_action(&app).await;
    assert_eq!(action["action"], "pg.update");
    // The SQL, and the values it runs with (tokio-postgres sends them in binary).
    assert_eq!(
        action["binding"]["preview"],
        "UPDATE users SET name = $1 WHERE id = $2\n-- parameters: $1 = (binary) 696461 $2 = (binary) 00000001"
    );
    assert_eq!(
        app.decide(action["id"].as_str().unwrap(), "denied")
            .await
            .status,
        200
    );
    let (code, _) = sqlstate(&held.await.unwrap().unwrap_err());
    assert_eq!(code, "42501");
    assert_eq!(names(&s.direct).await[0], "ada", "the denied UPDATE ran");

    // The same prepared statement again: a new approval, and it runs once approved.
    let (c, stmt) = (client.clone(), update.clone());
    let held = tokio::spawn(async move { c.execute(&stmt, &[&"ida", &1i32]).await });
    let action = pending_action(&app).await;
    assert_eq!(
        app.decide(action["id"].as_str().unwrap(), "approved")
            .await
            .status,
        200
    );
    assert_eq!(held.await.unwrap().unwrap(), 1);
    assert_eq!(names(&s.direct).await[0], "ida");

    // A pipeline waits behind a held statement: the count after it sees its effect.
    let c = client.clone();
    let delete =
        tokio::spawn(async move { c.execute("DELETE FROM users WHERE id = $1", &[&3i32]).await });
    let action = pending_action(&app).await;
    let c = client.clone();
    let count = tokio::spawn(async move {
        c.query_one("SELECT count(*) FROM users", &[])
            .await
            .unwrap()
            .get::<_, i64>(0)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!count.is_finished(), "a read overtook the held statement");
    assert_eq!(
        app.decide(action["id"].as_str().unwrap(), "approved")
            .await
            .status,
        200
    );
    assert_eq!(delete.await.unwrap().unwrap(), 1);
    assert_eq!(count.await.unwrap(), 2);
}

/// A denial inside a transaction block fails the block, as any error would: statements
/// after it are refused until `ROLLBACK`, and nothing of the block is committed.
async fn a_denial_inside_a_transaction_fails_the_block(backend: Backend) {
    let app = spawn_app(backend).await;
    let s = setup(&app).await;
    let client = connect(&s.via_proxy).await;
    client.batch_execute("BEGIN; SELECT 1").await.unwrap();
    let held = tokio::spawn(async move {
        let r = client.batch_execute("DELETE FROM users WHERE id = 1").await;
        (client, r)
    });
    let action = pending_action(&app).await;
    assert_eq!(
        app.decide(action["id"].as_str().unwrap(), "denied")
            .await
            .status,
        200
    );
    let (client, result) = held.await.unwrap();
    assert_eq!(sqlstate(&result.unwrap_err()).0, "42501");
    let (code, _) = sqlstate(&client.batch_execute("SELECT 1").await.unwrap_err());
    assert_eq!(code, "25P02");
    client.batch_execute("COMMIT").await.unwrap();
    client.batch_execute("SELECT 1").await.unwrap();
    assert_eq!(names(&s.direct).await.len(), 3);
}

/// A startup message for `user` on `database`.
fn startup(user: &str, database: &str) -> Vec<u8> {
    let mut body = vec![0, 3, 0, 0];
    for (k, v) in [("user", user), ("database", database)] {
        body.extend(k.as_bytes());
        body.push(0);
        body.extend(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut out = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    out.extend(body);
    out
}

/// A message: its type, length and body.
pub(super) fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend(((body.len() + 4) as i32).to_be_bytes());
    out.extend(body);
    out
}

/// Connects through the proxy with a raw socket, up to the first `ReadyForQuery`.
pub(super) async fn raw_session(s: &Setup) -> tokio::net::TcpStream {
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", s.proxy_port))
        .await
        .unwrap();
    // SSL is refused with `N`, and the client goes on in clear.
    socket
        .write_all(&[0, 0, 0, 8, 4, 210, 22, 47])
        .await
        .unwrap();
    assert_eq!(socket.read_u8().await.unwrap(), b'N');
    socket
        .write_all(&startup("alice", &s.database))
        .await
        .unwrap();
    loop {
        let tag = socket.read_u8().await.unwrap();
        let len = socket.read_i32().await.unwrap() as usize;
        let mut body = vec![0; len - 4];
        socket.read_exact(&mut body).await.unwrap();
        if tag == b'Z' {
            return socket;
        }
    }
}

/// Everything the proxy answers until it closes the connection.
async fn answer_until_closed(socket: &mut tokio::net::TcpStream) -> String {
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut answer))
        .await
        .expect("the proxy closes the connection")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_close_the_connection_unforwarded() {
    let app = spawn_app(Backend::Memory).await;
    let s = setup(&app).await;
    let frames: [Vec<u8>; 5] = [
        // Bytes after the text of a Query: the server would read only the first part.
        frame(b'Q', b"DELETE FROM users\0junk\0"),
        // A length under 4.
        b"Q\0\0\0\x02".to_vec(),
        // A type no client sends.
        frame(b'z', b""),
        // SQL that is not UTF-8.
        frame(b'Q', b"DELETE FROM users\xff\0"),
        // A Parse whose parameter count does not fit its length.
        frame(b'P', b"\0DELETE FROM users\0\0\x05"),
    ];
    for frame in frames {
        let mut socket = raw_session(&s).await;
        socket.write_all(&frame).await.unwrap();
        let answer = answer_until_closed(&mut socket).await;
        assert!(answer.contains("08P01"), "{frame:?}: {answer}");
        assert!(answer.contains("FATAL"), "{frame:?}: {answer}");
    }
    assert_eq!(names(&s.direct).await.len(), 3);
    assert!(app.service.pending(10).await.unwrap().is_empty());

    // A Query longer than the proxy inspects is refused, not passed unread.
    let mut socket = raw_session(&s).await;
    let sql = format!("SELECT '{}'", "x".repeat(2 << 20));
    let mut body = sql.into_bytes();
    body.push(0);
    let _ = socket.write_all(&frame(b'Q', &body)).await;
    let answer = answer_until_closed(&mut socket).await;
    assert!(answer.contains("max_inspected_bytes"), "{answer}");
}

on_both_backends!(
    every_execution_of_a_held_prepared_statement_is_held,
    a_denial_inside_a_transaction_fails_the_block,
);
