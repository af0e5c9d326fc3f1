//! The SSE stream: real time, authenticated, resumable, private, with heartbeats.

use std::time::{Duration, Instant};

use platform_auth::Role;
use platform_testing::Backend;
use serde_json::{Value, json};

use crate::helpers::{Actor, Bus, TestApp, actor, problem, spawn_app, spawn_with};

const STREAM: &str = "/api/v1/notifications/stream";

/// One open `text/event-stream` response, read event by event.
struct Sse {
    response: reqwest::Response,
    buffer: String,
}

/// One event as sent: its fields, comments dropped.
#[derive(Debug, Default)]
struct Received {
    event: Option<String>,
    id: Option<String>,
    data: String,
}

impl Sse {
    async fn open(app: &TestApp, who: &Actor, last_event_id: Option<&str>) -> Self {
        let mut call = app.get(STREAM).by(who);
        if let Some(id) = last_event_id {
            call = call.header("Last-Event-ID", id);
        }
        let response = call.await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Self {
            response,
            buffer: String::new(),
        }
    }

    /// The next raw block (an event or a comment) within `limit`.
    async fn block(&mut self, limit: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block = self.buffer[..end].to_owned();
                self.buffer.drain(..end + 2);
                return Some(block);
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .ok()?
                .unwrap()?;
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// The next event (comments skipped) within `limit`.
    async fn next(&mut self, limit: Duration) -> Option<Received> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let block = self.block(left).await?;
            let mut event = Received::default();
            let mut any = false;
            for line in block.lines() {
                if let Some(value) = line.strip_prefix("event:") {
                    event.event = Some(value.trim().to_owned());
                    any = true;
                } else if let Some(value) = line.strip_prefix("id:") {
                    event.id = Some(value.trim().to_owned());
                    any = true;
                } else if let Some(value) = line.strip_prefix("data:") {
                    event.data.push_str(value.trim_start());
                    any = true;
                }
            }
            if any {
                return Some(event);
            }
        }
    }
}

async fn the_stream_delivers_a_notification_within_a_second(backend: Backend, bus: Bus) {
    let app = spawn_app(backend, bus).await;
    let mut stream = Sse::open(&app, &app.user, None).await;
    let published = Instant::now();
    app.register(&app.user, "ada@example.org", "user").await;
    let event = stream
        .next(Duration::from_secs(1))
        .await
        .expect("an event within a second of user.registered");
    let took = published.elapsed();
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert_eq!(event.event.as_deref(), Some("notification"));
    let data: Value = serde_json::from_str(&event.data).unwrap();
    assert_eq!(data["event_type"], "user.registered");
    assert_eq!(data["subject"], "Welcome to the shop, Ada Lovelace!");
    assert_eq!(event.id.as_deref(), data["id"].as_str());
}

async fn the_stream_resumes_is_private_and_beats(backend: Backend, bus: Bus) {
    let app = spawn_with(backend, bus, |config| {
        config.sse_heartbeat = Duration::from_millis(200);
    })
    .await;
    let other = actor(Role::User);
    let send = |who: &Actor, subject: &str| json!({"user_id": who.id, "channel": "in_app", "subject": subject, "body": "b"});
    for n in 1..=3 {
        app.notify(&send(&app.user, &format!("#{n}"))).await;
    }
    app.notify(&send(&other, "not yours")).await;
    let inbox = app.inbox(&app.user, "").await;
    let first = inbox["items"][2]["id"].as_str().unwrap().to_owned();
    assert_eq!(inbox["items"][2]["subject"], "#1");

    // Reconnecting after #1 replays #2 and #3, in order, then goes live.
    let mut stream = Sse::open(&app, &app.user, Some(&first)).await;
    for expected in ["#2", "#3"] {
        let event = stream.next(Duration::from_secs(2)).await.unwrap();
        let data: Value = serde_json::from_str(&event.data).unwrap();
        assert_eq!(data["subject"], expected);
    }
    app.notify(&send(&other, "still not yours")).await;
    app.notify(&send(&app.user, "#4")).await;
    let event = stream.next(Duration::from_secs(2)).await.unwrap();
    let data: Value = serde_json::from_str(&event.data).unwrap();
    assert_eq!(
        data["subject"], "#4",
        "other users' notifications never show"
    );

    // A fresh stream starts now: nothing old, only heartbeats while idle.
    let mut fresh = Sse::open(&app, &app.user, None).await;
    let beat = fresh.block(Duration::from_secs(2)).await.unwrap();
    assert!(beat.starts_with(':'), "a heartbeat comment: {beat:?}");
    assert!(fresh.next(Duration::from_millis(500)).await.is_none());

    problem(app.get(STREAM).await, 401).await;
    let bad = app
        .get(STREAM)
        .by(&app.user)
        .header("Last-Event-ID", "yesterday")
        .await;
    problem(bad, 400).await;
}

