//! The tests' two-gateway Kafka-mode chat (two gateways, two storage and
//! two push processes from the operator's pod specs, on the environment's
//! Kafka and PostgreSQL) with dev log-in on, for the browser tier. Prints
//! `gateway http://ADDR` per gateway once both carry messages, and runs
//! until its stdin closes or it gets SIGTERM/SIGINT; then stops the
//! processes and drops its topics.

use std::io::{BufRead, Write};

use parley_tests::chat;
use parley_tests::chat_cluster::{self, ACK_WAIT};
use serde_json::json;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() {
    let cluster = chat_cluster::start_with("browser", &[("PARLEY_DEV_LOGIN", "true".to_owned())]).await;
    // A note to self acked through each gateway: the push consumers know
    // both by then, so the page's first messages are not waited on.
    for (i, gateway) in cluster.gateways.iter().enumerate() {
        let user = format!("warm-up-{i}");
        let mut client = chat::connect(&gateway.addr, &user).await;
        let acked = client.send_acked(json!({"user": user}), "warm-up", "me", ACK_WAIT).await;
        assert!(acked.is_some(), "gateway {} never acked a warm-up", gateway.addr);
    }
    let mut out = std::io::stdout().lock();
    for gateway in &cluster.gateways {
        writeln!(out, "gateway http://{}", gateway.addr).expect("stdout");
    }
    out.flush().expect("stdout");
    drop(out);
    let stdin_closed =
        tokio::task::spawn_blocking(|| for _ in std::io::stdin().lock().lines().map_while(Result::ok) {});
    let shutdown = CancellationToken::new();
    tokio::spawn(parley_core::shutdown::on_signal(shutdown.clone()));
    tokio::select! {
        _ = stdin_closed => {}
        _ = shutdown.cancelled() => {}
    }
    // Dropped here, not left to the exit: the processes are stopped and the topics go.
    drop(cluster);
}
