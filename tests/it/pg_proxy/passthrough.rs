//! What the proxy passes through without a say: SCRAM authentication (it never needs a
//! password), a cancel request, a large result streamed back; and what it does when the
//! client leaves while a statement is held.

use super::*;
use crate::common::postgres::CAROL_PASSWORD;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_authentication_passes_through() {
    let app = spawn_app(Backend::Memory).await;
    let s = setup(&app).await;
    let as_carol = |password: &str| {
        format!(
            "host=127.0.0.1 port={} user=carol password='{password}' dbname={}",
            s.proxy_port, s.database
        )
    };
    let (client, connection) =
        tokio_postgres::connect(&as_carol(CAROL_PASSWORD), tokio_postgres::NoTls)
            .await
            .expect("SCRAM through the proxy");
    tokio::spawn(connection);
    let who: String = client
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(who, "carol");
    let wrong = tokio_postgres::connect(&as_carol("wrong"), tokio_postgres::NoTls).await;
    let e = wrong
        .err()
        .expect("a wrong password is refused by the database");
    assert_eq!(sqlstate(&e).0, "28P01");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_request_and_large_results_pass_through() {
    let app = spawn_app(Backend::Memory).await;
    let s = setup(&app).await;
    let client = Arc::new(connect(&s.via_proxy).await);
    let c = client.clone();
    let sleeping = tokio::spawn(async move { c.batch_execute("SELECT pg_sleep(30)").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    client
        .cancel_token()
        .cancel_query(tokio_postgres::NoTls)
        .await
        .unwrap();
    let result = tokio::time::timeout(Duration::from_secs(10), sleeping)
        .await
        .expect("the cancel request reached the database")
        .unwrap();
    assert_eq!(sqlstate(&result.unwrap_err()).0, "57014");

    // 32 MiB in rows of 1 MiB, and one row of 32 MiB, intact.
    let rows = client
        .query(
            "SELECT repeat(chr(65 + i % 26), 1048576) FROM generate_series(0, 31) AS i",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 32);
    for (i, row) in rows.iter().enumerate() {
        let text: String = row.get(0);
        assert_eq!(text.len(), 1 << 20);
        assert!(text.bytes().all(|b| b == b'A' + (i % 26) as u8));
    }
    let big: String = client
        .query_one("SELECT repeat('z', 33554432)", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(big.len(), 32 << 20);
    assert!(app.service.pending(10).await.unwrap().is_empty());
}

/// A client that disconnects while its statement is held: the action is cancelled, and
/// the statement never runs.
async fn a_client_that_leaves_while_held_cancels_the_action(backend: Backend) {
    let app = spawn_app(backend).await;
    let s = setup(&app).await;
    let mut socket = super::wire::raw_session(&s).await;
    let mut body = b"DELETE FROM users".to_vec();
    body.push(0);
    socket
        .write_all(&super::wire::frame(b'Q', &body))
        .await
        .unwrap();
    let action = pending_action(&app).await;
    drop(socket);
    let id = action["id"].as_str().unwrap();
    let mut status = Value::Null;
    for _ in 0..100 {
        status = app.get("app", id).await.body["status"].clone();
        if status == "cancelled" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, "cancelled");
    assert_eq!(names(&s.direct).await.len(), 3);
}

/// A cancel request (Ctrl+C in `psql`) while a statement is held ends the wait with
/// `57014` and cancels the action; the statement never runs and the session goes on.
async fn a_cancel_request_while_held_cancels_the_action(backend: Backend) {
    let app = spawn_app(backend).await;
    let s = setup(&app).await;
    let client = Arc::new(connect(&s.via_proxy).await);
    let cancel = client.cancel_token();
    let c = client.clone();
    let held = tokio::spawn(async move { c.simple_query("DELETE FROM users").await });
    let action = pending_action(&app).await;
    cancel.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let e = tokio::time::timeout(Duration::from_secs(10), held)
        .await
        .expect("the wait ends")
        .unwrap()
        .unwrap_err();
    let (code, message) = sqlstate(&e);
    assert_eq!(code, "57014");
    assert!(message.contains("due to user request"), "{message}");
    let id = action["id"].as_str().unwrap();
    assert_eq!(app.get("app", id).await.body["status"], "cancelled");
    assert_eq!(names(&s.direct).await.len(), 3);
    let rows = client.query("SELECT 1", &[]).await.unwrap();
    assert_eq!(rows.len(), 1);
}

/// `COPY … FROM STDIN` and `COPY … TO STDOUT` are held like any write (a rule's `copy`
/// kind); once approved, their data streams both ways.
async fn copy_streams_both_ways_once_approved(backend: Backend) {
    let app = spawn_app(backend).await;
    let s = setup(&app).await;
    let client = Arc::new(connect(&s.via_proxy).await);
    let c = client.clone();
    let copy_in = tokio::spawn(async move {
        let sink = c
            .copy_in::<_, bytes::Bytes>("COPY users FROM STDIN")
            .await?;
        let rows: String = (10..20_010).map(|i| format!("{i}\tuser{i}\n")).collect();
        futures::pin_mut!(sink);
        futures::SinkExt::send(&mut sink, bytes::Bytes::from(rows)).await?;
        sink.finish().await
    });
    let action = pending_action(&app).await;
    assert_eq!(action["action"], "pg.copy");
    assert_eq!(
        app.decide(action["id"].as_str().unwrap(), "approved")
            .await
            .status,
        200
    );
    assert_eq!(copy_in.await.unwrap().unwrap(), 20_000);
    assert_eq!(names(&s.direct).await.len(), 20_003);

    let c = client.clone();
    let copy_out = tokio::spawn(async move {
        let stream = c.copy_out("COPY users TO STDOUT").await?;
        futures::pin_mut!(stream);
        let mut all = Vec::new();
        while let Some(chunk) = stream.next().await {
            all.extend_from_slice(&chunk?);
        }
        Ok::<_, tokio_postgres::Error>(all)
    });
    let action = pending_action(&app).await;
    assert_eq!(
        app.decide(action["id"].as_str().unwrap(), "approved")
            .await
            .status,
        200
    );
    let out = copy_out.await.unwrap().unwrap();
    assert_eq!(out.iter().filter(|b| **b == b'\n').count(), 20_003);
}

on_both_backends!(
    copy_streams_both_ways_once_approved,
    a_client_that_leaves_while_held_cancels_the_action,
    a_cancel_request_while_held_cancels_the_action,
);
