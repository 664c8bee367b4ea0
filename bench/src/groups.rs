//! The groups of a scenario, made as clients make them: groups are
//! closed, so the first member creates each with the others invited, and
//! each of them accepts (`join`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::json;

use crate::client;
use crate::error::{BenchError, Result};
use crate::workload::Conversation;

/// Create the groups with their members invited, have each accept, then
/// (Kafka mode applies joins asynchronously) wait until the last member of
/// each is a member.
/// `name` gives user `i`'s name.
pub async fn create(gw: SocketAddr, secret: &str, convs: &[Conversation], name: &dyn Fn(u32) -> String) -> Result<()> {
    for c in convs {
        let Some(g) = &c.group else { continue };
        let names: Vec<String> = c.members.iter().map(|&m| name(m)).collect();
        let body = json!({"id": g, "name": g, "members": names[1..]});
        let (status, text) = client::http(gw, "POST", "/api/groups", secret, &names[0], Some(&body)).await?;
        if !(200..300).contains(&status) {
            return Err(BenchError::Setup(format!("create group {g}: {status} {text}")));
        }
    }
    // The others are invited, and accept.
    let joins: Vec<(String, String)> = convs
        .iter()
        .filter_map(|c| Some((c.group.clone()?, c)))
        .flat_map(|(g, c)| c.members[1..].iter().map(move |&m| (g.clone(), name(m))))
        .collect();
    let answers: Vec<Result<(String, String, u16, String)>> = futures::stream::iter(joins)
        .map(|(g, user)| async move {
            let (status, text) =
                client::http(gw, "POST", &format!("/api/groups/{g}/join"), secret, &user, None).await?;
            Ok((g, user, status, text))
        })
        .buffer_unordered(32)
        .collect()
        .await;
    for answer in answers {
        let (g, user, status, text) = answer?;
        if !(200..300).contains(&status) {
            return Err(BenchError::Setup(format!("{user} joining group {g}: {status} {text}")));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for c in convs {
        let Some(g) = &c.group else { continue };
        let owner = name(c.members[0]);
        loop {
            let (status, text) =
                client::http(gw, "GET", &format!("/api/groups/{g}/members"), secret, &owner, None).await?;
            let listed: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            if status == 200 && listed["members"].as_array().map_or(0, Vec::len) == c.members.len() {
                break;
            }
            if Instant::now() > deadline {
                return Err(BenchError::Setup(format!(
                    "group {g}: not every join applied within 60 s ({status} {text})"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}
