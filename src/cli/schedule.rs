//! `swarmwise schedule`: the scheduled jobs and their next run times (UTC).

use crate::config::Settings;

/// Prints one line per job: name, schedule, next run, what it does.
pub(super) fn print(settings: &Settings) {
    for job in settings.scheduler.jobs(
        chrono::Utc::now(),
        settings.learning.cycle_every_outcomes,
        &settings.retention,
    ) {
        let next = job.next_run.map_or_else(
            || "-".to_owned(),
            |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        );
        println!(
            "{:<28} {:<24} next: {:<24} {}",
            job.name, job.schedule, next, job.description
        );
    }
    if !settings.scheduler.enabled {
        println!("(scheduler.enabled = false: the cron jobs do not run)");
    }
}
