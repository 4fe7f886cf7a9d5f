//! Logs (structured JSON or pretty, via tracing) and metrics (Prometheus).

mod json_lines;

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, Settings};

/// Lines the log writer had to drop because its queue was full.
static DROPPED_LOG_LINES: OnceLock<tracing_appender::non_blocking::ErrorCounter> = OnceLock::new();

/// Installs the global log subscriber. Lines are written to stdout by a background
/// thread, so request handlers never wait on the terminal or a pipe. If whatever
/// reads stdout stalls and the queue (128k lines) fills, lines are dropped and
/// counted in `log_lines_dropped_total` rather than stalling the API: serving
/// readings matters more than logging them. Keep the returned guard alive until
/// exit so the last lines are flushed.
pub fn init_logging(settings: &Settings) -> tracing_appender::non_blocking::WorkerGuard {
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        // Buffered: the writer thread drains every queued line into the buffer and
        // flushes once per batch, so a burst of requests costs a few write calls
        // instead of one per line (the worker flushes whenever the queue runs dry).
        .finish(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stdout(),
        ));
    let filter = EnvFilter::builder()
        .with_default_directive(settings.log_level.into())
        .from_env_lossy()
        .add_directive("hyper=warn".parse().expect("static directive"))
        .add_directive("h2=warn".parse().expect("static directive"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer.clone());
    let _ = DROPPED_LOG_LINES.set(writer.error_counter());
    let _ = match settings.log_format {
        LogFormat::Json => builder
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .event_format(json_lines::JsonLines)
            .try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
    guard
}

/// Latency buckets in seconds, from sub-millisecond to the request timeout range.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Ingest time minus reading time: Dexcom's own delay is minutes to hours.
const DATA_LAG_BUCKETS: &[f64] = &[
    5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 10800.0, 21600.0, 86400.0,
];
/// A sync run: a poll takes well under a second, a 90-day backfill minutes.
const SYNC_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
];

/// The process-wide Prometheus recorder (metrics macros record into one global).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), LATENCY_BUCKETS)
                .and_then(|b| {
                    // Full names take precedence over the suffix rule.
                    b.set_buckets_for_metric(
                        Matcher::Full("reading_data_lag_seconds".to_owned()),
                        DATA_LAG_BUCKETS,
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("sync_duration_seconds".to_owned()),
                        SYNC_BUCKETS,
                    )
                })
                .expect("buckets are non-empty")
                .install_recorder()
                .expect("no other metrics recorder is installed");
            describe_metrics();
            initialize_series();
            handle
        })
        .clone()
}

/// Prometheus text for every metric, with the dropped-log-line count brought up to date.
pub fn render_metrics(handle: &PrometheusHandle) -> String {
    if let Some(dropped) = DROPPED_LOG_LINES.get() {
        metrics::counter!("log_lines_dropped_total").absolute(dropped.dropped_lines() as u64);
    }
    handle.render()
}

fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        "http_requests_total",
        "HTTP requests by method, route and status"
    );
    describe_histogram!(
        "http_request_duration_seconds",
        Unit::Seconds,
        "HTTP request latency by method and route"
    );
    describe_counter!(
        "readings_ingested_total",
        "Readings accepted by the pipeline, by source and outcome (inserted, updated, duplicate)"
    );
    describe_counter!(
        "readings_rejected_total",
        "Readings rejected by validation, by the offending field"
    );
    describe_counter!("events_published_total", "Domain events published, by type");
    describe_counter!(
        "alerts_raised_total",
        "Alerts raised by the evaluation after stored readings, by type"
    );
    describe_counter!(
        "alert_evaluations_failed_total",
        "Alert evaluations that failed (storage); the user's next reading evaluates again"
    );
    describe_counter!(
        "notification_deliveries_total",
        "Delivery attempts to notification endpoints, by outcome (delivered, failed: retried \
         later, gave_up: after NOTIFICATION_GIVE_UP_HOURS, dropped: endpoint deleted)"
    );
    describe_counter!(
        "events_received_total",
        "Events this instance received from the broker into its hub, by bus"
    );
    describe_counter!(
        "events_handled_total",
        "Events handed to an in-process subscriber, by subscriber"
    );
    describe_counter!(
        "event_subscriber_missed_total",
        "Events dropped for a subscriber that fell too far behind, by subscriber"
    );
    describe_gauge!(
        "event_consumer_connected",
        "1 while this instance's subscribers are fed: its queue on the broker (rabbitmq), always (memory), by bus"
    );
    describe_histogram!(
        "reading_data_lag_seconds",
        Unit::Seconds,
        "Ingest time minus reading time of new readings less than a day old, by source"
    );
    describe_histogram!(
        "sync_duration_seconds",
        Unit::Seconds,
        "One run of a sync job, by trigger and outcome (succeeded, failed, retry)"
    );
    describe_counter!(
        "sync_runs_total",
        "Sync job runs, by trigger and outcome (succeeded, failed, retry)"
    );
    describe_counter!("sync_jobs_queued_total", "Sync jobs queued, by trigger");
    describe_counter!(
        "sync_jobs_coalesced_total",
        "Sync requests answered with the same request's job still queued, by trigger"
    );
    describe_counter!(
        "sync_jobs_refused_total",
        "Sync requests refused because the user's queue was full, by trigger"
    );
    describe_counter!(
        "dexcom_user_budget_exhausted_total",
        "Dexcom calls refused because the user's share of the call budget was spent"
    );
    describe_counter!(
        "write_quota_refused_total",
        "Reading writes refused by the per-user hourly write quota"
    );
    describe_counter!(
        "sync_polls_coalesced_total",
        "Scheduled polls not queued because the user had a job queued, running or just run"
    );
    describe_gauge!(
        "sync_backlog_jobs",
        "Sync jobs queued and due, not yet running"
    );
    describe_gauge!(
        "sync_backlog_oldest_seconds",
        Unit::Seconds,
        "How long the longest-waiting claimable sync job (due, its user not being synced) has waited (0: none)"
    );
    describe_gauge!(
        "sync_scheduled_users",
        "Connected users in this instance's poll plan"
    );
    describe_counter!(
        "task_runs_total",
        "Background task runs ended, by kind (sync among them) and outcome (succeeded, failed, retry)"
    );
    describe_gauge!(
        "task_backlog",
        "Background tasks queued and due, not yet running, by kind"
    );
    describe_gauge!(
        "task_backlog_oldest_seconds",
        Unit::Seconds,
        "How long the longest-waiting due task of a kind has waited (0: none), by kind"
    );
    describe_counter!(
        "webhook_deliveries_received_total",
        "Webhook deliveries received, by outcome (accepted, duplicate, bad_signature, invalid) and type"
    );
    describe_counter!(
        "webhook_deliveries_processed_total",
        "Webhook deliveries processed, by outcome (done, ignored, retry, failed)"
    );
    describe_histogram!(
        "webhook_receipt_to_processed_seconds",
        Unit::Seconds,
        "From a delivery's receipt to its readings stored (egvs) or its fetch queued (egvs.available)"
    );
    describe_gauge!(
        "webhook_inbox_backlog",
        "Webhook deliveries stored and not yet processed"
    );
    describe_counter!(
        "meal_responses_total",
        "Meal glucose responses answered, by source (stored: a stored response still valid; computed)"
    );
    describe_counter!(
        "meal_response_store_failures_total",
        "Writes of computed meal responses that failed (the request was answered; the next one computes again)"
    );
    describe_gauge!("build_info", "Always 1; labels carry the version");
    describe_counter!(
        "log_lines_dropped_total",
        "Log lines dropped because stdout could not keep up"
    );
    describe_counter!(
        "health_storage_checks_total",
        "Storage checks run for /health (at most one a second, however many requests)"
    );
    metrics::gauge!("build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
}

/// Series that alert rules watch start at 0 rather than appearing at their first
/// event: `increase()` over a counter born at 1 misses that first failure, and a
/// rule over a series that does not exist yet is silently never true.
fn initialize_series() {
    use crate::records::jobs::Trigger;
    for trigger in Trigger::ALL {
        for outcome in ["succeeded", "failed", "retry"] {
            metrics::counter!("sync_runs_total", "trigger" => trigger.as_str(), "outcome" => outcome)
                .absolute(0);
        }
        metrics::counter!("sync_jobs_queued_total", "trigger" => trigger.as_str()).absolute(0);
    }
    for outcome in ["ok", "invalid_grant", "error"] {
        metrics::counter!("dexcom_token_requests_total", "grant" => "refresh_token", "outcome" => outcome)
            .absolute(0);
    }
    for endpoint in [
        "egvs",
        "data_range",
        "devices",
        "token_code",
        "token_refresh",
    ] {
        metrics::counter!("dexcom_retries_total", "endpoint" => endpoint).absolute(0);
    }
    for outcome in ["done", "ignored", "retry", "failed"] {
        metrics::counter!("webhook_deliveries_processed_total", "outcome" => outcome).absolute(0);
    }
    for name in [
        "dexcom_reauth_required_total",
        "dexcom_budget_exhausted_total",
        "event_publish_failures_total",
        "audit_entries_written_total",
        "log_lines_dropped_total",
        "sync_polls_coalesced_total",
        "meal_response_store_failures_total",
    ] {
        metrics::counter!(name).absolute(0);
    }
    for name in [
        "sync_backlog_jobs",
        "sync_backlog_oldest_seconds",
        "webhook_inbox_backlog",
        "outbox_backlog",
    ] {
        metrics::gauge!(name).set(0.0);
    }
}
