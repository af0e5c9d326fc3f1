//! Direct sends through the API: the caller names the user, the content and perhaps one
//! channel; rendering problems are theirs to fix (422), not a retry's.

use serde_json::Value;
use uuid::Uuid;

use super::{Content, Notifications, NotifyError, Plan};
use crate::channels::Channel;
use crate::domain::Topic;
use crate::view::{AcceptedView, CreatedView};

/// A direct notification (`POST /api/v1/notifications`).
#[derive(Debug, Clone)]
pub struct DirectCommand {
    pub user: Uuid,
    /// One channel only; all the user's enabled channels when `None`.
    pub channel: Option<Channel>,
    pub content: Content,
    /// A JSON object for the app.
    pub data: Value,
}

impl Notifications {
    /// Queues a direct notification; rendering problems are the caller's (422).
    pub async fn send_direct(&self, command: DirectCommand) -> Result<AcceptedView, NotifyError> {
        let txn = platform_db::begin_write(&self.inner.db).await?;
        let created = self
            .create(
                &txn,
                Plan {
                    topic: Topic::Direct,
                    event_id: None,
                    user: command.user,
                    only: command.channel,
                    content: command.content,
                    data: command.data,
                },
            )
            .await?;
        txn.commit().await?;
        self.after_commit(&created);
        Ok(AcceptedView {
            notifications: created
                .into_iter()
                .map(|c| CreatedView {
                    id: c.id,
                    channel: c.channel.as_str().to_owned(),
                    status: c.status.as_str().to_owned(),
                    reason: c.reason.map(str::to_owned),
                })
                .collect(),
        })
    }
}
