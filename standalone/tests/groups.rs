//! Groups with an owner, admins and invitations, against the real
//! `parley-standalone` binary: nobody becomes a member without asking, only
//! admins invite and remove, only the owner names admins, and a member
//! reads the history from their join on.

mod support;

use std::time::Duration;

use parley_core::protocol::ServerFrame;
use serde_json::{Value, json};
use support::{Client, Server};

const QUIET: Duration = Duration::from_millis(400);

async fn call(server: &Server, method: &str, path: &str, user: &str, body: Option<Value>) -> (u16, Value) {
    let (status, text) = server.http(method, path, Some(user), body).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// The seqs a sync of `conversation` from 0 returns to `client`.
async fn synced_seqs(client: &mut Client, conversation: &str) -> Vec<u64> {
    client.sync(conversation, 0).await;
    let mut seqs = Vec::new();
    loop {
        match client.next(Duration::from_secs(5)).await.expect("an answer to sync") {
            ServerFrame::Message(m) => seqs.push(m.seq),
            ServerFrame::Synced { .. } => return seqs,
            err @ ServerFrame::Error { .. } => panic!("sync refused: {err:?}"),
            _ => {} // presence and the like
        }
    }
}

#[tokio::test]
async fn nobody_is_made_a_member_without_accepting() {
    let server = Server::start(&support::UNTHROTTLED);
    let create = json!({"id": "club", "name": "Club", "members": ["bob", "cat"]});
    let (status, group) = call(&server, "POST", "/api/groups", "ann", Some(create)).await;
    assert_eq!(status, 201, "{group}");
    assert_eq!((group["open"].clone(), group["history"].clone()), (json!(false), json!("from_join")));
    assert_eq!(group["invited"], json!(["bob", "cat"]));
    let (_, members) = call(&server, "GET", "/api/groups/club/members", "ann", None).await;
    assert_eq!(members, json!({"group": "club", "owner": "ann", "admins": [], "members": ["ann"]}));

    // Invited, not a member: no messages reach bob, and he cannot read them.
    let mut ann = server.connect("ann").await;
    let mut bob = server.connect("bob").await;
    ann.send_msg(json!({"group": "club"}), "a1", "before bob").await;
    assert_eq!(ann.ack("a1").await.1, 1);
    bob.expect_quiet(QUIET).await;
    let (status, _) = call(&server, "GET", "/api/groups/club/members", "bob", None).await;
    assert_eq!(status, 404);
    bob.sync("group:club", 0).await;
    assert_eq!(bob.error_code().await, "forbidden");

    let (_, invites) = call(&server, "GET", "/api/invites", "bob", None).await;
    assert_eq!(invites[0]["group"], "club");
    assert_eq!((invites[0]["name"].clone(), invites[0]["invited_by"].clone()), (json!("Club"), json!("ann")));
    // cat declines: the invitation is gone and cannot be used.
    assert_eq!(call(&server, "POST", "/api/groups/club/decline", "cat", None).await.0, 204);
    assert_eq!(call(&server, "GET", "/api/invites", "cat", None).await.1, json!([]));
    assert_eq!(call(&server, "POST", "/api/groups/club/join", "cat", None).await.0, 404);
    // bob accepts, and reads from his join on.
    assert_eq!(call(&server, "POST", "/api/groups/club/join", "bob", None).await.0, 204);
    assert_eq!(call(&server, "GET", "/api/invites", "bob", None).await.1, json!([]));
    ann.send_msg(json!({"group": "club"}), "a2", "after bob").await;
    assert_eq!(ann.ack("a2").await.1, 2);
    assert_eq!(bob.next_message().await.body, "after bob");
    assert_eq!(synced_seqs(&mut bob, "group:club").await, [2], "seq 1 came before the join");
    assert_eq!(synced_seqs(&mut ann, "group:club").await, [1, 2]);

    // After leaving, nothing of the group can be read.
    assert_eq!(call(&server, "POST", "/api/groups/club/leave", "bob", None).await.0, 204);
    bob.sync("group:club", 0).await;
    assert_eq!(bob.error_code().await, "forbidden");
}

#[tokio::test]
async fn admins_invite_and_remove_and_the_owner_names_them() {
    let server = Server::start(&support::UNTHROTTLED);
    server.create_group("ann", "team", &["bob", "cat", "dan"]).await;
    let invite = |user: &str| Some(json!({"user": user}));

    // A member may not invite, remove or name admins.
    let (status, body) = call(&server, "POST", "/api/groups/team/invites", "bob", invite("eve")).await;
    assert_eq!((status, body["code"].clone()), (403, json!("forbidden")), "{body}");
    assert_eq!(call(&server, "DELETE", "/api/groups/team/members/cat", "bob", None).await.0, 403);
    let admin = Some(json!({"role": "admin"}));
    assert_eq!(call(&server, "PUT", "/api/groups/team/members/cat/role", "bob", admin.clone()).await.0, 403);
    // An outsider gets the unknown group's answer whatever they try.
    let (status, outsider) = call(&server, "POST", "/api/groups/team/invites", "zed", invite("eve")).await;
    let (_, unknown) = call(&server, "POST", "/api/groups/nope/invites", "zed", invite("eve")).await;
    assert_eq!(status, 404);
    assert_eq!(outsider.to_string().replace("team", "nope"), unknown.to_string());

    // The owner names bob admin; bob then invites and removes members.
    assert_eq!(call(&server, "PUT", "/api/groups/team/members/bob/role", "ann", admin.clone()).await.0, 204);
    let (_, members) = call(&server, "GET", "/api/groups/team/members", "cat", None).await;
    assert_eq!((members["owner"].clone(), members["admins"].clone()), (json!("ann"), json!(["bob"])));
    assert_eq!(call(&server, "POST", "/api/groups/team/invites", "bob", invite("eve")).await.0, 201);
    assert_eq!(call(&server, "POST", "/api/groups/team/invites", "bob", invite("cat")).await.0, 409, "a member");
    // Withdrawing an invitation is removing someone not yet in.
    assert_eq!(call(&server, "DELETE", "/api/groups/team/members/eve", "bob", None).await.0, 204);
    assert_eq!(call(&server, "POST", "/api/groups/team/join", "eve", None).await.0, 404);

    let mut cat = server.connect("cat").await;
    let mut ann = server.connect("ann").await;
    cat.send_msg(json!({"group": "team"}), "c1", "still here").await;
    assert_eq!(cat.ack("c1").await.1, 1);
    assert_eq!(call(&server, "DELETE", "/api/groups/team/members/cat", "bob", None).await.0, 204);
    cat.send_msg(json!({"group": "team"}), "c2", "removed").await;
    assert_eq!(cat.error().await, ("forbidden".into(), Some("c2".into())), "a removed member's send is refused");
    cat.sync("group:team", 0).await;
    assert_eq!(cat.error_code().await, "forbidden");
    assert_eq!(ann.next_message().await.body, "still here");
    ann.expect_quiet(QUIET).await;

    // Rank: an admin cannot remove another admin or the owner; the owner
    // is not removed by anyone, and cannot hand the role away.
    assert_eq!(call(&server, "PUT", "/api/groups/team/members/dan/role", "ann", admin.clone()).await.0, 204);
    assert_eq!(call(&server, "DELETE", "/api/groups/team/members/dan", "bob", None).await.0, 403);
    let (status, body) = call(&server, "DELETE", "/api/groups/team/members/ann", "bob", None).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["reason"].as_str().unwrap().contains("owner"), "{body}");
    let owner = Some(json!({"role": "owner"}));
    assert_eq!(call(&server, "PUT", "/api/groups/team/members/bob/role", "ann", owner).await.0, 403);
    assert_eq!(call(&server, "DELETE", "/api/groups/team/members/dan", "ann", None).await.0, 204);
    // The owner leaves: bob, the longest-standing admin, owns the group.
    assert_eq!(call(&server, "POST", "/api/groups/team/leave", "ann", None).await.0, 204);
    let (_, members) = call(&server, "GET", "/api/groups/team/members", "bob", None).await;
    assert_eq!(members, json!({"group": "team", "owner": "bob", "admins": [], "members": ["bob"]}));
    // Bad input is named.
    let (status, body) =
        call(&server, "PUT", "/api/groups/team/members/bob/role", "bob", Some(json!({"role": "root"}))).await;
    assert_eq!(status, 422, "{body}");
}

#[tokio::test]
async fn open_groups_are_joined_freely_and_may_show_the_whole_history() {
    let server = Server::start(&support::UNTHROTTLED);
    let open = json!({"id": "lobby", "name": "Lobby", "open": true, "history": "all"});
    assert_eq!(call(&server, "POST", "/api/groups", "ann", Some(open)).await.0, 201);
    let mut ann = server.connect("ann").await;
    for i in 1..=3 {
        ann.send_msg(json!({"group": "lobby"}), &format!("a{i}"), "hello").await;
        assert_eq!(ann.ack(&format!("a{i}")).await.1, i);
    }
    assert_eq!(call(&server, "POST", "/api/groups/lobby/join", "bob", None).await.0, 204, "no invitation needed");
    let mut bob = server.connect("bob").await;
    assert_eq!(synced_seqs(&mut bob, "group:lobby").await, [1, 2, 3], "history: all");
    let bad = json!({"name": "x", "history": "some"});
    let (status, body) = call(&server, "POST", "/api/groups", "ann", Some(bad)).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("history"), "{body}");
}
