//! What an attacker or a clumsy client tries, against the real
//! `parley-standalone` binary on loopback: tokens that outlive their
//! session, the dev log-in on a reachable address, refusals that do not say
//! which send they refuse, floods closed by a reset, names that display as
//! other names, ids that read as paths, and a page another site can frame.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use parley_core::protocol::ServerFrame;
use parley_core::protocol::close_codes::TOKEN_EXPIRED;
use serde_json::json;
use support::{Event, SECRET, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

#[tokio::test]
async fn a_session_ends_when_its_token_expires_with_a_close_the_client_can_act_on() {
    let server = Server::start(&[]);
    let token = parley_testkit::client::mint(SECRET, "alice", Duration::from_secs(1)).unwrap();
    let started = Instant::now();
    let mut alice = server.connect_with(&token, "alice").await;
    // A live token's session stays open meanwhile.
    let mut bob = server.connect("bob").await;
    match alice.next_event().await {
        Event::Closed(Some(close)) => {
            assert_eq!(u16::from(close.code), TOKEN_EXPIRED);
            assert!(close.reason.contains("token expired"), "{}", close.reason);
        }
        other => panic!("expected the expiry close, got {other:?}"),
    }
    // One second of life and the five seconds of clock-skew leeway.
    let lived = started.elapsed();
    assert!(lived >= Duration::from_secs(5), "closed after {lived:?}, before the token's end");
    bob.send(json!({"type":"ping"})).await;
    assert_eq!(bob.next_where(|_| true).await, ServerFrame::Pong);
}

#[test]
fn dev_login_on_a_reachable_address_is_refused_at_start() {
    let db = std::env::temp_dir().join(format!("parley-hardening-{}.db", std::process::id()));
    // Refused before anything is bound, so nothing listens beyond loopback.
    let mut child = Command::new(env!("CARGO_BIN_EXE_parley-standalone"))
        .args(["--listen", "0.0.0.0:0", "--dev-login", "true", "--database"])
        .arg(&db)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start parley-standalone");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("parley-standalone started with dev log-in on 0.0.0.0");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    let _ = std::fs::remove_file(&db);
    assert!(!status.success());
    assert!(stderr.contains("not a loopback address"), "{stderr}");
}

#[tokio::test]
async fn with_a_secret_the_dev_log_in_is_off_unless_asked_for() {
    let server = Server::start(&[]);
    let (status, _) = server.http("POST", "/api/dev/token", None, Some(json!({"user":"mallory"}))).await;
    assert_eq!(status, 404, "a server with its own secret mints no tokens for anyone");
    let asked = Server::start(&["--dev-login", "true"]);
    let (status, body) = asked.http("POST", "/api/dev/token", None, Some(json!({"user":"erin"}))).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn refusals_name_the_send_they_refuse() {
    let server = Server::start(&["--rate-per-second", "1", "--rate-burst", "2", "--max-strikes", "50"]);
    let mut alice = server.connect("alice").await;
    for id in ["c1", "c2", "c3", "c4"] {
        alice.send_msg(json!({"user":"bob"}), id, "hi").await;
    }
    let (mut acked, mut limited) = (Vec::new(), Vec::new());
    while acked.len() + limited.len() < 4 {
        match alice.next_event().await {
            Event::Frame(ServerFrame::Ack { client_msg_id, .. }) => acked.push(client_msg_id),
            Event::Frame(ServerFrame::Error { code, client_msg_id, .. }) if code == "rate_limited" => {
                limited.push(client_msg_id)
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    acked.sort();
    assert_eq!(acked, ["c1", "c2"]);
    assert_eq!(limited, [Some("c3".to_owned()), Some("c4".to_owned())]);
    // Wait for a token, then a send invalid in another field.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    alice.send_msg(json!({"user":"bob"}), "c5", "   ").await;
    assert_eq!(alice.error().await, ("invalid_frame".to_owned(), Some("c5".to_owned())));
}

#[tokio::test]
async fn a_flooding_client_gets_a_close_frame_not_a_reset() {
    let server = Server::start(&["--rate-per-second", "1", "--rate-burst", "5", "--max-strikes", "3"]);
    // A close with frames still unread used to go out as a reset, some of
    // the time: several floods make it show.
    for round in 0..4 {
        let mut c = server.connect(&format!("spammer{round}")).await;
        // Far more than the strikes: the server closes with most of them unread.
        for _ in 0..1000 {
            c.send(json!({"type":"ping"})).await;
        }
        let close = loop {
            match c.next_event().await {
                Event::Closed(close) => break close,
                Event::Frame(_) => {}
            }
        };
        let close = close.unwrap_or_else(|| panic!("round {round}: a reset, not a close frame"));
        assert_eq!(close.code, CloseCode::Policy);
        assert!(close.reason.contains("over-rate"), "{}", close.reason);
    }
}

#[tokio::test]
async fn names_that_display_as_others_and_ids_that_read_as_paths_are_refused() {
    let server = Server::start(&[]);
    let create = |id: &str, name: &str| json!({"id": id, "name": name});
    let (status, body) =
        server.http("POST", "/api/groups", Some("alice"), Some(create("g1", "admin\u{202E}gnp"))).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("U+202E"), "{body}");
    let (status, body) = server.http("POST", "/api/groups", Some("alice"), Some(create("g2", "a\u{0}b"))).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = server.http("POST", "/api/groups", Some("alice"), Some(create("..", "dots"))).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("only dots"), "{body}");
    let (status, body) = server.http("POST", "/api/groups", Some("alice"), Some(create("g3", "Ünïcode 🚀"))).await;
    assert_eq!(status, 201, "{body}");
}

/// The response head of `GET path`, lower-cased.
async fn head(addr: &str, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).to_lowercase();
    text.split_once("\r\n\r\n").map(|(h, _)| h.to_owned()).unwrap_or(text)
}

#[tokio::test]
async fn the_page_cannot_be_framed_and_runs_only_its_own_script() {
    let server = Server::start(&[]);
    for (path, content_type) in [("/", "text/html"), ("/app.js", "text/javascript"), ("/app.css", "text/css")] {
        let head = head(&server.addr, path).await;
        assert!(head.starts_with("http/1.1 200"), "{path}: {head}");
        assert!(head.contains(&format!("content-type: {content_type}")), "{path}: {head}");
        assert!(head.contains("frame-ancestors 'none'"), "{path}: {head}");
        assert!(head.contains("script-src 'self'") && !head.contains("unsafe-inline"), "{path}: {head}");
        assert!(head.contains("x-frame-options: deny"), "{path}: {head}");
        assert!(head.contains("x-content-type-options: nosniff"), "{path}: {head}");
    }
}

#[tokio::test]
async fn one_user_holds_a_bounded_number_of_connections() {
    let server = Server::start(&["--max-connections-per-user", "2"]);
    let first = server.connect("alice").await;
    let _second = server.connect("alice").await;
    let token = server.token("alice");
    let err = match parley_testkit::client::Client::try_connect_with(
        &server.addr,
        &token,
        "alice",
        parley_testkit::client::Reading::OnDemand,
    )
    .await
    {
        Ok(_) => panic!("a third connection of alice was accepted"),
        Err(err) => err,
    };
    assert!(err.contains("429"), "{err}");
    let _bob = server.connect("bob").await;
    first.close().await;
    // The slot is free once the server has seen the close.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let again = parley_testkit::client::Client::try_connect_with(
            &server.addr,
            &token,
            "alice",
            parley_testkit::client::Reading::OnDemand,
        )
        .await;
        if again.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "no slot after a close: {:?}", again.err());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, metrics) = server.http("GET", "/metrics", None, None).await;
    assert!(metrics.contains("parley_gateway_connections_refused_per_user_total 1"), "{metrics}");
}

