//! A `Store` that counts what the storage worker writes.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use parley_adapters::store::{
    ConversationOverview, ConversationSummary, Group, Invitation, Joined, Member, Membership, NewGroup, NewMessage,
    Store, StoreOutcome, StoredMessage,
};
use parley_core::groups::Role;
use parley_core::ids::ConversationId;

use crate::metrics::Metrics;

pub struct MeteredStore {
    pub inner: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
}

#[async_trait]
impl Store for MeteredStore {
    async fn ping(&self) -> parley_adapters::Result<()> {
        self.inner.ping().await
    }

    async fn store_batch(&self, batch: &[NewMessage]) -> parley_adapters::Result<Vec<StoreOutcome>> {
        let out = self.inner.store_batch(batch).await?;
        self.metrics.batches_stored.inc();
        let dups = out.iter().filter(|o| o.duplicate).count() as u64;
        self.metrics.duplicates_skipped.inc_by(dups);
        self.metrics.messages_stored.inc_by(out.len() as u64 - dups);
        Ok(out)
    }

    async fn history(
        &self,
        c: &ConversationId,
        after_seq: u64,
        limit: u32,
    ) -> parley_adapters::Result<Vec<StoredMessage>> {
        self.inner.history(c, after_seq, limit).await
    }

    async fn create_group(&self, group: &NewGroup) -> parley_adapters::Result<Group> {
        self.inner.create_group(group).await
    }

    async fn group(&self, id: &str) -> parley_adapters::Result<Option<Group>> {
        self.inner.group(id).await
    }

    async fn join_group(&self, id: &str, user: &str) -> parley_adapters::Result<Joined> {
        self.inner.join_group(id, user).await
    }

    async fn leave_group(&self, id: &str, user: &str) -> parley_adapters::Result<bool> {
        self.inner.leave_group(id, user).await
    }

    async fn members(&self, id: &str) -> parley_adapters::Result<Vec<String>> {
        self.inner.members(id).await
    }

    async fn roster(&self, id: &str) -> parley_adapters::Result<Vec<Member>> {
        self.inner.roster(id).await
    }

    async fn membership(&self, id: &str, user: &str) -> parley_adapters::Result<Option<Membership>> {
        self.inner.membership(id, user).await
    }

    async fn set_role(&self, id: &str, user: &str, role: Role) -> parley_adapters::Result<bool> {
        self.inner.set_role(id, user, role).await
    }

    async fn invite(&self, id: &str, user: &str, by: &str) -> parley_adapters::Result<bool> {
        self.inner.invite(id, user, by).await
    }

    async fn decline(&self, id: &str, user: &str) -> parley_adapters::Result<bool> {
        self.inner.decline(id, user).await
    }

    async fn invitations_of(&self, user: &str) -> parley_adapters::Result<Vec<Invitation>> {
        self.inner.invitations_of(user).await
    }

    async fn members_of(&self, ids: &[String]) -> parley_adapters::Result<HashMap<String, Vec<String>>> {
        self.inner.members_of(ids).await
    }

    async fn is_member(&self, id: &str, user: &str) -> parley_adapters::Result<bool> {
        self.inner.is_member(id, user).await
    }

    async fn conversations_of(&self, user: &str) -> parley_adapters::Result<Vec<ConversationSummary>> {
        self.inner.conversations_of(user).await
    }

    async fn overview(&self, user: &str) -> parley_adapters::Result<Vec<ConversationOverview>> {
        self.inner.overview(user).await
    }

    async fn mark_read(&self, user: &str, conversation: &ConversationId, seq: u64) -> parley_adapters::Result<u64> {
        self.inner.mark_read(user, conversation, seq).await
    }
}
