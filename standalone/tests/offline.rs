//! Offline push on the real `parley-standalone` binary: recipients
//! connected nowhere are notified through the webhook (retried on failure,
//! with its credentials and an idempotency key), those connected are not,
//! and a webhook that never answers holds up no delivery.

mod support;

use std::time::Duration;

use parley_testkit::webhook::{Answer, Hook};
use serde_json::json;
use support::Server;

fn server(hook: &Hook, extra: &[&str]) -> Server {
    let url = hook.url();
    let mut args = vec!["--offline-webhook", url.as_str(), "--offline-webhook-authorization", "Bearer hook-key"];
    args.extend_from_slice(&support::UNTHROTTLED);
    args.extend_from_slice(extra);
    Server::start(&args)
}

#[tokio::test]
async fn offline_recipients_are_notified_with_retries_and_find_the_message_later() {
    let mut hook = Hook::start(vec![Answer::Status(503), Answer::Status(204)]).await;
    let server = server(&hook, &["--offline-backoff", "50ms"]);
    let mut alice = server.connect("alice").await;
    let _bob = server.connect("bob").await;
    server.create_group("alice", "team", &["bob", "carol"]).await;
    alice.send_msg(json!({"group": "team"}), "t1", "lunch?").await;
    assert_eq!(alice.ack("t1").await.1, 1);

    let first = hook.next(support::WAIT).await.expect("a notice");
    let second = hook.next(support::WAIT).await.expect("the notice again after a 503");
    for r in [&first, &second] {
        assert_eq!(r.body, first.body, "the same notice");
        assert_eq!(r.header("Authorization"), Some("Bearer hook-key"));
        assert_eq!(r.header("Idempotency-Key"), first.header("Idempotency-Key"));
    }
    assert!(first.head.starts_with("POST /offline HTTP/1.1"), "{}", first.head);
    assert_eq!(
        (first.user(), first.body["from"].as_str(), first.body["seq"].as_u64(), first.body["conversation"].as_str()),
        ("carol", Some("alice"), Some(1), Some("group:team")),
        "only carol is connected nowhere; alice sent it"
    );
    assert!(hook.drain(Duration::from_millis(500)).await.is_empty(), "taken on the second attempt: no more");

    // Nothing was lost by being offline: carol finds it when she comes.
    let (status, body) = server.http("GET", "/api/conversations", Some("carol"), None).await;
    assert_eq!(status, 200, "{body}");
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!((list[0]["unread"].clone(), list[0]["last_message"]["body"].clone()), (json!(1), json!("lunch?")));
}

#[tokio::test]
async fn a_webhook_that_never_answers_holds_up_no_delivery() {
    let mut hook = Hook::start(vec![Answer::Hang]).await;
    let server = server(&hook, &[]);
    let mut alice = server.connect("alice").await;
    let mut bob = server.connect("bob").await;
    server.create_group("alice", "team", &["bob", "carol", "dave"]).await;
    for i in 1..=20 {
        alice.send_msg(json!({"group": "team"}), &format!("t{i}"), &format!("note {i}")).await;
    }
    let mut got = Vec::new();
    for _ in 0..20 {
        got.push(bob.next_message().await.seq);
    }
    assert_eq!(got, (1..=20).collect::<Vec<u64>>(), "bob got every message");
    // Meanwhile the notices for carol and dave went out and none was answered.
    let pending = hook.drain(Duration::from_millis(500)).await;
    assert!(!pending.is_empty(), "the notices were sent");
    assert!(pending.iter().all(|r| ["carol", "dave"].contains(&r.user())), "only the offline members");
}

#[test]
fn an_unusable_webhook_is_refused_at_start() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_parley-standalone"))
        .args(["--listen", "127.0.0.1:0", "--database", "/nonexistent/never-opened.db"])
        .args(["--offline-webhook", "https://notify.example/hook"])
        .output()
        .expect("run parley-standalone");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("only http:// webhooks are supported"), "{stderr}");
}
