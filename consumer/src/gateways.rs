//! The push consumer's side of the internal stream: one WebSocket per
//! gateway, `ws://<gateway internal address>/internal/stream`, carrying one
//! JSON [`Delivery`] per text frame (only the recipients that gateway holds).
//! Pushes are best effort: a gateway that cannot be reached is forgotten
//! until it announces itself again, and its clients recover by `sync`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::SinkExt;
use parley_common::delivery::{Delivery, DeliverySink};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async_with_config};

use crate::metrics::Metrics;
use crate::presence::Presence;
use crate::webhook::Webhook;

const IO_TIMEOUT: Duration = Duration::from_secs(5);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub struct GatewayPush {
    pub presence: Arc<Mutex<Presence>>,
    pub metrics: Arc<Metrics>,
    pub webhook: Option<Webhook>,
    links: tokio::sync::Mutex<HashMap<String, Ws>>,
}

impl GatewayPush {
    pub fn new(presence: Arc<Mutex<Presence>>, metrics: Arc<Metrics>, webhook: Option<Webhook>) -> Self {
        Self { presence, metrics, webhook, links: tokio::sync::Mutex::default() }
    }

    fn presence(&self) -> std::sync::MutexGuard<'_, Presence> {
        self.presence.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn send(&self, addr: &str, text: String) -> Result<(), String> {
        let mut links = self.links.lock().await;
        if let Some(ws) = links.get_mut(addr) {
            match tokio::time::timeout(IO_TIMEOUT, ws.send(Message::text(text.clone()))).await {
                Ok(Ok(())) => return Ok(()),
                // A stale connection (the gateway restarted): reconnect once.
                _ => {
                    links.remove(addr);
                }
            }
        }
        let url = format!("ws://{addr}/internal/stream");
        // `true`: TCP_NODELAY, so a delivery never waits for a delayed ACK.
        let (mut ws, _) = tokio::time::timeout(IO_TIMEOUT, connect_async_with_config(url, None, true))
            .await
            .map_err(|_| "connect timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        tokio::time::timeout(IO_TIMEOUT, ws.send(Message::text(text)))
            .await
            .map_err(|_| "send timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        links.insert(addr.to_owned(), ws);
        Ok(())
    }
}

#[async_trait]
impl DeliverySink for GatewayPush {
    async fn deliver(&self, delivery: &Delivery) -> parley_common::Result<()> {
        let route = self.presence().route(delivery);
        for (gateway, (addr, part)) in route.gateways {
            let text = String::from_utf8_lossy(&part.to_bytes()?).into_owned();
            match self.send(&addr, text).await {
                Ok(()) => {
                    self.metrics.deliveries_pushed.inc();
                }
                Err(err) => {
                    tracing::warn!(gateway, addr, error = %err, "push: gateway unreachable; forgetting its users");
                    self.metrics.push_failures.inc();
                    self.presence().forget_gateway(&gateway);
                }
            }
        }
        for user in route.offline {
            self.metrics.offline_recipients.inc();
            if let Some(webhook) = &self.webhook
                && let Err(err) = webhook.notify(&user, &delivery.message).await
            {
                tracing::warn!(user, error = %err, "push: offline webhook failed");
                self.metrics.webhook_failures.inc();
            }
        }
        Ok(())
    }
}
