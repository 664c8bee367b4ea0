//! `/readyz` says whether a process can do its job, against the real Kafka
//! and PostgreSQL: the gateway (both listeners), storage and push consumers
//! answer "ready" once connected, subscribed and caught up; when their
//! database goes away the gateway and storage answer 503 naming it, while
//! the push consumer, which has no database, stays ready.

use std::time::Duration;

use parley_tests::chat::{self, Proc};
use parley_tests::operator::free_port;
use parley_tests::{env, postgres, wait};

/// (status, body) of GET `path` on `addr`.
async fn get(addr: &str, path: &str) -> Result<(u16, String), String> {
    tokio::time::timeout(Duration::from_secs(5), async {
        let (status, body) = chat::http(addr, "GET", path, "probe", None).await;
        Ok((status, body))
    })
    .await
    .map_err(|_| format!("{addr}{path}: no answer"))?
}

async fn wait_answer(proc: &Proc, addr: &str, status: u16, needle: &str) -> String {
    wait::until(&format!("{} /readyz {status} with {needle:?}", proc.name), 60, || async {
        let (s, body) = get(addr, "/readyz").await?;
        if s == status && body.contains(needle) { Ok(body) } else { Err(format!("{s} {body:?}")) }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_what_each_process_needs() {
    let prefix = env::unique("ready");
    let db = chat::prepare(&prefix, 2).await;
    let specs = chat::render(&prefix, &db);
    // start_consumer returns once /readyz answers "ready": group joined,
    // database reachable (storage), user events caught up (push).
    let storage = chat::start_consumer(&specs.storage, &format!("{prefix}-storage")).await;
    let push = chat::start_consumer(&specs.push, &format!("{prefix}-push")).await;
    let internal = format!("127.0.0.1:{}", free_port());
    let gateway = chat::start_gateway(&specs.gateway, &format!("{prefix}-gateway"), &internal);

    let ready = wait_answer(&gateway, &gateway.addr, 200, "ready").await;
    assert_eq!(ready, "ready");
    assert_eq!(wait_answer(&gateway, &internal, 200, "ready").await, "ready");
    assert_eq!(get(&storage.addr, "/readyz").await.unwrap(), (200, "ready".to_owned()));
    assert_eq!(get(&push.addr, "/readyz").await.unwrap(), (200, "ready".to_owned()));

    // The database goes (its sessions closed): those that need it say so.
    postgres::drop_database(&db).await.expect("drop the scratch database");
    let body = wait_answer(&gateway, &gateway.addr, 503, "database:").await;
    assert!(body.starts_with("not ready\n"), "{body:?}");
    assert!(!body.contains("kafka:"), "Kafka is still there: {body:?}");
    wait_answer(&gateway, &internal, 503, "database:").await;
    wait_answer(&storage, &storage.addr, 503, "database:").await;
    assert_eq!(get(&push.addr, "/readyz").await.unwrap(), (200, "ready".to_owned()));
    // Liveness is another matter: nothing here needs a restart.
    assert_eq!(get(&gateway.addr, "/healthz").await.unwrap().0, 200);

    drop((gateway, storage, push));
    let _ = parley_tests::kafka::delete_topics_with_prefix(&prefix).await;
}
