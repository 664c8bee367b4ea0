//! One Kafka broker of three stops while five clients send to a group (topics
//! RF 3, min ISR 2): sends keep being acked and nothing is lost or doubled.
//! Own test binary: it stops a broker of the shared Kafka.

use std::time::{Duration, Instant};

use parley_tests::chat_cluster::{check, members, send_round, start};
use parley_tests::kafka;

/// Bring the broker back even if an assertion fails midway.
struct RestartBroker(&'static str);
impl Drop for RestartBroker {
    fn drop(&mut self) {
        kafka::script(&["start-broker", self.0]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_broker_down_sends_keep_being_acked_and_nothing_is_lost() {
    let cluster = start("chat-broker-down").await;
    let clients = members(&cluster).await;
    let sending = tokio::spawn(send_round(clients, 0, 20));
    tokio::time::sleep(Duration::from_secs(2)).await;

    let restart = RestartBroker("2");
    let stopped = Instant::now();
    kafka::script(&["stop-broker", "2"]);
    // `send_round` asserts every send is acked; a round sent entirely while
    // the broker is down shows acks do not depend on it.
    let clients = sending.await.expect("senders");
    let mut clients = send_round(clients, 20, 5).await;
    eprintln!("25 messages per client acked; broker 2 down for {:?}", stopped.elapsed());
    drop(restart);

    check(&cluster, &mut clients, 25).await;
}
