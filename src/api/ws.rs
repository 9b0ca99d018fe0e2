//! `/ws`: the alert push, and on request the live predictions. After the upgrade
//! (token, org, `since`, `predictions` and `machine` checked first, with the same
//! rules as every route) a client gets:
//! 1. `{"type": "hello", "organizationId", "seq", "predictions"}` — `seq` is the
//!    store's latest sequence number when it connected, `predictions` whether it
//!    asked for predictions;
//! 2. with `?since=S`: the latest state of every alert of its org changed after
//!    `S`, in sequence order (`"replay": true`; `alert.resolved` when resolved,
//!    else `alert.updated` — clients upsert by id), then `{"type": "replay.done", "seq"}`;
//! 3. live changes of its org: `alert.created`, `alert.updated`, `alert.resolved`,
//!    each `{"type", "seq", "alert"}`. A client reconnects with `since` = the
//!    last `seq` it saw and misses nothing;
//! 4. with `?predictions=true`: every prediction of its org as it is scored,
//!    `{"type": "prediction", "prediction"}` (the seed's PredictionResult, camelCase,
//!    with `organizationId`, `machineId` and the row's event time `ts`), only the
//!    `machine`'s with `&machine=M`. Predictions have no `seq` and are not
//!    replayed: a reconnecting client gets those scored from then on. A super
//!    admin sees every org's unless it names one with `?org=`. Where no pipeline
//!    runs in the process (`prognos controller`) asking for them answers 503;
//!    `machine` without `predictions=true` is a 400.
//! 5. for admins and super admins: every training run of its org that ends,
//!    `{"type": "training.completed|rejected|failed|skipped|interrupted",
//!    "organizationId", "job"}` (the job as `/api/ml/status` lists it; not
//!    replayed — `/api/ml/status` keeps the TrainingLog).
//!
//! The pipeline builds predictions for the bridge only while at least one
//! client asked for them (one receiver count per batch otherwise).
//!
//! The connection subscribes to the change broadcast *before* replaying, and
//! skips live changes at or below what the replay sent, so nothing falls in
//! between. The pipeline never waits for a client: the broadcast drops the
//! oldest changes (or predictions, on their own bounded broadcast) for a receiver
//! that falls behind, and such a client is closed with 1013 (try again later) and
//! a reason naming its alerts' resume cursor; a send
//! that does not complete within `ws_send_timeout_ms` (a client that stopped
//! reading) closes it the same way. The server pings every
//! `ws_ping_interval_ms`; a client silent for two intervals is closed with 4000.

use super::ApiError;
use super::ApiState;
use super::request::{Scope, Value, admit, error_response};
use super::routes;
use crate::auth::Role;
use crate::outputs::LivePrediction;
use crate::store::{Change, ChangeKind, StoredAlert};
use crate::training::jobs::AdminEvent;
use futures_util::{SinkExt, StreamExt};
use prognos_dataflows::records::AlertStatus;
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::broadcast::Receiver;
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
    let (q, scope, caller) = match admit(&st, route, None, query, headers) {
        Ok(a) => (a.query, a.scope, a.caller),
        Err(e) => return error_response(&e),
    };
    let org = match scope {
        Some(Scope::Org(o)) => Some(o),
        _ => None,
    };
    let since = match q.get("since") {
        Some(Value::Int(s)) => Some(*s as u64),
        _ => None,
    };
    let machine = match q.get("machine") {
        Some(Value::Text(m)) => Some(m.clone()),
        _ => None,
    };
    let predictions = match q.get("predictions") {
        Some(Value::Text(p)) if p == "true" => {
            let Some(tx) = &st.svc.predictions else {
                return error_response(&ApiError::new(
                    warp::http::StatusCode::SERVICE_UNAVAILABLE,
                    "no_pipeline",
                    "this process runs no pipeline: no live predictions here",
                ));
            };
            // Subscribe now, like the changes below.
            Some(tx.subscribe())
        }
        _ if machine.is_some() => {
            return error_response(&ApiError::field(
                "machine",
                "filters predictions: only with predictions=true",
            ));
        }
        _ => None,
    };
    // Subscribe now: every change from here on reaches this client.
    let rx = st.svc.changes.subscribe();
    let admin =
        admit_admin_events(caller.as_ref().map(|c| c.role)).then(|| st.svc.jobs.admin_events());
    let filter = Filter { org, machine };
    ws.max_message_size(4096)
        .max_frame_size(4096)
        .on_upgrade(move |socket| serve(st, socket, filter, since, rx, predictions, admin))
        .into_response()
}

