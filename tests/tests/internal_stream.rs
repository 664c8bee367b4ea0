//! The gateway's internal stream (`/internal/stream` on port 9090) takes
//! deliveries only from whoever presents the internal token: a gateway
//! started from the pod spec the operator renders, on the real Kafka and
//! PostgreSQL, refuses a stream without it or with another token, and
//! pushes what an authorized stream carries to its connected users.

use futures::SinkExt;
use parley_adapters::delivery::Delivery;
use parley_adapters::store::StoredMessage;
use parley_core::ids::ConversationId;
use parley_core::internal_token;
use parley_core::protocol::ServerFrame;
use parley_tests::operator::free_port;
use parley_tests::{chat, env};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

fn request(internal: &str, authorization: Option<&str>) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    let mut req = format!("ws://{internal}/internal/stream").into_client_request().unwrap();
    if let Some(value) = authorization {
        req.headers_mut().insert("authorization", value.parse().unwrap());
    }
    req
}

fn status_of(result: Result<impl Sized, WsError>) -> u16 {
    match result {
        Err(WsError::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
        Ok(_) => 101,
    }
}

#[tokio::test]
async fn only_the_internal_token_opens_the_stream() {
    let prefix = env::unique("internal");
    let db_url = chat::prepare(&prefix, 2).await;
    let specs = chat::render(&prefix, &db_url);
    let token = specs.gateway.env.get(internal_token::ENV).expect("the gateway's pod spec carries the token").clone();
    let gateway = chat::start_gateway(&specs.gateway, "internal-gw", &format!("127.0.0.1:{}", free_port()));
    let internal = gateway.internal.clone().unwrap();

    let refused = tokio_tungstenite::connect_async(request(&internal, None)).await;
    assert_eq!(status_of(refused), 401, "no token");
    let wrong = internal_token::bearer("another-token-of-the-same-size");
    let refused = tokio_tungstenite::connect_async(request(&internal, Some(&wrong))).await;
    assert_eq!(status_of(refused), 401, "another token");

    let mut alice = chat::connect(&gateway.addr, "alice").await;
    let right = internal_token::bearer(&token);
    let (mut stream, _) =
        tokio_tungstenite::connect_async(request(&internal, Some(&right))).await.expect("the token opens it");
    let delivery = Delivery {
        message: StoredMessage {
            conversation: ConversationId::direct("alice", "bob"),
            seq: 1,
            msg_id: "m-1".into(),
            client_msg_id: "c-1".into(),
            from: "bob".into(),
            body: "through the internal stream".into(),
            ts: 0,
            kind: Default::default(),
            target: None,
            amended: None,
        },
        recipients: vec!["alice".into()],
        origin: None,
        duplicate: false,
        refused: None,
        refusal_to: None,
    };
    let text = String::from_utf8(delivery.to_bytes().unwrap()).unwrap();
    stream.send(Message::text(text)).await.unwrap();
    let pushed = alice.next_where(|f| matches!(f, ServerFrame::Message(_))).await;
    assert!(matches!(pushed, ServerFrame::Message(m) if m.body == "through the internal stream"));

    let port: u16 = internal.rsplit(':').next().unwrap().parse().unwrap();
    let metrics = parley_testkit::http::http_get(port, "/metrics");
    assert!(metrics.contains("parley_gateway_internal_streams_refused_total 2"), "{metrics}");
}
