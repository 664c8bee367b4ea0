//! What the storage consumer publishes after a message is durable, and the
//! seam through which the push consumer hands it to connections.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::store::StoredMessage;

/// Which connection sent the message, so exactly that one gets the `ack`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    pub gateway_id: String,
    pub connection_id: u64,
}

/// A stored message with everyone who should see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub message: StoredMessage,
    /// Users whose connections receive the message (the sender included, for
    /// their other devices).
    pub recipients: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
    /// A resent `client_msg_id`: only the sender's `ack` is due, recipients
    /// already have the message.
    #[serde(default)]
    pub duplicate: bool,
    /// The message was not stored: its sender was not a member of the
    /// group at that point of the log. Only the sender's connection hears
    /// of it, with this reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// The connection a refusal goes to. Not in `origin`: gateways from
    /// before refusals existed ack whatever names an origin of theirs (with
    /// seq 0 here). During a rolling upgrade they now stay silent, so the
    /// message stays unacknowledged instead of acked as sent; a resend with
    /// the same `client_msg_id` meets an upgraded gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal_to: Option<Origin>,
}

impl Delivery {
    /// The sender's connection: the one owed the ack, or the refusal.
    pub fn sender_connection(&self) -> Option<&Origin> {
        self.origin.as_ref().or(self.refusal_to.as_ref())
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        Ok(serde_json::to_vec(self)?)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        Ok(serde_json::from_slice(bytes)?)
    }
}

/// Positions in a batch of the deliveries a sink could not hand over.
pub type Undelivered = std::collections::BTreeSet<usize>;

/// Where the push consumer hands deliveries: the local connection registry in
/// standalone mode, the gateway holding each recipient in Kafka mode.
#[async_trait]
pub trait DeliverySink: Send + Sync {
    async fn deliver(&self, delivery: &Delivery) -> Result<()>;

    /// Several deliveries, in order; returns the positions of those it
    /// could not hand over (a gateway holding a recipient was unreachable).
    /// A sink that can hand them over together (one write per gateway
    /// instead of one per delivery) overrides this.
    async fn deliver_all(&self, deliveries: &[Delivery]) -> Result<Undelivered> {
        for delivery in deliveries {
            self.deliver(delivery).await?;
        }
        Ok(Undelivered::new())
    }
}
