//! Dynamic batching: requests for one model version that arrive within a short window run as
//! one batch, and each caller gets back exactly its own rows. Every request is decoded and
//! checked on its own before it joins a batch, so a malformed one never reaches the others.

use std::sync::Arc;
use std::time::Duration;

use mlops_core::ApiError;
use ndarray::{Array2, Axis};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::models::{Output, Runner, predict};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BatchingSettings {
    /// How long the first request of a batch waits for others, in microseconds; 0 turns
    /// batching off (each request runs on its own).
    pub max_delay_us: u64,
    /// A batch closes once it holds this many rows.
    pub max_rows: usize,
    /// Requests waiting for a batch, per model version; more wait to enqueue.
    pub max_queue: usize,
}

impl Default for BatchingSettings {
    fn default() -> Self {
        Self {
            max_delay_us: 0,
            max_rows: 1024,
            max_queue: 1024,
        }
    }
}

pub struct Job {
    input: Array2<f64>,
    reply: oneshot::Sender<Result<Vec<Output>, ApiError>>,
}

/// Starts the batcher of one model version; it stops when the sender is dropped (the version
/// is unloaded and its last request is done).
pub fn start(runner: Arc<Runner>, settings: &BatchingSettings) -> mpsc::Sender<Job> {
    let (sender, receiver) = mpsc::channel(settings.max_queue.max(1));
    tokio::spawn(run(runner, receiver, settings.clone()));
    sender
}

/// Runs `input` in the next batch and returns this caller's outputs.
pub async fn submit(
    sender: &mpsc::Sender<Job>,
    input: Array2<f64>,
) -> Result<Vec<Output>, ApiError> {
    let (reply, answer) = oneshot::channel();
    sender
        .send(Job { input, reply })
        .await
        .map_err(|_| ApiError::unavailable("the model's batcher has stopped"))?;
    answer
        .await
        .map_err(|_| ApiError::internal("the batcher dropped a request"))?
}

async fn run(runner: Arc<Runner>, mut receiver: mpsc::Receiver<Job>, settings: BatchingSettings) {
    let delay = Duration::from_micros(settings.max_delay_us);
    while let Some(first) = receiver.recv().await {
        let mut rows = first.input.nrows();
        let mut jobs = vec![first];
        let deadline = tokio::time::Instant::now() + delay;
        while rows < settings.max_rows {
            match tokio::time::timeout_at(deadline, receiver.recv()).await {
                Ok(Some(job)) => {
                    rows += job.input.nrows();
                    jobs.push(job);
                }
                _ => break,
            }
        }
        metrics::histogram!("mlops_inference_batch_requests").record(jobs.len() as f64);
        let views: Vec<_> = jobs.iter().map(|job| job.input.view()).collect();
        let outcome = ndarray::concatenate(Axis(0), &views)
            .map_err(|e| ApiError::internal(format!("batching: {e}")))
            .and_then(|all| predict(&runner, &all));
        match outcome {
            Ok(outputs) => {
                let counts: Vec<usize> = jobs.iter().map(|job| job.input.nrows()).collect();
                match split(outputs, &counts) {
                    Ok(parts) => {
                        for (job, part) in jobs.into_iter().zip(parts) {
                            let _ = job.reply.send(Ok(part));
                        }
                    }
                    Err(error) => reply_all(&runner, jobs, error),
                }
            }
            Err(error) => reply_all(&runner, jobs, error),
        }
    }
}

/// A batch that failed as a whole (a model that cannot take several requests' rows at once)
/// is run again request by request, so each caller gets its own answer.
fn reply_all(runner: &Runner, jobs: Vec<Job>, error: ApiError) {
    if jobs.len() == 1 {
        for job in jobs {
            let _ = job.reply.send(Err(error.clone()));
        }
        return;
    }
    for job in jobs {
        let _ = job.reply.send(predict(runner, &job.input));
    }
}

/// Cuts each output along its first (row) dimension into the callers' shares.
fn split(outputs: Vec<Output>, counts: &[usize]) -> Result<Vec<Vec<Output>>, ApiError> {
    let total: usize = counts.iter().sum();
    let mut parts: Vec<Vec<Output>> = vec![Vec::with_capacity(outputs.len()); counts.len()];
    for (tensor, raw) in outputs {
        let rows = tensor.shape.first().copied().unwrap_or(-1);
        let fixed_width = tensor.datatype != "BYTES";
        if rows != total as i64 || (fixed_width && total > 0 && raw.len() % total != 0) {
            return Err(ApiError::internal(format!(
                "batching: output {:?} has shape {:?} for {total} rows",
                tensor.name, tensor.shape
            )));
        }
        // Byte offset where each row starts: fixed-width rows, or BYTES elements of any length.
        let row_starts: Vec<usize> = if tensor.datatype == "BYTES" {
            let elements = crate::tensor::bytes_elements(&raw).filter(|e| e.len() == total);
            let Some(elements) = elements else {
                return Err(ApiError::internal(format!(
                    "batching: output {:?} is not {total} BYTES elements",
                    tensor.name
                )));
            };
            let mut starts = Vec::with_capacity(total + 1);
            let mut at = 0;
            for e in elements {
                starts.push(at);
                at += 4 + e.len();
            }
            starts.push(at);
            starts
        } else {
            let row_bytes = raw.len().checked_div(total).unwrap_or(0);
            (0..=total).map(|r| r * row_bytes).collect()
        };
        let mut offset = 0;
        for (part, count) in parts.iter_mut().zip(counts) {
            let mut shape = tensor.shape.clone();
            shape[0] = *count as i64;
            let piece = raw[row_starts[offset]..row_starts[offset + count]].to_vec();
            part.push((
                mlops_proto::inference::model_infer_response::InferOutputTensor {
                    shape,
                    ..tensor.clone()
                },
                piece,
            ));
            offset += count;
        }
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlops_proto::inference::model_infer_response::InferOutputTensor;

    #[test]
    fn splits_rows_back_to_their_callers() {
        let tensor = InferOutputTensor {
            name: "p".into(),
            shape: vec![3, 2],
            ..Default::default()
        };
        let raw: Vec<u8> = (0u8..6).collect();
        let parts = split(vec![(tensor, raw)], &[1, 0, 2]).unwrap();
        assert_eq!(parts[0][0].1, [0, 1]);
        assert_eq!(parts[0][0].0.shape, [1, 2]);
        assert!(parts[1][0].1.is_empty());
        assert_eq!(parts[2][0].1, [2, 3, 4, 5]);
        let bad = InferOutputTensor {
            name: "q".into(),
            shape: vec![2],
            ..Default::default()
        };
        assert!(split(vec![(bad, vec![0; 2])], &[3]).is_err());
    }
}
