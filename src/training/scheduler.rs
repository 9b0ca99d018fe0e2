//! The training scheduler: each enabled org's `training.schedule` (cron, in UTC
//! or its `training.timezone`) queues a run on the org's history in the job
//! queue, which bounds how many run at once and retries failed scheduled runs
//! with backoff. It runs in `prognos run` and `prognos controller`.

use crate::training::jobs::{Jobs, TrainRequest};
use crate::training::pipeline::Trigger;
use chrono::{DateTime, Utc};
use prognos_dataflows::config::Config;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// When each org's schedule fires next after `now` (orgs that never fire are left out).
pub fn next_fires(config: &Config, now: DateTime<Utc>) -> BTreeMap<String, DateTime<Utc>> {
    config
        .orgs
        .iter()
        .filter(|(_, o)| o.enabled && o.prediction.enabled && o.training.enabled)
        .filter_map(|(id, o)| {
            let tz = prognos_dataflows::config::cron::parse_timezone(&o.training.timezone)?;
            Some((id.clone(), o.training.schedule.next_after_in(now, tz)?))
        })
        .collect()
}

/// Start the scheduler thread; it ends when `stop` is set.
pub fn start(config: Config, jobs: Arc<Jobs>, stop: Arc<AtomicBool>) -> std::io::Result<()> {
    let mut next = next_fires(&config, Utc::now());
    for (org, at) in &next {
        tracing::info!(org = %org, next = %at.to_rfc3339(), schedule = %config.orgs[org].training.schedule,
            "training scheduled");
    }
    std::thread::Builder::new()
        .name("training-scheduler".into())
        .spawn(move || {
            while !stop.load(Ordering::Acquire) {
                let now = Utc::now();
                let due: Vec<String> = next
                    .iter()
                    .filter(|(_, at)| **at <= now)
                    .map(|(o, _)| o.clone())
                    .collect();
                for org in due {
                    match jobs.submit_as(
                        &org,
                        "system",
                        TrainRequest::default(),
                        Trigger::Schedule,
                        1,
                    ) {
                        Ok(j) => {
                            tracing::info!(org = %org, job = %j.id, "scheduled training queued")
                        }
                        Err(e) => tracing::warn!(org = %org, reason = %e,
                            "scheduled training not queued"),
                    }
                    let o = &config.orgs[&org];
                    match prognos_dataflows::config::cron::parse_timezone(&o.training.timezone)
                        .and_then(|tz| o.training.schedule.next_after_in(now, tz))
                    {
                        Some(at) => {
                            next.insert(org, at);
                        }
                        None => {
                            next.remove(&org);
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_enabled_org_gets_its_next_fire_in_its_time_zone() {
        let mut config = crate::settings::load_with_env(None, Vec::new())
            .unwrap()
            .config;
        let now = DateTime::parse_from_rfc3339("2026-01-10T00:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let ids: Vec<String> = config.orgs.keys().cloned().collect();
        {
            let a = config.orgs.get_mut(&ids[0]).unwrap();
            a.training.schedule = "0 2 * * *".parse().unwrap();
            a.training.timezone = "Europe/Berlin".into();
        }
        config.orgs.get_mut(&ids[1]).unwrap().training.enabled = false;
        {
            let c = config.orgs.get_mut(&ids[2]).unwrap();
            c.training.schedule = "*/20 * * * * *".parse().unwrap();
        }
        let next = next_fires(&config, now);
        assert_eq!(next.len(), 2, "a disabled org is not scheduled");
        assert_eq!(next[&ids[0]].to_rfc3339(), "2026-01-10T01:00:00+00:00");
        assert_eq!(next[&ids[2]].to_rfc3339(), "2026-01-10T00:30:20+00:00");
    }
}
