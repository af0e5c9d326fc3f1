//! `GET /api/v1/notifications/stream`: the caller's new in-app notifications as Server-Sent
//! Events, in real time.
//!
//! Each event is `event: notification`, `id: <notification id>`, `data: <the notification as
//! JSON>`. Ids are time-ordered, so a client that reconnects with `Last-Event-ID` (browsers'
//! `EventSource` does it by itself; `?last_event_id=` works too) gets everything it missed,
//! then the live feed. Without one the stream starts at "now".
//!
//! The database is the source of truth: a stream sends what is stored after its cursor. It is
//! woken at once when this replica stores an in-app notification for the user, and re-reads
//! every few seconds anyway, which is how notifications stored by another replica arrive.
//! Idle streams send a heartbeat comment so proxies keep them open; all streams end at
//! shutdown.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use platform_auth::AuthUser;
use platform_http::{CancellationToken, Problem, Query};
use serde::Deserialize;
use tokio::sync::broadcast;
use utoipa::IntoParams;
use uuid::Uuid;

use super::AppState;
use crate::domain::NotificationId;
use crate::service::Notifications;
use crate::view::InAppView;

/// How often a stream re-reads without being woken: the latency for notifications stored
/// by another replica.
const REREAD_EVERY: Duration = Duration::from_secs(5);
/// Notifications read per query.
const BATCH: u64 = 100;

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// Resume after this notification id (the `Last-Event-ID` header wins when both are
    /// given).
    pub last_event_id: Option<String>,
}

/// Server-Sent Events of the caller's new in-app notifications.
#[utoipa::path(get, path = "/api/v1/notifications/stream", tag = "notifications",
    params(StreamQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this notification id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "`text/event-stream`: one `notification` event per in-app notification", content_type = "text/event-stream", body = InAppView),
        (status = 400, description = "`Last-Event-ID` is not a notification id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn stream(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    Query(query): Query<StreamQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, Problem> {
    let header = headers
        .get("last-event-id")
        .map(|value| value.to_str().unwrap_or("not text").to_owned());
    let resume = match header.or(query.last_event_id) {
        None => None,
        Some(raw) => Some(
            Uuid::parse_str(raw.trim())
                .map(NotificationId::from_uuid)
                .map_err(|_| {
                    Problem::bad_request("`Last-Event-ID` must be the id of a notification.")
                })?,
        ),
    };
    let user = user.id.as_uuid();
    // Subscribed before the cursor is read: nothing stored in between can be missed.
    let wakes = state.notifications.in_app_wakes();
    let cursor = match resume {
        Some(id) => Some(id),
        None => state.notifications.newest_in_app(user).await?,
    };
    let feed = Feed {
        notifications: state.notifications.clone(),
        user,
        cursor,
        pending: VecDeque::new(),
        wakes,
        stop: state.streams_stop.clone(),
    };
    let events = futures::stream::unfold(feed, |mut feed| async move {
        let view = feed.next().await?;
        let event = Event::default()
            .event("notification")
            .id(view.id.to_string())
            .json_data(&view)
            // A view always serializes; should it not, a comment keeps the stream valid.
            .unwrap_or_else(|_| Event::default().comment("unserializable notification"));
        Some((Ok(event), feed))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(state.heartbeat)))
}

/// One open stream's position.
struct Feed {
    notifications: Notifications,
    user: Uuid,
    /// The last notification sent (or the newest at the start); `None`: from the beginning.
    cursor: Option<NotificationId>,
    pending: VecDeque<InAppView>,
    wakes: broadcast::Receiver<Uuid>,
    stop: CancellationToken,
}

impl Feed {
    /// The next notification to send; `None` ends the stream (shutdown, or the database
    /// failed: the client reconnects with its `Last-Event-ID`).
    async fn next(&mut self) -> Option<InAppView> {
        loop {
            if let Some(view) = self.pending.pop_front() {
                return Some(view);
            }
            if self.stop.is_cancelled() {
                return None;
            }
            match self
                .notifications
                .in_app_after(self.user, self.cursor, BATCH)
                .await
            {
                Ok(batch) if !batch.is_empty() => {
                    self.cursor = batch.last().map(|v| NotificationId::from_uuid(v.id));
                    self.pending.extend(batch);
                    continue;
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, "notification stream ended: cannot read");
                    return None;
                }
            }
            self.wait().await?;
        }
    }

    /// Until there may be something new for this user; `None` at shutdown.
    async fn wait(&mut self) -> Option<()> {
        let reread = tokio::time::sleep(REREAD_EVERY);
        tokio::pin!(reread);
        loop {
            tokio::select! {
                () = self.stop.cancelled() => return None,
                () = &mut reread => return Some(()),
                woken = self.wakes.recv() => match woken {
                    Ok(user) if user == self.user => return Some(()),
                    Ok(_) => {}
                    // Missed wake-ups may have been ours: read.
                    Err(broadcast::error::RecvError::Lagged(_)) => return Some(()),
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
            }
        }
    }
}