crate::bus_tests!(the_stream_delivers_a_notification_within_a_second);

mod resume {
    use super::*;
    crate::db_tests!(the_stream_resumes_is_private_and_beats);
}

impl Sse {
    /// Whether the server ends the stream within `limit` (reading whatever comes first).
    async fn ends_within(&mut self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.response.chunk()).await {
                Err(_) => return false,
                Ok(Ok(Some(_))) => {}
                Ok(Ok(None) | Err(_)) => return true,
            }
        }
    }
}

async fn a_user_holds_at_most_five_streams(backend: Backend, bus: Bus) {
    // Quick heartbeats: a write is how the server learns that a client went away.
    let app = spawn_with(backend, bus, |config| {
        config.sse_heartbeat = Duration::from_millis(100);
    })
    .await;
    let mut open = Vec::new();
    for _ in 0..5 {
        open.push(Sse::open(&app, &app.user, None).await);
    }
    let sixth = app.get(STREAM).by(&app.user).await;
    assert!(sixth.headers().contains_key("retry-after"));
    problem(sixth, 429).await;
    // Another user is not affected.
    Sse::open(&app, &actor(Role::User), None).await;
    // Closing one frees its slot.
    drop(open.pop());
    let mut reopened = None;
    for _ in 0..150 {
        let response = app.get(STREAM).by(&app.user).await;
        if response.status() == 200 {
            reopened = Some(response);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(reopened.is_some(), "a closed stream's slot is given back");
}

async fn a_stream_ends_when_its_token_expires(backend: Backend, bus: Bus) {
    let app = spawn_app(backend, bus).await;
    let jwt = platform_auth::Jwt::new(platform_auth::JwtConfig {
        expiration: Duration::from_secs(2),
        ..platform_auth::JwtConfig::with_secret(crate::helpers::JWT_SECRET)
    });
    let token = jwt
        .issue(platform_auth::UserId::from_uuid(app.user.id), Role::User)
        .unwrap()
        .token;
    let short = Actor {
        id: app.user.id,
        token,
    };
    let mut stream = Sse::open(&app, &short, None).await;
    assert!(stream.ends_within(Duration::from_secs(4)).await);
}

async fn a_stream_ends_when_its_token_is_revoked(backend: Backend, bus: Bus) {
    let app = spawn_app(backend, bus).await;
    let mut stream = Sse::open(&app, &app.user, None).await;
    let mut other = Sse::open(&app, &actor(Role::User), None).await;
    // As user-service does at logout (this process's store is the service's).
    platform_auth::Revocations::in_process()
        .revoke(
            platform_auth::UserId::from_uuid(app.user.id),
            platform_auth::TokenVersion::new(1),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    let started = Instant::now();
    assert!(stream.ends_within(Duration::from_secs(2)).await);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert!(
        !other.ends_within(Duration::from_millis(300)).await,
        "others' streams go on"
    );
    problem(app.get(STREAM).by(&app.user).await, 401).await;
}

mod lifetime {
    use super::*;
    crate::db_tests!(
        a_user_holds_at_most_five_streams,
        a_stream_ends_when_its_token_expires,
        a_stream_ends_when_its_token_is_revoked,
    );
}
