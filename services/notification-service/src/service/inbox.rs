//! The user's in-app inbox: pages of it, read marks, and the batches an SSE stream sends.

use platform_http::{Page, PageRequest};
use uuid::Uuid;

use super::{Notifications, NotifyError};
use crate::domain::NotificationId;
use crate::repo;
use crate::view::InAppView;

impl Notifications {
    pub async fn inbox(
        &self,
        user: Uuid,
        unread_only: bool,
        page: PageRequest,
    ) -> Result<Page<InAppView>, NotifyError> {
        let (rows, total) = repo::inbox(&self.inner.db, user, unread_only, page).await?;
        Ok(page.into_page(rows.into_iter().map(InAppView::from).collect(), total))
    }

    pub async fn mark_read(&self, user: Uuid, id: NotificationId) -> Result<(), NotifyError> {
        if repo::mark_read(&self.inner.db, user, id).await? {
            Ok(())
        } else {
            Err(NotifyError::NotFound)
        }
    }

    /// In-app notifications after `after`, oldest first (an SSE stream's next batch).
    pub async fn in_app_after(
        &self,
        user: Uuid,
        after: Option<NotificationId>,
        limit: u64,
    ) -> Result<Vec<InAppView>, NotifyError> {
        let rows = repo::inbox_after(&self.inner.db, user, after, limit).await?;
        Ok(rows.into_iter().map(InAppView::from).collect())
    }

    pub async fn newest_in_app(&self, user: Uuid) -> Result<Option<NotificationId>, NotifyError> {
        Ok(repo::newest_in_app(&self.inner.db, user).await?)
    }
}
