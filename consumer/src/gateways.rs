//! The push consumer's side of the internal stream: one WebSocket per
//! gateway, `ws://<gateway internal address>/internal/stream`, carrying one
//! JSON [`Delivery`] per text frame (only the recipients that gateway holds).
//! Pushes are best effort: a gateway that cannot be reached is forgotten
//! until it announces itself again, and its clients recover by `sync`.
//! A batch of deliveries goes to each gateway with one flush: a flush per
//! delivery cost a send(2) here and a wake-up there for every message.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::SinkExt;
use parley_adapters::delivery::{Delivery, DeliverySink, Undelivered};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, header};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async_with_config};

use crate::metrics::Metrics;
use crate::presence::Presence;

const IO_TIMEOUT: Duration = Duration::from_secs(5);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub struct GatewayPush {
    pub presence: Arc<Mutex<Presence>>,
    pub metrics: Arc<Metrics>,
    /// `Bearer <internal token>`, the gateways' key to their stream.
    authorization: String,
    links: tokio::sync::Mutex<HashMap<String, Ws>>,
}

impl GatewayPush {
    pub fn new(presence: Arc<Mutex<Presence>>, metrics: Arc<Metrics>, internal_token: &str) -> Self {
        let authorization = parley_core::internal_token::bearer(internal_token);
        Self { presence, metrics, authorization, links: tokio::sync::Mutex::default() }
    }

    fn presence(&self) -> std::sync::MutexGuard<'_, Presence> {
        self.presence.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `texts` in order over the gateway's stream, flushed once.
    async fn send(&self, addr: &str, texts: &[String]) -> Result<(), StreamError> {
        let mut links = self.links.lock().await;
        if let Some(ws) = links.get_mut(addr) {
            match tokio::time::timeout(IO_TIMEOUT, write_all(ws, texts)).await {
                Ok(Ok(())) => return Ok(()),
                // A stale connection (the gateway restarted): reconnect once.
                _ => {
                    links.remove(addr);
                }
            }
        }
        let mut request = format!("ws://{addr}/internal/stream").into_client_request()?;
        let authorization = HeaderValue::from_str(&self.authorization).map_err(|_| StreamError::BadToken)?;
        request.headers_mut().insert(header::AUTHORIZATION, authorization);
        // `true`: TCP_NODELAY, so a delivery never waits for a delayed ACK.
        let (mut ws, _) = tokio::time::timeout(IO_TIMEOUT, connect_async_with_config(request, None, true))
            .await
            .map_err(|_| StreamError::ConnectTimedOut)??;
        tokio::time::timeout(IO_TIMEOUT, write_all(&mut ws, texts)).await.map_err(|_| StreamError::SendTimedOut)??;
        links.insert(addr.to_owned(), ws);
        Ok(())
    }
}

/// Why deliveries did not reach a gateway's stream.
#[derive(Debug, thiserror::Error)]
enum StreamError {
    #[error("the internal token is not a valid header value")]
    BadToken,
    #[error("connect timed out")]
    ConnectTimedOut,
    #[error("send timed out")]
    SendTimedOut,
    #[error("{0}")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
}

async fn write_all(ws: &mut Ws, texts: &[String]) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    for text in texts {
        ws.feed(Message::text(text.as_str())).await?;
    }
    ws.flush().await
}

#[async_trait]
impl DeliverySink for GatewayPush {
    async fn deliver(&self, delivery: &Delivery) -> parley_adapters::Result<()> {
        self.deliver_all(std::slice::from_ref(delivery)).await.map(|_| ())
    }

