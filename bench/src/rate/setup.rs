//! Before the timed phase: the system under test, its groups, one
//! connection per user, and a warm-up so the timed phase starts in steady
//! state.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use super::RateArgs;
use super::read::Progress;
use crate::client::Sink;
use crate::client::{Ws, connect, source_ip};
use crate::error::{BenchError, Result};
use crate::groups;
use crate::target::Target;
use crate::workload::{self, Conversation, user_name};
use parley_testkit::procfs;

const WARMUP_ROUNDS: u32 = 10;
const WARMUP_WAIT: Duration = Duration::from_secs(10);

/// A started system with its conversations and every user connected.
pub(super) struct Prepared {
    pub(super) target: Target,
    pub(super) convs: Vec<Conversation>,
    /// Conversation id → member names, for fan-out sizes and the ledger.
    pub(super) members: HashMap<String, Vec<String>>,
    /// One connection per user, in user order.
    pub(super) conns: Vec<Ws>,
}

pub(super) async fn prepare(a: &RateArgs, rate: u32, users: u32) -> Result<Prepared> {
    procfs::raise_nofile(u64::from(users) + 4096);
    let target = Target::start(a.mode, a.partitions, a.replication_factor, &a.env).await?;
    let convs = workload::layout(users, a.conversations.max(1), a.group_size);
    let members: HashMap<String, Vec<String>> =
        convs.iter().map(|c| (c.id().to_string(), c.members.iter().map(|&m| user_name(m)).collect())).collect();
    groups::create(target.gateway, &target.secret, &convs, &user_name).await?;

    tracing::info!(rate, users, mode = ?a.mode, "connecting");
    let conns = connect_all(&target, users).await?;
    Ok(Prepared { target, convs, members, conns })
}

/// Connect every user, 64 at a time; the first failure fails the run.
async fn connect_all(target: &Target, users: u32) -> Result<Vec<Ws>> {
    let (gateway, secret) = (target.gateway, target.secret.clone());
    let conns: Vec<(u32, Result<Ws>)> = futures::stream::iter(0..users)
        .map(|i| {
            let secret = secret.clone();
            async move { (i, connect(gateway, source_ip(i), &secret, &user_name(i)).await) }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    // Connections finish out of order; put them back in user order.
    let mut by_user: Vec<Option<Ws>> = (0..users).map(|_| None).collect();
    for (i, c) in conns {
        by_user[i as usize] = Some(c?);
    }
    Ok(by_user.into_iter().map(|ws| ws.expect("every user connected")).collect())
}

/// One message in every conversation, until a whole round is delivered to
/// every member: presence has then reached the push path, so the timed phase
/// measures steady state. Warm-up messages are left out of the figures.
pub(super) async fn warm_up(sinks: &mut [Sink], convs: &[Conversation], progress: &Progress) -> Result<u32> {
    let expected: u64 = convs.iter().map(|c| c.members.len() as u64 - 1).sum();
    for round in 1..=WARMUP_ROUNDS {
        progress.warm_delivered.store(0, Ordering::Relaxed);
        progress.warm_round.store(u64::from(round), Ordering::Relaxed);
        for (k, c) in convs.iter().enumerate() {
            let from = c.members[0];
            let frame = json!({
                "v": 1, "type": "send", "client_msg_id": format!("w.{round}.{k}"),
                "to": c.recipient(from), "body": format!("warm {round}"),
            });
            sinks[from as usize].send(Message::text(frame.to_string())).await?;
        }
        let deadline = Instant::now() + WARMUP_WAIT;
        while Instant::now() < deadline {
            if progress.warm_delivered.load(Ordering::Relaxed) >= expected {
                tracing::info!(round, "warm-up delivered");
                return Ok(round);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tracing::warn!(
            round,
            delivered = progress.warm_delivered.load(Ordering::Relaxed),
            expected,
            "warm-up incomplete"
        );
    }
    Err(BenchError::Setup(format!("warm-up: no round of {WARMUP_ROUNDS} was delivered completely")))
}
