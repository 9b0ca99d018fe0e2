//! `/ws`: the alert push. After the upgrade (token, org and `since` checked
//! first, with the same rules as every route) a client gets:
//! 1. `{"type": "hello", "organizationId", "seq"}` — `seq` is the store's latest
//!    sequence number when it connected;
//! 2. with `?since=S`: the latest state of every alert of its org changed after
//!    `S`, in sequence order (`"replay": true`; `alert.resolved` when resolved,
//!    else `alert.updated` — clients upsert by id), then `{"type": "replay.done", "seq"}`;
//! 3. live changes of its org: `alert.created`, `alert.updated`, `alert.resolved`,
//!    each `{"type", "seq", "alert"}`. A client reconnects with `since` = the
//!    last `seq` it saw and misses nothing.
//!
//! The connection subscribes to the change broadcast *before* replaying, and
//! skips live changes at or below what the replay sent, so nothing falls in
//! between. The pipeline never waits for a client: the broadcast drops the
//! oldest changes for a receiver that falls behind, and such a client is closed
//! with 1013 (try again later) and a reason naming its resume cursor; a send
//! that does not complete within `ws_send_timeout_ms` (a client that stopped
//! reading) closes it the same way. The server pings every
//! `ws_ping_interval_ms`; a client silent for two intervals is closed with 4000.

use super::ApiState;
use super::request::{Scope, admit, error_response};
use super::routes;
use crate::store::{Change, ChangeKind, StoredAlert};
use futures_util::{SinkExt, StreamExt};
use prognos_dataflows::records::AlertStatus;
use serde::Serialize;
use std::time::{Duration, Instant};
use tokio::sync::broadcast::error::RecvError;
use warp::http::HeaderMap;
use warp::ws::{Message, WebSocket, Ws};

/// Close code for a client that fell behind (RFC 6455 "try again later").
pub const CLOSE_SLOW: u16 = 1013;
/// Close code for a client that stopped answering pings.
pub const CLOSE_HEARTBEAT: u16 = 4000;
/// Close code when the service stops.
pub const CLOSE_GOING_AWAY: u16 = 1001;

/// One message to a client.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Event<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    seq: u64,
    alert: &'a StoredAlert,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    replay: bool,
}

fn kind_name(k: ChangeKind) -> &'static str {
    match k {
        ChangeKind::Created => "alert.created",
        ChangeKind::Updated => "alert.updated",
        ChangeKind::Resolved => "alert.resolved",
    }
}

/// Answer an upgrade request: an error body, or the switch to the alert push.
pub fn upgrade(st: ApiState, ws: Ws, query: &str, headers: &HeaderMap) -> warp::reply::Response {
    use warp::Reply;
    let route = routes::ws_route();
    let (q, scope) = match admit(&st, route, query, headers) {
        Ok(a) => (a.query, a.scope),
        Err(e) => return error_response(&e),
    };
    let org = match scope {
        Some(Scope::Org(o)) => Some(o),
        _ => None,
    };
    let since = match q.get("since") {
        Some(super::request::Value::Int(s)) => Some(*s as u64),
        _ => None,
    };
    // Subscribe now: every change from here on reaches this client.
    let rx = st.svc.changes.subscribe();
    ws.max_message_size(4096)
        .max_frame_size(4096)
        .on_upgrade(move |socket| serve(st, socket, org, since, rx))
        .into_response()
}

async fn serve(
    st: ApiState,
    socket: WebSocket,
    org: Option<String>,
    since: Option<u64>,
    rx: tokio::sync::broadcast::Receiver<Change>,
) {
    let m = st.svc.m.clone();
    m.ws_clients.inc();
    let reason = Conn {
        st: &st,
        socket,
        org,
        send_timeout: Duration::from_millis(st.svc.settings.ws_send_timeout_ms),
    }
    .run(since, rx)
    .await;
    m.ws_clients.dec();
    m.ws_disconnects.with_label_values(&[reason]).inc();
}

struct Conn<'a> {
    st: &'a ApiState,
    socket: WebSocket,
    org: Option<String>,
    send_timeout: Duration,
}

/// Why a send failed: the label of the disconnect.
type Gone = &'static str;