    async fn deliver_all(&self, deliveries: &[Delivery]) -> parley_adapters::Result<Undelivered> {
        // gateway id -> (address, its parts in order, their positions in the batch).
        // Recipients connected nowhere are the offline role's (`crate::offline`).
        let mut streams: BTreeMap<String, (String, Vec<String>, Vec<usize>)> = BTreeMap::new();
        {
            let presence = self.presence();
            for (i, delivery) in deliveries.iter().enumerate() {
                let route = presence.route(delivery);
                for (gateway, (addr, part)) in route.gateways {
                    let text = String::from_utf8_lossy(&part.to_bytes()?).into_owned();
                    let stream = streams.entry(gateway).or_insert_with(|| (addr, Vec::new(), Vec::new()));
                    stream.1.push(text);
                    stream.2.push(i);
                }
                self.metrics.offline_recipients.inc_by(route.offline.len() as u64);
            }
        }
        let mut undelivered = Undelivered::new();
        for (gateway, (addr, texts, positions)) in streams {
            match self.send(&addr, &texts).await {
                Ok(()) => {
                    self.metrics.deliveries_pushed.inc_by(texts.len() as u64);
                }
                Err(err) => {
                    tracing::warn!(gateway, addr, error = %err, "push: gateway unreachable; forgetting its users");
                    self.metrics.push_failures.inc_by(texts.len() as u64);
                    self.presence().forget_gateway(&gateway);
                    undelivered.extend(positions);
                }
            }
        }
        Ok(undelivered)
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use parley_adapters::store::StoredMessage;
    use parley_core::event::{EventMetadata, MessageEvent};
    use parley_core::ids::ConversationId;
    use tokio::net::TcpListener;

    use super::*;

    fn online(user: &str, gateway: &str, addr: &str) -> MessageEvent {
        let meta = EventMetadata {
            gateway_id: Some(gateway.into()),
            gateway_addr: Some(addr.into()),
            ..EventMetadata::default()
        };
        MessageEvent::presence(user, true, 1, meta)
    }

    fn delivery(seq: u64, to: &str) -> Delivery {
        Delivery {
            message: StoredMessage {
                conversation: ConversationId::direct("a", to),
                seq,
                msg_id: format!("m{seq}"),
                client_msg_id: format!("c{seq}"),
                from: "a".into(),
                body: "hi".into(),
                ts: 0,
                kind: Default::default(),
                target: None,
                amended: None,
            },
            recipients: vec![to.into()],
            origin: None,
            duplicate: false,
            refused: None,
            refusal_to: None,
        }
    }

    const TOKEN: &str = "internal-token-of-the-tests";

    /// The stream answers only the internal token, as the gateway's does.
    // The error type is tungstenite's, for its handshake callback.
    #[allow(clippy::result_large_err)]
    fn only_the_token(
        req: &tokio_tungstenite::tungstenite::handshake::server::Request,
        resp: tokio_tungstenite::tungstenite::handshake::server::Response,
    ) -> Result<
        tokio_tungstenite::tungstenite::handshake::server::Response,
        tokio_tungstenite::tungstenite::handshake::server::ErrorResponse,
    > {
        let presented = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        assert!(parley_core::internal_token::authorizes(presented, TOKEN), "{presented:?}");
        Ok(resp)
    }

    /// A gateway's internal stream that records the frames it receives.
    async fn gateway() -> (String, tokio::sync::mpsc::UnboundedReceiver<Delivery>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_hdr_async(tcp, only_the_token).await.unwrap();
            while let Some(Ok(Message::Text(text))) = ws.next().await {
                let _ = tx.send(Delivery::from_bytes(text.as_bytes()).unwrap());
            }
        });
        (addr, rx)
    }

    #[tokio::test]
    async fn a_batch_reaches_each_gateway_in_order_and_an_unreachable_one_is_forgotten() {
        let (addr, mut frames) = gateway().await;
        // A port nothing listens on.
        let dead = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().to_string();
        let mut presence = Presence::default();
        let now = std::time::Instant::now();
        presence.apply(&online("b", "gw1", &addr), now);
        presence.apply(&online("c", "gw1", &addr), now);
        presence.apply(&online("d", "gw2", &dead), now);
        let presence = Arc::new(Mutex::new(presence));
        let metrics = Arc::new(Metrics::new());
        let push = GatewayPush::new(presence.clone(), metrics.clone(), TOKEN);

        let batch = [delivery(1, "b"), delivery(2, "d"), delivery(3, "c"), delivery(4, "x"), delivery(5, "b")];
        let undelivered = push.deliver_all(&batch).await.unwrap();
        assert_eq!(undelivered, [1].into(), "only the delivery routed to the unreachable gateway");
        let mut got = Vec::new();
        for _ in 0..3 {
            let d = tokio::time::timeout(IO_TIMEOUT, frames.recv()).await.unwrap().unwrap();
            got.push((d.message.seq, d.recipients));
        }
        assert_eq!(got, [(1, vec!["b".to_string()]), (3, vec!["c".into()]), (5, vec!["b".into()])]);
        let text = metrics.encode();
        for line in [
            "parley_consumer_deliveries_pushed_total 3",
            "parley_consumer_push_failures_total 1",
            "parley_consumer_offline_recipients_total 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing from\n{text}");
        }
        assert!(presence.lock().unwrap().gateways_of("d").is_empty(), "the unreachable gateway is forgotten");

        // The link is kept: the next batch goes over the same stream.
        push.deliver(&delivery(6, "c")).await.unwrap();
        let d = tokio::time::timeout(IO_TIMEOUT, frames.recv()).await.unwrap().unwrap();
        assert_eq!(d.message.seq, 6);
    }
}
