//! Presence through a connect storm, against the real `parley-standalone`
//! binary: members of overlapping groups connect all at once, and each
//! hears of every contact online exactly once (in its `hello` or after it)
//! and of nobody else; group rosters kept for presence follow joins and
//! leaves at once.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use parley_core::protocol::ServerFrame;
use parley_testkit::client::{Client, Reading};
use support::{SECRET, Server};

const QUIET: Duration = Duration::from_millis(500);

fn name(i: usize) -> String {
    format!("m{i:02}")
}

/// Users `range` of the storm.
fn names(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(name).collect()
}

fn owned(users: &[&str]) -> Vec<String> {
    users.iter().map(|u| (*u).to_owned()).collect()
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

async fn connect(server: &Server, user: &str) -> Client {
    Client::connect(&server.addr, SECRET, user, Reading::Background).await
}

/// Who `client` was told is online, and how many times each, in its
/// `hello` and what came until `want` were all there and then a quiet spell.
async fn told_online(client: &mut Client, want: &[String]) -> BTreeMap<String, usize> {
    let seen_all = |frames: &[ServerFrame]| {
        want.iter()
            .all(|w| frames.iter().any(|f| matches!(f, ServerFrame::Presence { user, online: true } if user == w)))
    };
    assert!(
        client.wait_until(support::WAIT, seen_all).await,
        "{}: not told of every contact: {:?}",
        client.user,
        client.seen
    );
    client.drain(QUIET).await;
    let mut told = BTreeMap::new();
    for frame in &client.seen {
        match frame {
            ServerFrame::Presence { user, online: true } => *told.entry(user.clone()).or_insert(0) += 1,
            ServerFrame::Presence { user, online: false } => panic!("{}: {user} went offline", client.user),
            _ => {}
        }
    }
    told
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_member_connecting_at_once_hears_of_each_contact_once() {
    let server = Server::start(&support::UNTHROTTLED);
    // Two groups sharing ten members: m00..m29 and m20..m49.
    let (one, two) = (names(0..30), names(20..50));
    server.create_group(&one[0], "one", &refs(&one[1..])).await;
    server.create_group(&two[0], "two", &refs(&two[1..])).await;

    let everyone = names(0..50);
    let mut clients = futures::future::join_all(everyone.iter().map(|u| connect(&server, u))).await;
    let contacts: Vec<Vec<String>> = (0..50)
        .map(|i| {
            let all = match i {
                0..20 => one.clone(),
                20..30 => names(0..50),
                _ => two.clone(),
            };
            all.into_iter().filter(|c| *c != name(i)).collect()
        })
        .collect();
    let told = futures::future::join_all(clients.iter_mut().zip(&contacts).map(|(c, want)| told_online(c, want))).await;
    for ((client, want), told) in clients.iter().zip(&contacts).zip(told) {
        let once: BTreeMap<String, usize> = want.iter().map(|c| (c.clone(), 1)).collect();
        assert_eq!(told, once, "{}: each contact once, nobody else", client.user);
    }
}

#[tokio::test]
async fn rosters_follow_joins_and_leaves_at_once() {
    let server = Server::start(&support::UNTHROTTLED);
    server.create_group("ann", "club", &["bob", "cat"]).await;
    let mut ann = connect(&server, "ann").await;
    let mut cat = connect(&server, "cat").await;
    // bob's connect reads the roster, which presence then keeps.
    let bob = connect(&server, "bob").await;
    assert_eq!(told_online(&mut ann, &owned(&["cat", "bob"])).await.len(), 2);

    // dan joins while everyone is online, then connects: told to all three.
    let (status, body) =
        server.http("POST", "/api/groups/club/invites", Some("ann"), Some(serde_json::json!({"user": "dan"}))).await;
    assert!((200..300).contains(&status), "{status} {body}");
    let (status, body) = server.http("POST", "/api/groups/club/join", Some("dan"), None).await;
    assert_eq!(status, 204, "{body}");
    let mut dan = connect(&server, "dan").await;
    assert_eq!(told_online(&mut dan, &owned(&["ann", "bob", "cat"])).await.len(), 3);
    assert_eq!(told_online(&mut cat, &owned(&["dan"])).await.get("dan"), Some(&1));

    // bob reconnects: his contacts hold dan, who joined after bob's
    // connect had read the roster.
    bob.close().await;
    let mut bob = connect(&server, "bob").await;
    assert_eq!(told_online(&mut bob, &owned(&["ann", "cat", "dan"])).await.len(), 3);

    // cat leaves; bob reconnects again: his contacts no longer hold her.
    let (status, body) = server.http("POST", "/api/groups/club/leave", Some("cat"), None).await;
    assert_eq!(status, 204, "{body}");
    bob.close().await;
    let mut bob = connect(&server, "bob").await;
    let told = told_online(&mut bob, &owned(&["ann", "dan"])).await;
    assert_eq!(told.keys().collect::<Vec<_>>(), ["ann", "dan"], "cat left the group");
}
