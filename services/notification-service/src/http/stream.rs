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
//!
//! A stream is only as good as the token that opened it: it ends when that token expires or is
//! revoked (logout, password or role change, deletion: woken by the revocation store), and
//! the client must come back with a valid one. A user holds at most `SSE_MAX_PER_USER` streams
//! on a replica at once ([`StreamSlots`]); one more is a 429.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use platform_auth::{AuthUser, Jwt};
use platform_http::{CancellationToken, Problem, Query};
use serde::Deserialize;
use tokio::sync::{broadcast, watch};
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
    #[param(value_type = Option<uuid::Uuid>)]
    pub last_event_id: Option<String>,
}

/// Server-Sent Events of the caller's new in-app notifications.
#[utoipa::path(get, path = "/api/v1/notifications/stream", tag = "notifications",
    params(StreamQuery,
        ("Last-Event-ID" = Option<uuid::Uuid>, Header, description = "Resume after this notification id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "`text/event-stream`: one `notification` event per in-app notification", content_type = "text/event-stream", body = InAppView),
        (status = 400, description = "`Last-Event-ID` is not a notification id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "The caller already holds `SSE_MAX_PER_USER` streams", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn stream(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    Query(query): Query<StreamQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, Problem> {
    let id = |raw: &str, name: &str| {
        Uuid::parse_str(raw.trim())
            .map(NotificationId::from_uuid)
            .map_err(|_| {
                Problem::bad_request(format!("`{name}` must be the id of a notification."))
            })
    };
    // Both are checked, whichever is used: a malformed one is an error, not ignored.
    let from_query = query
        .last_event_id
        .as_deref()
        .map(|raw| id(raw, "last_event_id"))
        .transpose()?;
    let from_header = headers
        .get("last-event-id")
        .map(|value| id(value.to_str().unwrap_or("not text"), "Last-Event-ID"))
        .transpose()?;
    let resume = from_header.or(from_query);
    let slot = state.streams.open(user.id.as_uuid())?;
    let session = Session::new(state.jwt.clone(), user);
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
        session,
        _slot: slot,
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
    /// The token the stream was opened with: the stream ends with it.
    session: Session,
    /// Counts the stream against its user's cap until it ends.
    _slot: StreamSlot,
}

/// The credential a stream lives on: valid until its `exp`, or until revoked.
struct Session {
    jwt: Jwt,
    caller: AuthUser,
    expires: tokio::time::Instant,
    revocations: watch::Receiver<u64>,
}

impl Session {
    fn new(jwt: Jwt, caller: AuthUser) -> Self {
        let left = caller.expires_at - chrono::Utc::now().timestamp();
        let left = Duration::from_secs(u64::try_from(left).unwrap_or(0));
        Self {
            revocations: jwt.revocations().changes(),
            expires: tokio::time::Instant::now() + left,
            jwt,
            caller,
        }
    }

    fn valid(&self) -> bool {
        tokio::time::Instant::now() < self.expires
            && self.jwt.check_revocation(&self.caller).is_ok()
    }

    /// Returns when the token expires or is revoked.
    async fn ended(&mut self) {
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(self.expires) => return,
                changed = self.revocations.changed() => {
                    // The store never closes while a `Jwt` holds it; if it did, stop watching.
                    if changed.is_err() {
                        return std::future::pending().await;
                    }
                    if !self.valid() {
                        return;
                    }
                }
            }
        }
    }
}

/// Open streams per user on this replica, capped. Cheap to clone.
#[derive(Clone, Debug)]
pub struct StreamSlots {
    open: Arc<Mutex<HashMap<Uuid, usize>>>,
    max_per_user: usize,
}

/// One open stream; gives its slot back when dropped (the stream ended or the client left).
struct StreamSlot {
    slots: StreamSlots,
    user: Uuid,
}

impl StreamSlots {
    pub fn new(max_per_user: usize) -> Self {
        Self {
            open: Arc::new(Mutex::new(HashMap::new())),
            max_per_user,
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, usize>> {
        // Plain counters: a panic elsewhere cannot leave one half-written.
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A slot for one more stream of `user`, or the 429.
    fn open(&self, user: Uuid) -> Result<StreamSlot, Problem> {
        let mut table = self.table();
        let count = table.entry(user).or_insert(0);
        if *count >= self.max_per_user {
            return Err(Problem::too_many_requests(5).with_detail(format!(
                "At most {} notification streams may be open at once; close one first.",
                self.max_per_user
            )));
        }
        *count += 1;
        Ok(StreamSlot {
            slots: self.clone(),
            user,
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut table = self.slots.table();
        if let Some(count) = table.get_mut(&self.user) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                table.remove(&self.user);
            }
        }
    }
}

impl Feed {
    /// The next notification to send; `None` ends the stream (shutdown, or the database
    /// failed: the client reconnects with its `Last-Event-ID`).
    async fn next(&mut self) -> Option<InAppView> {
        loop {
            if self.stop.is_cancelled() || !self.session.valid() {
                return None;
            }
            if let Some(view) = self.pending.pop_front() {
                return Some(view);
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

    /// Until there may be something new for this user; `None` at shutdown, or when the
    /// stream's token expires or is revoked.
    async fn wait(&mut self) -> Option<()> {
        let reread = tokio::time::sleep(REREAD_EVERY);
        tokio::pin!(reread);
        loop {
            tokio::select! {
                () = self.stop.cancelled() => return None,
                () = self.session.ended() => return None,
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