/// Whether a caller of this role gets the admins' events (training runs).
fn admit_admin_events(role: Option<Role>) -> bool {
    matches!(role, Some(Role::Admin | Role::SuperAdmin))
}

/// Whose events a client gets.
struct Filter {
    /// Its org; `None`: a super admin who named none (every org).
    org: Option<String>,
    /// Only this machine's predictions.
    machine: Option<String>,
}

impl Filter {
    fn org_ok(&self, org: &str) -> bool {
        self.org.as_deref().is_none_or(|o| o == org)
    }

    fn prediction_ok(&self, p: &LivePrediction) -> bool {
        self.org_ok(&p.organization_id) && self.machine.as_deref().is_none_or(|m| m == p.machine_id)
    }
}

async fn serve(
    st: ApiState,
    socket: WebSocket,
    filter: Filter,
    since: Option<u64>,
    rx: Receiver<Change>,
    predictions: Option<Receiver<Arc<LivePrediction>>>,
    admin: Option<Receiver<Arc<AdminEvent>>>,
) {
    let m = st.svc.m.clone();
    m.ws_clients.inc();
    let reason = Conn {
        st: &st,
        socket,
        org: filter.org.clone(),
        send_timeout: Duration::from_millis(st.svc.settings.ws_send_timeout_ms),
    }
    .run(since, rx, predictions, admin, &filter)
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
        mut rx: Receiver<Change>,
        mut predictions: Option<Receiver<Arc<LivePrediction>>>,
        mut admin: Option<Receiver<Arc<AdminEvent>>>,
        filter: &Filter,
    ) -> &'static str {
        let last_seq = self.st.svc.store.last_seq().unwrap_or(0);
        let hello = serde_json::json!({"type": "hello", "organizationId": self.org,
            "seq": last_seq, "predictions": predictions.is_some()});
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
                        if c.seq <= sent || !filter.org_ok(&c.alert.organization_id) {
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
                p = next_of(&mut predictions) => match p {
                    Ok(p) => {
                        if !filter.prediction_ok(&p) {
                            continue;
                        }
                        if let Err(g) = self.send(p.message.clone()).await {
                            if g == "slow" {
                                self.close(CLOSE_SLOW, format!("slow consumer: reconnect with since={sent}")).await;
                            }
                            return g;
                        }
                        self.st.svc.m.ws_events.inc();
                    }
                    Err(RecvError::Lagged(_)) => {
                        self.close(CLOSE_SLOW, format!("slow consumer: reconnect with since={sent}")).await;
                        return "lagged";
                    }
                    // The pipeline is gone; alerts may still change (operator actions).
                    Err(RecvError::Closed) => predictions = None,
                },
                ev = next_of(&mut admin) => match ev {
                    Ok(ev) => {
                        if !filter.org_ok(&ev.organization_id) {
                            continue;
                        }
                        if let Err(g) = self.send(ev.message.clone()).await {
                            return g;
                        }
                        self.st.svc.m.ws_events.inc();
                    }
                    // Rare and not replayed: a client that missed some reads
                    // `/api/ml/status`.
                    Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => admin = None,
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

/// The next message of an optional broadcast, or never without one.
async fn next_of<T: Clone>(rx: &mut Option<Receiver<T>>) -> Result<T, RecvError> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_admins_get_the_training_events() {
        assert!(!admit_admin_events(Some(Role::Operator)));
        assert!(!admit_admin_events(None));
        assert!(admit_admin_events(Some(Role::Admin)));
        assert!(admit_admin_events(Some(Role::SuperAdmin)));
    }
}
