//! JSON schemas (OpenAPI 3.0 dialect) of everything the API reads and writes,
//! for `components.schemas`. Objects are closed (`additionalProperties: false`),
//! so the API tests, which check every answer they get against these schemas,
//! fail as soon as a type gains, loses or renames a field without its schema.

use serde_json::{Value, json};

fn s() -> Value {
    json!({"type": "string"})
}
fn dt() -> Value {
    json!({"type": "string", "format": "date-time"})
}
fn int() -> Value {
    json!({"type": "integer", "format": "int64"})
}
fn num() -> Value {
    json!({"type": "number"})
}
fn boolean() -> Value {
    json!({"type": "boolean"})
}
fn any() -> Value {
    json!({})
}
fn null(mut v: Value) -> Value {
    v["nullable"] = true.into();
    v
}
fn num_or_null() -> Value {
    null(num())
}
fn arr(items: Value) -> Value {
    json!({"type": "array", "items": items})
}
fn r(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}
fn en(values: &[&str]) -> Value {
    json!({"type": "string", "enum": values})
}
fn counts() -> Value {
    json!({"type": "object", "additionalProperties": {"type": "integer"}})
}

/// A closed object: `required` fields must be present, `optional` may be.
fn obj(required: &[(&str, Value)], optional: &[(&str, Value)]) -> Value {
    let mut props = serde_json::Map::new();
    for (k, v) in required.iter().chain(optional) {
        props.insert((*k).into(), v.clone());
    }
    let mut o = json!({"type": "object", "properties": props, "additionalProperties": false});
    if !required.is_empty() {
        o["required"] = required.iter().map(|(k, _)| *k).collect::<Vec<_>>().into();
    }
    o
}

/// An `[orgs.<id>]` table as JSON: the top level and the prediction settings
/// spelled out; signals, features, rules, failure signals and training are the
/// file's tables (config/prognos.example.toml), checked by the same validation.
fn org_config() -> Value {
    let table = |d: &str| json!({"type": "object", "description": d});
    let list = |d: &str| json!({"type": "array", "items": {"type": "object"}, "description": d});
    obj(
        &[
            ("name", s()),
            ("machine_column", s()),
            ("time_column", s()),
            (
                "signals",
                list("Canonical signals: name, column, kind, unit, limits."),
            ),
            (
                "prediction",
                obj(
                    &[(
                        "component_mapping",
                        json!({"type": "object", "additionalProperties": {"type": "string"}}),
                    )],
                    &[
                        ("enabled", boolean()),
                        ("failure_threshold", num()),
                        ("for_s", int()),
                        ("immediate_threshold", null(num())),
                        ("confidence_threshold", num()),
                        ("stage2_gate", null(num())),
                        ("horizon_minutes", int()),
                        ("time_to_failure_minutes", int()),
                        ("max_false_alarms_per_day", null(num())),
                        ("pin_threshold", boolean()),
                        ("timeout_ms", int()),
                    ],
                ),
            ),
        ],
        &[
            ("enabled", boolean()),
            ("features", table("Lags, windows, stats, derived signals.")),
            (
                "rules",
                list("Level rules (CRITICAL / WARNING) and forecast rules (PREDICTIVE)."),
            ),
            (
                "failure_signals",
                list(
                    "Fault flags whose rising edge starts a failure, or limit crossings held for hold_s.",
                ),
            ),
            ("training", table("Schedule and hyperparameters.")),
        ],
    )
}