#[tokio::test]
async fn a_users_connections_share_one_frame_rate() {
    let server = Server::start(&[
        "--rate-per-second",
        "100",
        "--rate-burst",
        "100",
        "--user-rate-per-second",
        "1",
        "--user-rate-burst",
        "4",
    ]);
    let mut a1 = server.connect("alice").await;
    let mut a2 = server.connect("alice").await;
    for c in [&mut a1, &mut a2] {
        for _ in 0..3 {
            c.send(json!({"type":"ping"})).await;
        }
    }
    let (mut pongs, mut limited) = (0, 0);
    for c in [&mut a1, &mut a2] {
        for _ in 0..3 {
            match c.next_event().await {
                Event::Frame(ServerFrame::Pong) => pongs += 1,
                Event::Frame(ServerFrame::Error { code, reason, .. }) if code == "rate_limited" => {
                    assert!(reason.contains("this user's connections"), "{reason}");
                    limited += 1;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert_eq!((pongs, limited), (4, 2), "six frames over two connections against one burst of four");
    let mut bob = server.connect("bob").await;
    bob.send(json!({"type":"ping"})).await;
    assert_eq!(bob.next_where(|_| true).await, ServerFrame::Pong, "another user is not slowed");
}

#[tokio::test]
async fn http_requests_are_limited_per_user() {
    let server = Server::start(&["--http-rate-per-second", "1", "--http-rate-burst", "3"]);
    for _ in 0..3 {
        assert_eq!(server.http("GET", "/api/me", Some("alice"), None).await.0, 200);
    }
    let (status, body) = server.http("GET", "/api/me", Some("alice"), None).await;
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("rate_limited"), "{body}");
    assert_eq!(server.http("GET", "/api/me", Some("bob"), None).await.0, 200);
}

#[tokio::test]
async fn half_a_request_head_does_not_hold_a_connection() {
    let server = Server::start(&["--http-header-timeout", "300ms"]);
    let mut s = tokio::net::TcpStream::connect(&server.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let started = Instant::now();
    let mut out = Vec::new();
    // Before, hyper's own 30 s applied; bounded here well below it.
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("the server closes a connection that stalls in its request head")
        .ok();
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn the_listener_holds_a_bounded_number_of_connections() {
    let server = Server::start(&["--max-http-connections", "3"]);
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(tokio::net::TcpStream::connect(&server.addr).await.unwrap());
    }
    // A fourth is accepted by the kernel and closed by the server at once.
    let mut extra = tokio::net::TcpStream::connect(&server.addr).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(3), extra.read(&mut buf)).await;
    assert!(matches!(n, Ok(Ok(0)) | Ok(Err(_))), "the fourth connection stayed open: {n:?}");
    // The three held ones are still open.
    let mut buf = [0u8; 1];
    assert!(tokio::time::timeout(Duration::from_millis(300), held[0].read(&mut buf)).await.is_err());
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    // Refused (reset) until the server has seen that close; each of those
    // attempts is a refusal too.
    let mut attempts_refused = 0;
    let metrics = loop {
        let answer =
            parley_testkit::http::try_request(&server.addr, "GET", "/metrics", None, None, Duration::from_secs(5))
                .await;
        match answer {
            Ok((200, metrics)) => break metrics,
            other => assert!(Instant::now() < deadline, "no /metrics after a slot was freed: {other:?}"),
        }
        attempts_refused += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let refused = format!("parley_gateway_http_connections_refused_total {}", 1 + attempts_refused);
    assert!(metrics.contains(&refused), "{refused} missing from {metrics}");
}

#[tokio::test]
async fn group_size_and_creations_are_bounded() {
    let server = Server::start(&["--max-group-members", "3", "--group-creations-per-hour", "2"]);
    let group = |id: &str, members: &[&str]| json!({"id": id, "name": id, "members": members});
    let (status, body) = server.http("POST", "/api/groups", Some("alice"), Some(group("big", &["b", "c", "d"]))).await;
    assert_eq!(status, 400, "four members with the creator: {body}");
    let open = json!({"id": "trio", "name": "trio", "members": ["b", "c"], "open": true});
    let (status, body) = server.http("POST", "/api/groups", Some("alice"), Some(open)).await;
    assert_eq!(status, 201, "{body}");
    for user in ["b", "c"] {
        let (status, body) = server.http("POST", "/api/groups/trio/join", Some(user), None).await;
        assert_eq!(status, 204, "{body}");
    }
    let (status, body) = server.http("POST", "/api/groups/trio/join", Some("d"), None).await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("full"), "{body}");
    // Two per hour come one at a time: the second within the hour is refused.
    let (status, body) = server.http("POST", "/api/groups", Some("alice"), Some(group("duo", &["b"]))).await;
    assert_eq!(status, 429, "{body}");
    let (status, body) = server.http("POST", "/api/groups", Some("bob"), Some(group("duo", &["c"]))).await;
    assert_eq!(status, 201, "another user creates on: {body}");
}

#[tokio::test]
async fn sends_taken_before_a_close_are_acked_before_it() {
    let server = Server::start(&[&support::UNTHROTTLED[..], &["--max-strikes", "0"]].concat());
    let mut c = server.connect("hasty").await;
    let ids: Vec<String> = (0..50).map(|i| format!("c{i}")).collect();
    for id in &ids {
        c.send_msg(json!({"user":"bob"}), id, "before the close").await;
    }
    // One bad frame with zero tolerance: the server closes at once.
    c.send_binary(vec![1, 2, 3]).await;
    let mut acked = Vec::new();
    let close = loop {
        match c.next_event().await {
            Event::Frame(ServerFrame::Ack { client_msg_id, .. }) => acked.push(client_msg_id),
            Event::Frame(_) => {}
            Event::Closed(close) => break close,
        }
    };
    assert_eq!(close.expect("a close frame").code, CloseCode::Policy);
    acked.sort_by_key(|id| id[1..].parse::<u32>().unwrap());
    assert_eq!(acked, ids, "every send taken before the close is acked before it");
    // And they were stored: bob syncs all fifty.
    let mut bob = server.connect("bob").await;
    bob.sync("dm:bob:hasty", 0).await;
    let synced = bob.next_where(|f| matches!(f, ServerFrame::Synced { .. })).await;
    assert!(matches!(synced, ServerFrame::Synced { count: 50, .. }), "{synced:?}");
}

#[tokio::test]
async fn a_token_offered_as_a_subprotocol_logs_in_and_is_not_echoed() {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let server = Server::start(&[]);
    let mut req = format!("ws://{}/ws", server.addr).into_client_request().unwrap();
    let offered = format!("parley, bearer.{}", server.token("dora"));
    req.headers_mut().insert("sec-websocket-protocol", offered.parse().unwrap());
    let (mut ws, response) = tokio_tungstenite::connect_async(req).await.expect("the subprotocol token logs in");
    let selected = response.headers().get("sec-websocket-protocol").map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(selected.as_deref(), Some("parley"), "only `parley` is selected; the token is not echoed");
    let first = tokio::time::timeout(support::WAIT, ws.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(
        ServerFrame::from_json(first.to_text().unwrap()).unwrap(),
        ServerFrame::Hello { user: "dora".into(), minor: parley_core::protocol::MINOR_VERSION }
    );
    // A forged one is refused before the upgrade.
    let mut req = format!("ws://{}/ws", server.addr).into_client_request().unwrap();
    req.headers_mut().insert("sec-websocket-protocol", "parley, bearer.forged".parse().unwrap());
    assert!(tokio_tungstenite::connect_async(req).await.is_err());
}