impl Conn<'_> {
    async fn send(&mut self, text: String) -> Result<(), Gone> {
        match tokio::time::timeout(self.send_timeout, self.socket.send(Message::text(text))).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err("error"),
            Err(_) => Err("slow"),
        }
    }

    async fn event(
        &mut self,
        kind: &'static str,
        seq: u64,
        alert: &StoredAlert,
        replay: bool,
    ) -> Result<(), Gone> {
        let text = serde_json::to_string(&Event {
            kind,
            seq,
            alert,
            replay,
        })
        .expect("events serialize");
        self.send(text).await?;
        self.st.svc.m.ws_events.inc();
        Ok(())
    }

    async fn close(&mut self, code: u16, reason: String) {
        let _ = tokio::time::timeout(
            self.send_timeout,
            self.socket.send(Message::close_with(code, reason)),
        )
        .await;
    }

    /// Replay what changed after `since`; returns the last sequence number sent.
    async fn replay(&mut self, since: u64) -> Result<u64, Gone> {
        let batch = self.st.svc.settings.ws_replay_batch.max(1);
        let mut cursor = since;
        loop {
            let store = self.st.svc.store.clone();
            let org = self.org.clone();
            let page = tokio::task::spawn_blocking(move || {
                store.changes_since(org.as_deref(), cursor, batch)
            })
            .await
            .map_err(|_| "error")?
            .map_err(|e| {
                tracing::error!(error = %e, "WebSocket replay cannot read the store");
                "error"
            })?;
            let n = page.len();
            for (seq, alert) in page {
                let kind = if alert.status == AlertStatus::Resolved {
                    "alert.resolved"
                } else {
                    "alert.updated"
                };
                self.event(kind, seq, &alert, true).await?;
                cursor = cursor.max(seq);
            }
            if n < batch {
                return Ok(cursor);
            }
        }
    }

    async fn run(
        mut self,
        since: Option<u64>,
        mut rx: tokio::sync::broadcast::Receiver<Change>,
    ) -> &'static str {
        let last_seq = self.st.svc.store.last_seq().unwrap_or(0);
        let hello =
            serde_json::json!({"type": "hello", "organizationId": self.org, "seq": last_seq});
        if let Err(g) = self.send(hello.to_string()).await {
            return g;
        }
        let mut sent = 0;
        if let Some(since) = since {
            sent = match self.replay(since).await {
                Ok(s) => s,
                Err(g) => return g,
            };
            let done = serde_json::json!({"type": "replay.done", "seq": sent});
            if let Err(g) = self.send(done.to_string()).await {
                return g;
            }
        }
        let interval = Duration::from_millis(self.st.svc.settings.ws_ping_interval_ms.max(10));
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        let mut heard = Instant::now();
        loop {
            tokio::select! {
                change = rx.recv() => match change {
                    Ok(c) => {
                        if c.seq <= sent || self.org.as_ref().is_some_and(|o| *o != c.alert.organization_id) {
                            continue;
                        }
                        if let Err(g) = self.event(kind_name(c.kind), c.seq, &c.alert, false).await {
                            if g == "slow" {
                                self.close(CLOSE_SLOW, format!("slow consumer: reconnect with since={sent}")).await;
                            }
                            return g;
                        }
                        sent = c.seq;
                    }
                    Err(RecvError::Lagged(_)) => {
                        self.close(CLOSE_SLOW, format!("slow consumer: reconnect with since={sent}")).await;
                        return "lagged";
                    }
                    Err(RecvError::Closed) => {
                        self.close(CLOSE_GOING_AWAY, "service stopping".into()).await;
                        return "shutdown";
                    }
                },
                msg = self.socket.next() => match msg {
                    Some(Ok(m)) if m.is_close() => return "client",
                    Some(Ok(_)) => heard = Instant::now(),
                    Some(Err(_)) => return "error",
                    None => return "client",
                },
                _ = ping.tick() => {
                    if heard.elapsed() > interval * 2 {
                        self.close(CLOSE_HEARTBEAT, "heartbeat timeout".into()).await;
                        return "heartbeat";
                    }
                    if let Err(g) = self.send_ping().await {
                        return g;
                    }
                }
            }
        }
    }

    async fn send_ping(&mut self) -> Result<(), Gone> {
        match tokio::time::timeout(
            self.send_timeout,
            self.socket.send(Message::ping(Vec::new())),
        )
        .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err("error"),
            Err(_) => Err("slow"),
        }
    }
}