/// Every named schema.
pub fn all() -> Vec<(&'static str, Value)> {
    let alert_type = en(&["CRITICAL", "WARNING", "PREDICTIVE"]);
    let status = en(&["ACTIVE", "ACKNOWLEDGED", "RESOLVED"]);
    let role = en(&["operator", "admin", "super_admin"]);
    let health = en(&["healthy", "degraded", "unhealthy"]);
    // A cluster's controller adds its worker processes to the pipeline routes.
    let workers = [
        ("staleWorkers", arr(int())),
        ("missingWorkers", arr(int())),
        (
            "workers",
            arr(obj(
                &[
                    ("process", int()),
                    ("status", en(&["ok", "stale", "missing"])),
                    ("state", null(en(&["starting", "running", "stopping"]))),
                    ("threads", null(int())),
                    ("lastSeenAt", null(dt())),
                    ("secondsSinceSeen", null(num())),
                ],
                &[],
            )),
        ),
    ];
    vec![
        (
            "Error",
            obj(
                &[(
                    "error",
                    obj(
                        &[("code", s()), ("message", s())],
                        &[(
                            "fields",
                            json!({"type": "object", "additionalProperties": {"type": "string"},
                                "description": "Field or parameter → why it was refused."}),
                        )],
                    ),
                )],
                &[],
            ),
        ),
        ("Health", obj(&[("status", s())], &[])),
        ("Ready", obj(&[("ready", boolean())], &[])),
        ("OrgConfig", org_config()),
        (
            "CreateOrgRequest",
            obj(
                &[
                    (
                        "id",
                        json!({"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,62}$"}),
                    ),
                    ("config", r("OrgConfig")),
                ],
                &[],
            ),
        ),
        (
            "OrgSummary",
            obj(
                &[
                    ("id", s()),
                    ("name", s()),
                    ("enabled", boolean()),
                    ("source", en(&["file", "api"])),
                    ("updatedAt", null(dt())),
                    ("updatedBy", null(s())),
                    (
                        "running",
                        json!({"type": "boolean", "description": "Whether the pipeline processes it now (false for an org created since the start)."}),
                    ),
                ],
                &[],
            ),
        ),
        (
            "OrgList",
            obj(&[("organizations", arr(r("OrgSummary")))], &[]),
        ),
        (
            "OrgDetail",
            obj(
                &[
                    ("id", s()),
                    ("name", s()),
                    ("enabled", boolean()),
                    ("source", en(&["file", "api"])),
                    ("updatedAt", null(dt())),
                    ("updatedBy", null(s())),
                    ("running", boolean()),
                    ("config", r("OrgConfig")),
                ],
                &[],
            ),
        ),
        (
            "OrgChange",
            obj(
                &[
                    ("organization", r("OrgDetail")),
                    (
                        "appliedLive",
                        null(obj(
                            &[
                                ("organizationId", s()),
                                ("effectiveTs", int()),
                                (
                                    "thresholds",
                                    obj(
                                        &[
                                            ("failureThreshold", num()),
                                            ("forS", int()),
                                            ("confidenceThreshold", num()),
                                        ],
                                        &[("immediateThreshold", num())],
                                    ),
                                ),
                            ],
                            &[],
                        )),
                    ),
                    (
                        "restartKeys",
                        json!({"type": "array", "items": {"type": "string"},
                            "description": "Changed keys that take effect at the next start (`*`: the whole new org)."}),
                    ),
                    ("pendingRestart", boolean()),
                ],
                &[],
            ),
        ),
        (
            "PredictionServiceHealth",
            obj(
                &[
                    ("status", health.clone()),
                    ("checkedAt", dt()),
                    ("pipelineRunning", boolean()),
                    (
                        "organizations",
                        arr(obj(
                            &[
                                ("organizationId", s()),
                                ("activeVersion", null(s())),
                                ("mode", en(&["model", "rules"])),
                                ("rowsScored", int()),
                                ("rowsFallback", int()),
                                ("lastScoredAt", null(dt())),
                                ("lastFallbackAt", null(dt())),
                                ("modelError", null(s())),
                            ],
                            &[],
                        )),
                    ),
                    ("fallbackOrganizations", arr(s())),
                ],
                &workers.clone(),
            ),
        ),
        (
            "TrainingServiceHealth",
            obj(
                &[
                    ("status", health.clone()),
                    ("checkedAt", dt()),
                    ("trainerAvailable", boolean()),
                    ("queued", int()),
                    ("running", int()),
                    (
                        "organizations",
                        arr(obj(
                            &[
                                ("organizationId", s()),
                                ("queued", int()),
                                ("running", int()),
                                (
                                    "lastRun",
                                    null(obj(
                                        &[
                                            ("id", s()),
                                            ("status", s()),
                                            ("version", s()),
                                            ("startedAt", dt()),
                                            ("completedAt", null(dt())),
                                            ("error", null(s())),
                                        ],
                                        &[],
                                    )),
                                ),
                                (
                                    "lastJob",
                                    null(obj(
                                        &[
                                            ("id", s()),
                                            ("status", s()),
                                            ("queuedAt", dt()),
                                            ("completedAt", null(dt())),
                                            ("error", null(s())),
                                        ],
                                        &[],
                                    )),
                                ),
                            ],
                            &[],
                        )),
                    ),
                ],
                &[],
            ),
        ),
        (
            "ModelCacheHealth",
            obj(
                &[
                    ("status", health.clone()),
                    ("checkedAt", dt()),
                    ("pipelineRunning", boolean()),
                    (
                        "organizations",
                        arr(obj(
                            &[
                                ("organizationId", s()),
                                ("activeVersion", null(s())),
                                ("activeLoaded", boolean()),
                                ("loaded", arr(s())),
                                ("failed", arr(obj(&[("version", s()), ("error", s())], &[]))),
                            ],
                            &[],
                        )),
                    ),
                ],
                &[
                    workers[0].clone(),
                    workers[1].clone(),
                    workers[2].clone(),
                    (
                        "totals",
                        obj(
                            &[
                                ("hits", int()),
                                ("misses", int()),
                                ("evictions", int()),
                                ("hitRatio", null(num())),
                                ("loadSeconds", num()),
                                ("bytes", int()),
                                ("models", int()),
                            ],
                            &[],
                        ),
                    ),
                ],
            ),
        ),
        (
            "BackgroundMonitorHealth",
            obj(
                &[
                    ("status", health),
                    ("checkedAt", dt()),
                    (
                        "pipeline",
                        obj(
                            &[
                                ("ready", boolean()),
                                ("running", boolean()),
                                ("startedAt", null(dt())),
                                ("updatedAt", null(dt())),
                                ("secondsSinceUpdate", null(num())),
                            ],
                            &[],
                        ),
                    ),
                    (
                        "organizations",
                        arr(obj(
                            &[
                                ("organizationId", s()),
                                ("rows", counts()),
                                ("rowsFeatured", int()),
                                ("eventTime", null(dt())),
                                ("lastProgressAt", null(dt())),
                                ("secondsSinceProgress", null(num())),
                                ("stalled", boolean()),
                            ],
                            &[],
                        )),
                    ),
                ],
                &workers,
            ),
        ),
        (
            "WorkerHeartbeat",
            obj(
                &[
                    ("process", int()),
                    ("processes", int()),
                    ("threads", int()),
                    ("state", en(&["starting", "running", "stopping"])),
                    (
                        "pipeline",
                        json!({"type": "object", "description": "The process's rows per org (by outcome, with the wall times they last grew) and its model cache's counters."}),
                    ),
                ],
                &[(
                    "loads",
                    arr(obj(
                        &[
                            ("seq", int()),
                            ("org", s()),
                            ("version", s()),
                            ("ok", boolean()),
                            ("error", null(s())),
                            ("load_ms", num()),
                            ("bytes", int()),
                            ("at_ms", int()),
                        ],
                        &[],
                    )),
                )],
            ),
        ),
        (
            "HeartbeatAck",
            obj(&[("receivedAt", dt()), ("loadsAudited", int())], &[]),
        ),
        (
            "OpenApiDocument",
            json!({"type": "object", "description": "An OpenAPI 3.0 document."}),
        ),
        (
            "LoginRequest",
            obj(
                &[
                    ("username", json!({"type": "string", "maxLength": 64})),
                    ("password", json!({"type": "string", "maxLength": 1024})),
                ],
                &[],
            ),
        ),
        (
            "Me",
            obj(
                &[
                    ("username", s()),
                    ("role", role),
                    ("organizationId", null(s())),
                ],
                &[],
            ),
        ),
        (
            "LoginResponse",
            obj(
                &[
                    ("token", s()),
                    ("tokenType", en(&["Bearer"])),
                    ("expiresAt", dt()),
                    ("expiresIn", int()),
                    ("user", r("Me")),
                ],
                &[],
            ),
        ),
        (
            "TopFeature",
            obj(
                &[
                    ("name", s()),
                    ("value", null(num())),
                    ("contribution", num()),
                ],
                &[],
            ),
        ),
        (
            "Alert",
            obj(
                &[
                    ("id", s()),
                    ("organizationId", s()),
                    ("machineId", s()),
                    ("type", alert_type.clone()),
                    ("severity", en(&["CRITICAL", "WARNING"])),
                    ("component", s()),
                    ("probability", null(num())),
                    ("confidence", null(num())),
                    ("timeToFailure", null(num())),
                    ("modelVersion", s()),
                    ("rule", null(s())),
                    ("message", s()),
                    ("ts", dt()),
                    ("createdAt", dt()),
                    ("resolvedAt", null(dt())),
                    ("status", status.clone()),
                    ("suppressedCount", int()),
                    ("topFeatures", arr(r("TopFeature"))),
                    ("isAccurate", null(boolean())),
                    ("feedbackAt", null(dt())),
                    ("feedbackBy", null(s())),
                    ("feedbackComment", null(s())),
                    ("acknowledgedBy", null(s())),
                    ("acknowledgedAt", null(dt())),
                    ("resolvedBy", null(s())),
                    ("notificationCount", int()),
                    ("lastTs", dt()),
                    ("seq", int()),
                    ("updatedAt", dt()),
                ],
                &[],
            ),
        ),
        (
            "AlertPage",
            obj(
                &[
                    ("alerts", arr(r("Alert"))),
                    ("total", int()),
                    (
                        "next",
                        json!({"type": "string", "nullable": true,
                            "description": "Pass as `cursor` for the next page; null on the last."}),
                    ),
                ],
                &[],
            ),
        ),
        (
            "AlertStatistics",
            obj(
                &[
                    ("organizationId", s()),
                    ("total", int()),
                    ("byType", counts()),
                    ("byComponent", counts()),
                    ("byStatus", counts()),
                    ("bySeverity", counts()),
                    ("acknowledged", int()),
                    ("acknowledgedShare", null(num())),
                    ("withFeedback", int()),
                    ("accurate", int()),
                    ("feedbackAccuracy", null(num())),
                    ("meanTimeToAcknowledgeMs", null(num())),
                    ("meanTimeToResolveMs", null(num())),
                ],
                &[],
            ),
        ),
        (
            "DailyTrend",
            obj(
                &[
                    ("date", json!({"type": "string", "format": "date"})),
                    ("total", int()),
                    ("critical", int()),
                    ("warning", int()),
                    ("predictive", int()),
                    ("withFeedback", int()),
                    ("accurate", int()),
                    ("accuracy", null(num())),
                ],
                &[],
            ),
        ),
        (
            "AlertTrends",
            obj(
                &[("organizationId", s()), ("days", arr(r("DailyTrend")))],
                &[],
            ),
        ),
        (
            "FeedbackRequest",
            obj(
                &[("isAccurate", boolean())],
                &[(
                    "comment",
                    json!({"type": "string", "maxLength": 2000, "nullable": true}),
                )],
            ),
        ),
        (
            "DeployRequest",
            obj(
                &[("version", json!({"type": "string", "maxLength": 64}))],
                &[],
            ),
        ),
        (
            "NewWorkOrder",
            obj(
                &[
                    (
                        "machineId",
                        json!({"type": "string", "minLength": 1, "maxLength": 256}),
                    ),
                    (
                        "component",
                        json!({"type": "string", "minLength": 1, "maxLength": 256}),
                    ),
                    (
                        "start",
                        json!({"description": "When the failure started: RFC 3339 or epoch ms."}),
                    ),
                ],
                &[
                    (
                        "end",
                        json!({"description": "When it ended (repaired), not before start: RFC 3339 or epoch ms.", "nullable": true}),
                    ),
                    (
                        "note",
                        json!({"type": "string", "maxLength": 2000, "nullable": true}),
                    ),
                ],
            ),
        ),
        (
            "WorkOrder",
            obj(
                &[
                    (
                        "id",
                        json!({"type": "string", "description": "Hash of (organization, machine, component, start): the same failure is stored once."}),
                    ),
                    ("organizationId", s()),
                    ("machineId", s()),
                    ("component", s()),
                    ("start", dt()),
                    ("source", en(&["api", "cli", "import"])),
                    ("createdBy", s()),
                    ("createdAt", dt()),
                ],
                &[("end", dt()), ("note", s())],
            ),
        ),
        (
            "WorkOrderList",
            obj(&[("failures", arr(r("WorkOrder")))], &[]),
        ),
        (
            "TrainRequest",
            obj(
                &[],
                &[
                    (
                        "days",
                        json!({"type": "number", "minimum": 0.25, "maximum": 3650, "nullable": true,
                            "description": "Days of the org's stored history to train on (default training.data_days)."}),
                    ),
                    ("tune", boolean()),
                    (
                        "trials",
                        json!({"type": "integer", "minimum": 1, "maximum": 50, "nullable": true}),
                    ),
                    ("force", boolean()),
                    ("seed", null(int())),
                ],
            ),
        ),
        (
            "TrainJob",
            obj(
                &[
                    ("id", s()),
                    ("organizationId", s()),
                    ("requestedBy", s()),
                    ("trigger", en(&["schedule", "api", "cli", "first_model"])),
                    ("attempt", int()),
                    (
                        "status",
                        en(&[
                            "QUEUED",
                            "RUNNING",
                            "COMPLETED",
                            "REJECTED",
                            "SKIPPED",
                            "FAILED",
                            "INTERRUPTED",
                        ]),
                    ),
                    ("queuedAt", dt()),
                    ("startedAt", null(dt())),
                    ("completedAt", null(dt())),
                    ("version", null(s())),
                    ("deployed", null(boolean())),
                    ("metrics", any()),
                    ("error", null(s())),
                    ("request", r("TrainRequest")),
                ],
                &[],
            ),
        ),
        (
            "Activation",
            obj(
                &[
                    ("organizationId", s()),
                    ("version", null(s())),
                    (
                        "effectiveTs",
                        json!({"type": "integer", "format": "int64",
                            "description": "Event time (ms) from which rows are scored by this version."}),
                    ),
                ],
                &[],
            ),
        ),
        (
            "TrainingRun",
            obj(
                &[
                    ("id", s()),
                    ("organizationId", s()),
                    (
                        "status",
                        en(&[
                            "RUNNING",
                            "COMPLETED",
                            "FAILED",
                            "REJECTED",
                            "SKIPPED",
                            "INTERRUPTED",
                        ]),
                    ),
                    ("version", s()),
                    ("startedAt", int()),
                    ("completedAt", null(int())),
                    ("config", any()),
                    ("metrics", any()),
                    ("errorMessage", null(s())),
                ],
                &[],
            ),
        ),
        (
            "MlStatus",
            obj(
                &[
                    ("organizationId", s()),
                    ("activeVersion", null(s())),
                    ("versionCount", int()),
                    ("activations", arr(r("Activation"))),
                    ("trainingRuns", arr(r("TrainingRun"))),
                    ("jobs", arr(r("TrainJob"))),
                ],
                &[],
            ),
        ),
        (
            "ModelVersion",
            obj(
                &[
                    ("organizationId", s()),
                    ("version", s()),
                    ("createdAt", dt()),
                    ("active", boolean()),
                    ("featureCount", int()),
                    ("metrics", any()),
                    ("split", any()),
                ],
                &[],
            ),
        ),
        (
            "ModelManifest",
            obj(
                &[
                    ("organizationId", s()),
                    ("version", s()),
                    (
                        "files",
                        arr(obj(
                            &[("name", s()), ("bytes", int()), ("sha256", s())],
                            &[],
                        )),
                    ),
                ],
                &[],
            ),
        ),
        (
            "ModelVersions",
            obj(
                &[
                    ("organizationId", s()),
                    ("activeVersion", null(s())),
                    ("versions", arr(r("ModelVersion"))),
                ],
                &[],
            ),
        ),
        (
            "MlMetrics",
            obj(
                &[
                    ("organizationId", s()),
                    ("activeVersion", null(s())),
                    (
                        "thresholds",
                        null(obj(
                            &[
                                ("failureThreshold", num()),
                                ("forS", int()),
                                ("confidenceThreshold", num()),
                            ],
                            &[("immediateThreshold", num())],
                        )),
                    ),
                    ("operatingPoint", any()),
                    ("validation", any()),
                    (
                        "feedback",
                        obj(
                            &[
                                ("alerts", int()),
                                ("withFeedback", int()),
                                ("accurate", int()),
                                ("accuracy", null(num())),
                            ],
                            &[],
                        ),
                    ),
                ],
                &[],
            ),
        ),
        (
            "AuditEntry",
            obj(
                &[
                    ("id", int()),
                    ("at", dt()),
                    ("actor", s()),
                    ("actorRole", s()),
                    ("organizationId", null(s())),
                    ("action", s()),
                    ("outcome", en(&["ok", "accepted", "refused", "error"])),
                    ("detail", any()),
                ],
                &[],
            ),
        ),
        (
            "AuditPage",
            obj(
                &[("entries", arr(r("AuditEntry"))), ("next", null(s()))],
                &[],
            ),
        ),
        (
            "WsEvent",
            obj(
                &[(
                    "type",
                    en(&[
                        "hello",
                        "replay.done",
                        "alert.created",
                        "alert.updated",
                        "alert.resolved",
                        "prediction",
                    ]),
                )],
                &[
                    // Every type but `prediction`, which has no store sequence.
                    ("seq", int()),
                    ("organizationId", null(s())),
                    ("alert", r("Alert")),
                    ("replay", boolean()),
                    // `hello`: whether the client asked for predictions.
                    ("predictions", boolean()),
                    ("prediction", r("Prediction")),
                ],
            ),
        ),
        (
            "Prediction",
            obj(
                &[
                    ("organizationId", s()),
                    ("machineId", s()),
                    ("ts", dt()),
                    // null when no model scored the row (rules only).
                    ("probability", null(num())),
                    ("confidence", null(num())),
                    ("predictedComponent", s()),
                    ("timeToFailure", null(num())),
                    ("modelVersion", s()),
                    ("timestamp", dt()),
                    (
                        "features",
                        json!({"type": "object", "additionalProperties": num_or_null()}),
                    ),
                    (
                        "metadata",
                        obj(
                            &[
                                ("processingTime", num()),
                                ("modelLoadTime", num()),
                                ("featureCount", int()),
                                ("modelHealth", en(&["healthy", "degraded", "failed"])),
                                ("fallbackUsed", boolean()),
                            ],
                            &[(
                                "fallbackReason",
                                en(
                                    &prognos_dataflows::operators::inference::FallbackReason::ALL
                                        .map(|r| r.as_str()),
                                ),
                            )],
                        ),
                    ),
                ],
                &[],
            ),
        ),
    ]
}
