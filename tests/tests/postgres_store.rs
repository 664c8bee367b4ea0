//! `PostgresStore` against the real PostgreSQL: the same seq and idempotency
//! rules as SQLite, no duplicate seq when several writers (storage
//! consumers) store into one conversation at once, and the group and
//! conversation rules checked on both databases by one function.

use std::collections::BTreeSet;

use parley_adapters::store::{Joined, Member, NewGroup, NewMessage, PostgresStore, SqliteStore, Store};
use parley_core::amend::{Amends, MessageKind};
use parley_core::groups::{History, Role};
use parley_core::ids::ConversationId;
use parley_tests::postgres::scratch_database;

fn msg(from: &str, cid: &str, conv: &ConversationId) -> NewMessage {
    NewMessage {
        msg_id: format!("m-{from}-{cid}"),
        client_msg_id: cid.into(),
        conversation: conv.clone(),
        from: from.into(),
        body: format!("body {cid}"),
        ts: 1,
        amends: None,
        moderator: false,
    }
}

#[tokio::test]
async fn seqs_are_contiguous_and_replays_change_nothing() {
    let url = scratch_database("pgstore").await;
    let s = PostgresStore::connect(&url, 4).await.expect("connect");
    let ab = ConversationId::direct("a", "b");
    let out = s.store_batch(&[msg("a", "1", &ab), msg("b", "1", &ab), msg("a", "1", &ab)]).await.unwrap();
    assert_eq!(out.iter().map(|o| o.message.seq).collect::<Vec<_>>(), [1, 2, 1]);
    assert!(out[2].duplicate);

    // A replayed batch (a consumer restarted before committing its offsets).
    let replay = s.store_batch(&[msg("a", "1", &ab), msg("b", "1", &ab), msg("a", "2", &ab)]).await.unwrap();
    assert!(replay[0].duplicate && replay[1].duplicate && !replay[2].duplicate);
    assert_eq!(replay[1].message, out[1].message);
    assert_eq!(replay[2].message.seq, 3, "no gap left by the duplicates");

    // A second process (store instance) on the same database agrees, and
    // migrations run again harmlessly.
    let s2 = PostgresStore::connect(&url, 2).await.expect("second connect");
    let hist = s2.history(&ab, 0, 100).await.unwrap();
    assert_eq!(hist.iter().map(|m| m.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(s2.history(&ab, 2, 100).await.unwrap()[0].client_msg_id, "2");
}

#[tokio::test]
async fn concurrent_writers_never_share_a_seq() {
    let url = scratch_database("pgstore_conc").await;
    let stores = [PostgresStore::connect(&url, 4).await.unwrap(), PostgresStore::connect(&url, 4).await.unwrap()];
    let convs = [ConversationId::direct("a", "b"), ConversationId::group("g"), ConversationId::direct("c", "d")];
    let mut tasks = Vec::new();
    for writer in 0..6usize {
        let store = stores[writer % 2].clone();
        let convs = convs.clone();
        tasks.push(tokio::spawn(async move {
            for round in 0..10 {
                // Conversations in varying order per writer: lock ordering must prevent deadlocks.
                let batch: Vec<NewMessage> = (0..3)
                    .map(|i| msg(&format!("w{writer}"), &format!("{round}-{i}"), &convs[(i + writer) % 3]))
                    .collect();
                store.store_batch(&batch).await.expect("store batch");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for conv in &convs {
        let hist = stores[0].history(conv, 0, 1000).await.unwrap();
        let seqs: Vec<u64> = hist.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, (1..=60).collect::<Vec<u64>>(), "{conv}: seqs must be 1..=60 without gap or duplicate");
        let keys: BTreeSet<(String, String)> = hist.iter().map(|m| (m.from.clone(), m.client_msg_id.clone())).collect();
        assert_eq!(keys.len(), 60);
    }
}

/// The group and conversation rules every store keeps, whichever database.
async fn groups_and_conversations(s: &dyn Store) {
    let open = NewGroup { open: true, ..NewGroup::new("g", "Team", "a").with_members(&["b"]) };
    s.create_group(&open).await.unwrap();
    assert!(matches!(
        s.create_group(&NewGroup::new("g", "Again", "c")).await,
        Err(parley_adapters::Error::Conflict(_))
    ));
    assert_eq!(s.members("g").await.unwrap(), ["a", "b"]);
    assert_eq!(s.join_group("g", "c").await.unwrap(), Joined::Joined, "an open group needs no invitation");
    assert_eq!(s.join_group("g", "c").await.unwrap(), Joined::AlreadyMember);
    assert_eq!(s.members("g").await.unwrap(), ["a", "b", "c"]);
    assert!(s.is_member("g", "c").await.unwrap());
    assert!(s.leave_group("g", "b").await.unwrap());
    assert!(!s.leave_group("g", "b").await.unwrap());
    s.create_group(&NewGroup::new("h", "Other", "z")).await.unwrap();
    let many = s.members_of(&["g".into(), "h".into(), "nope".into()]).await.unwrap();
    assert_eq!(many["g"], ["a", "c"]);
    assert_eq!(many["h"], ["z"]);
    assert!(many["nope"].is_empty());
    assert!(matches!(s.join_group("nope", "a").await, Err(parley_adapters::Error::NotFound(_))));

    let g = ConversationId::group("g");
    s.store_batch(&[msg("a", "1", &g), msg("a", "2", &ConversationId::direct("a", "z"))]).await.unwrap();
    let convs = s.conversations_of("a").await.unwrap();
    let ids: Vec<String> = convs.iter().map(|c| c.conversation.to_string()).collect();
    assert_eq!(ids, ["dm:a:z", "group:g"]);
    assert_eq!(convs[1].last_seq, 1);
    assert_eq!(convs[1].name.as_deref(), Some("Team"));
    assert!(s.conversations_of("b").await.unwrap().is_empty());
    // The second participant (user_b) finds the conversation too: a
    // parameter used twice in one statement binds once on either database.
    let convs = s.conversations_of("z").await.unwrap();
    let seen: Vec<(String, u64)> = convs.iter().map(|c| (c.conversation.to_string(), c.last_seq)).collect();
    assert_eq!(seen, [("dm:a:z".to_owned(), 1), ("group:h".to_owned(), 0)]);
    // Presence's one-statement read of the same rows.
    for user in ["a", "b", "z"] {
        let from_summaries = parley_adapters::store::ContactSources::of(user, &s.conversations_of(user).await.unwrap());
        assert_eq!(s.contact_sources(user).await.unwrap(), from_summaries, "{user}");
    }
}

/// Owners, admins, invitations and history from the join, on either database.
async fn group_roles_and_visibility(s: &dyn Store) {
    let closed = NewGroup { invited: vec!["bob".into(), "cat".into()], ..NewGroup::new("c", "Closed", "ann") };
    let group = s.create_group(&closed).await.unwrap();
    assert!(!group.open && group.history == History::FromJoin);
    assert_eq!(s.group("c").await.unwrap(), Some(group));
    assert_eq!(s.members("c").await.unwrap(), ["ann"], "the invited are not members yet");
    let roster = s.roster("c").await.unwrap();
    assert_eq!(roster, [Member { user: "ann".into(), role: Role::Owner }]);
    let invites = s.invitations_of("bob").await.unwrap();
    assert_eq!(
        invites.iter().map(|i| (i.group.as_str(), i.name.as_str(), i.invited_by.as_str())).collect::<Vec<_>>(),
        [("c", "Closed", "ann")]
    );
    assert_eq!(s.join_group("c", "dan").await.unwrap(), Joined::NotInvited, "closed: no invitation, no join");
    assert!(!s.is_member("c", "dan").await.unwrap());

    // Two messages before bob joins, one after: he reads seqs above 2.
    let c = ConversationId::group("c");
    s.store_batch(&[msg("ann", "c1", &c), msg("ann", "c2", &c)]).await.unwrap();
    assert_eq!(s.join_group("c", "bob").await.unwrap(), Joined::Joined);
    assert!(s.invitations_of("bob").await.unwrap().is_empty(), "the invitation is used up");
    s.store_batch(&[msg("ann", "c3", &c)]).await.unwrap();
    let bob = s.membership("c", "bob").await.unwrap().unwrap();
    assert_eq!((bob.role, bob.hidden_through), (Role::Member, 2));
    assert_eq!(s.membership("c", "ann").await.unwrap().unwrap().hidden_through, 0);
    assert_eq!(s.membership("c", "dan").await.unwrap(), None);

    // A declined invitation cannot be joined with.
    assert!(s.decline("c", "cat").await.unwrap());
    assert!(!s.decline("c", "cat").await.unwrap());
    assert_eq!(s.join_group("c", "cat").await.unwrap(), Joined::NotInvited);
    assert!(s.invite("c", "cat", "ann").await.unwrap());
    assert!(s.invite("c", "cat", "ann").await.unwrap(), "inviting again is harmless");
    assert!(!s.invite("c", "bob", "ann").await.unwrap(), "a member is not invited");
    assert_eq!(s.join_group("c", "cat").await.unwrap(), Joined::Joined);

    // A group that shows new members everything.
    let all = NewGroup { open: true, history: History::All, ..NewGroup::new("a", "All", "ann") };
    s.create_group(&all).await.unwrap();
    s.store_batch(&[msg("ann", "a1", &ConversationId::group("a"))]).await.unwrap();
    s.join_group("a", "bob").await.unwrap();
    assert_eq!(s.membership("a", "bob").await.unwrap().unwrap().hidden_through, 0);

    // Roles; the owner leaving hands the group to the longest-standing admin.
    assert!(s.set_role("c", "cat", Role::Admin).await.unwrap());
    assert!(!s.set_role("c", "zed", Role::Admin).await.unwrap(), "not a member");
    assert!(s.leave_group("c", "ann").await.unwrap());
    let roles: Vec<(String, Role)> = s.roster("c").await.unwrap().into_iter().map(|m| (m.user, m.role)).collect();
    assert_eq!(roles, [("bob".into(), Role::Member), ("cat".into(), Role::Owner)]);
    // With no admin left, the longest-standing member.
    assert!(s.leave_group("c", "cat").await.unwrap());
    assert_eq!(s.roster("c").await.unwrap(), [Member { user: "bob".into(), role: Role::Owner }]);
}

/// Edits, recalls and deletions take a seq and change the message they
/// name, on either database; a refused one stores nothing.
async fn amendments(s: &dyn Store) {
    let ab = ConversationId::direct("a", "b");
    let amend = |from: &str, cid: &str, kind: MessageKind, target: u64, body: &str| NewMessage {
        amends: Some(Amends { kind, target }),
        body: body.into(),
        ts: 2,
        ..msg(from, cid, &ab)
    };
    s.store_batch(&[msg("a", "1", &ab), msg("b", "2", &ab), msg("a", "3", &ab)]).await.unwrap();
    let out = s
        .store_batch(&[
            amend("a", "e", MessageKind::Edit, 1, "better"),
            amend("b", "x", MessageKind::Edit, 1, "not yours"),
            amend("b", "r", MessageKind::Recall, 2, ""),
            amend("a", "d", MessageKind::Delete, 3, ""),
        ])
        .await
        .unwrap();
    let seqs: Vec<(u64, Option<&str>)> = out.iter().map(|o| (o.message.seq, o.refused.as_deref())).collect();
    assert_eq!(seqs, [(4, None), (0, Some("only the sender may edit a message")), (5, None), (6, None)]);
    let history = s.history(&ab, 0, 10).await.unwrap();
    let view: Vec<_> = history.iter().map(|m| (m.seq, m.body.as_str(), m.kind, m.target, m.amended)).collect();
    use MessageKind::*;
    assert_eq!(
        view,
        [
            (1, "better", Message, None, Some(Edit)),
            (2, "", Message, None, Some(Recall)),
            (3, "", Message, None, Some(Delete)),
            (4, "better", Edit, Some(1), None),
            (5, "", Recall, Some(2), None),
            (6, "", Delete, Some(3), None),
        ]
    );
    // Replayed: the same outcomes, nothing stored twice, no refusal.
    let again = s.store_batch(&[amend("b", "r", Recall, 2, "")]).await.unwrap();
    assert!(again[0].duplicate && again[0].refused.is_none() && again[0].message.seq == 5);
    let late = s.store_batch(&[amend("a", "e2", Edit, 3, "too late")]).await.unwrap();
    assert_eq!(late[0].refused.as_deref(), Some("message 3 was deleted already"));
    assert_eq!(s.history(&ab, 0, 10).await.unwrap().len(), 6);
}

/// Read positions move forward only and within the conversation; unread
/// counts others' live messages after them (and after a group join).
async fn read_state(s: &dyn Store) {
    let ab = ConversationId::direct("a", "b");
    let amend = |from: &str, cid: &str, kind: MessageKind, target: u64| NewMessage {
        amends: Some(Amends { kind, target }),
        body: if kind == MessageKind::Edit { "edited".into() } else { String::new() },
        ..msg(from, cid, &ab)
    };
    s.store_batch(&[
        msg("a", "1", &ab),
        msg("a", "2", &ab),
        msg("b", "3", &ab),
        msg("a", "4", &ab),
        msg("a", "5", &ab),
    ])
    .await
    .unwrap();
    // a recalls 4 and edits 5: the recall is not unread, the edit's target still is.
    s.store_batch(&[amend("a", "r", MessageKind::Recall, 4), amend("a", "e", MessageKind::Edit, 5)]).await.unwrap();
    let of = |list: Vec<parley_adapters::store::ConversationOverview>, id: &str| {
        list.into_iter().find(|c| c.summary.conversation.to_string() == id).expect(id)
    };
    let b = of(s.overview("b").await.unwrap(), "dm:a:b");
    assert_eq!(
        (b.read_seq, b.unread, b.summary.last_seq),
        (0, 3, 7),
        "a's 1, 2 and 5; not b's own, the recalled 4, or amendments"
    );
    let last = b.last_message.unwrap();
    assert_eq!((last.seq, last.body.as_str(), last.amended), (5, "edited", Some(MessageKind::Edit)));
    assert_eq!(s.mark_read("b", &ab, 2).await.unwrap(), 2);
    assert_eq!(s.mark_read("b", &ab, 1).await.unwrap(), 2, "never backward");
    assert_eq!(s.mark_read("b", &ab, 999).await.unwrap(), 7, "at most the last seq");
    let b = of(s.overview("b").await.unwrap(), "dm:a:b");
    assert_eq!((b.read_seq, b.unread), (7, 0));
    let a = of(s.overview("a").await.unwrap(), "dm:a:b");
    assert_eq!((a.read_seq, a.unread), (0, 1), "b's 3");

    // In a group that hides older history, what came before the join is not unread.
    let open = NewGroup { open: true, ..NewGroup::new("g", "G", "a") };
    s.create_group(&open).await.unwrap();
    let g = ConversationId::group("g");
    s.store_batch(&[msg("a", "g1", &g), msg("a", "g2", &g)]).await.unwrap();
    s.join_group("g", "c").await.unwrap();
    s.store_batch(&[msg("a", "g3", &g)]).await.unwrap();
    let c = of(s.overview("c").await.unwrap(), "group:g");
    assert_eq!((c.unread, c.last_message.map(|m| m.seq)), (1, Some(3)));
}

#[tokio::test]
async fn read_state_on_postgres() {
    let url = scratch_database("pgstore_read").await;
    read_state(&PostgresStore::connect(&url, 2).await.unwrap()).await;
}

#[tokio::test]
async fn read_state_on_sqlite() {
    read_state(&SqliteStore::in_memory().await.unwrap()).await;
}

#[tokio::test]
async fn amendments_on_postgres() {
    let url = scratch_database("pgstore_amend").await;
    amendments(&PostgresStore::connect(&url, 2).await.unwrap()).await;
}

#[tokio::test]
async fn amendments_on_sqlite() {
    amendments(&SqliteStore::in_memory().await.unwrap()).await;
}

#[tokio::test]
async fn group_roles_and_visibility_on_postgres() {
    let url = scratch_database("pgstore_roles").await;
    group_roles_and_visibility(&PostgresStore::connect(&url, 2).await.unwrap()).await;
}

#[tokio::test]
async fn group_roles_and_visibility_on_sqlite() {
    group_roles_and_visibility(&SqliteStore::in_memory().await.unwrap()).await;
}

#[tokio::test]
async fn groups_and_conversations_on_postgres() {
    let url = scratch_database("pgstore_groups").await;
    groups_and_conversations(&PostgresStore::connect(&url, 2).await.unwrap()).await;
}

#[tokio::test]
async fn groups_and_conversations_on_sqlite() {
    groups_and_conversations(&SqliteStore::in_memory().await.unwrap()).await;
}
