//! The sampled prediction log: inputs, outputs, model version and latency of a share of the
//! requests, written to the artifact store as JSON Lines files in batches, off the hot path.
//! It is what monitoring and drift checks read. A full buffer drops records (and counts them)
//! rather than slowing serving down.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mlops_core::storage::ArtifactStore;
use mlops_core::{CancellationToken, now_ms};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// Records waiting for a flush, at most.
const BUFFER: usize = 10_000;

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PredictionLogSettings {
    /// Share of requests logged, 0 (off) to 1 (all).
    pub sample: f64,
    /// Records per file.
    pub batch: usize,
    /// A partial batch is written after this long.
    pub flush_seconds: f64,
}

impl Default for PredictionLogSettings {
    fn default() -> Self {
        Self {
            sample: 0.0,
            batch: 1000,
            flush_seconds: 10.0,
        }
    }
}

/// One logged request.
pub struct Record {
    pub model: String,
    pub version: u32,
    pub id: String,
    pub latency: Duration,
    pub inputs: Value,
    pub outputs: Value,
}

#[derive(Clone)]
pub struct PredictionLog {
    sender: Option<mpsc::Sender<(Record, i64)>>,
    sample: f64,
    seen: Arc<AtomicU64>,
}

impl PredictionLog {
    /// Starts the writer (when sampling is on); it flushes what it holds when `shutdown` fires.
    pub fn start(
        settings: &PredictionLogSettings,
        artifacts: ArtifactStore,
        shutdown: CancellationToken,
    ) -> (Self, Option<tokio::task::JoinHandle<()>>) {
        let sample = if settings.sample.is_finite() {
            settings.sample.clamp(0.0, 1.0)
        } else {
            0.0
        };
        if sample == 0.0 {
            let off = Self {
                sender: None,
                sample,
                seen: Arc::default(),
            };
            return (off, None);
        }
        let (sender, receiver) = mpsc::channel(BUFFER);
        let writer = tokio::spawn(write(
            receiver,
            artifacts,
            settings.batch.max(1),
            Duration::from_secs_f64(settings.flush_seconds.clamp(0.01, 86_400.0)),
            shutdown,
        ));
        let log = Self {
            sender: Some(sender),
            sample,
            seen: Arc::default(),
        };
        (log, Some(writer))
    }

    /// Whether the next request is logged: exactly `sample` of them, evenly spread, no RNG.
    pub fn sampled(&self) -> bool {
        if self.sender.is_none() {
            return false;
        }
        let n = self.seen.fetch_add(1, Ordering::Relaxed) as f64;
        ((n + 1.0) * self.sample).floor() > (n * self.sample).floor()
    }

    pub fn record(&self, record: Record) {
        if let Some(sender) = &self.sender
            && sender.try_send((record, now_ms())).is_err()
        {
            metrics::counter!("mlops_prediction_log_dropped_total").increment(1);
        }
    }
}

async fn write(
    mut receiver: mpsc::Receiver<(Record, i64)>,
    artifacts: ArtifactStore,
    batch: usize,
    flush_every: Duration,
    shutdown: CancellationToken,
) {
    let mut pending: Vec<(Record, i64)> = Vec::new();
    let mut ticker = tokio::time::interval(flush_every);
    loop {
        let done = tokio::select! {
            received = receiver.recv() => match received {
                Some(item) => {
                    pending.push(item);
                    false
                }
                None => true,
            },
            _ = ticker.tick() => {
                flush(&artifacts, &mut pending).await;
                false
            }
            _ = shutdown.cancelled() => true,
        };
        if done {
            while let Ok(item) = receiver.try_recv() {
                pending.push(item);
            }
            flush(&artifacts, &mut pending).await;
            return;
        }
        if pending.len() >= batch {
            flush(&artifacts, &mut pending).await;
        }
    }
}

/// Writes one file per model in `pending`: `prediction-logs/<model>/<day>/<time>-<id>.jsonl`.
async fn flush(artifacts: &ArtifactStore, pending: &mut Vec<(Record, i64)>) {
    if pending.is_empty() {
        return;
    }
    let mut by_model: std::collections::BTreeMap<String, String> = Default::default();
    for (record, time_ms) in pending.drain(..) {
        let line = json!({
            "time_ms": time_ms,
            "model": record.model,
            "version": record.version,
            "id": record.id,
            "latency_ms": record.latency.as_secs_f64() * 1000.0,
            "inputs": record.inputs,
            "outputs": record.outputs,
        });
        let text = by_model.entry(record.model).or_default();
        text.push_str(&line.to_string());
        text.push('\n');
    }
    let now = now_ms();
    let day = day_of(now);
    for (model, text) in by_model {
        let key = format!(
            "prediction-logs/{model}/{day}/{now}-{}.jsonl",
            mlops_core::ids::new_id()
        );
        if let Err(error) = artifacts.put_named(&key, text.into_bytes().into()).await {
            metrics::counter!("mlops_prediction_log_dropped_total").increment(1);
            tracing::warn!(%error, %key, "prediction log batch not written");
        }
    }
}

/// `YYYY-MM-DD` (UTC) of a time in milliseconds since the epoch.
fn day_of(ms: i64) -> String {
    // Civil-from-days (Howard Hinnant's algorithm): no calendar dependency needed.
    let days = ms.div_euclid(86_400_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_sampling() {
        assert_eq!(day_of(0), "1970-01-01");
        assert_eq!(day_of(1_795_737_600_000), "2026-11-27");
        assert_eq!(day_of(951_782_400_000), "2000-02-29");
        let log = PredictionLog {
            sender: Some(mpsc::channel(1).0),
            sample: 0.25,
            seen: Arc::default(),
        };
        let taken = (0..1000).filter(|_| log.sampled()).count();
        assert_eq!(taken, 250);
    }
}
