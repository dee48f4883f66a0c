//! Server-streaming `Watch...` calls: every change of a long-running job, until it ends.

use std::pin::Pin;

use futures::Stream;
use tokio::sync::watch;
use tonic::Status;

pub type WatchStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Yields the current value, then each change, and ends after the first value for which
/// `is_terminal` holds (or when the job's sender is gone).
pub fn until_terminal<T>(
    receiver: watch::Receiver<T>,
    is_terminal: fn(&T) -> bool,
) -> WatchStream<T>
where
    T: Clone + Send + Sync + 'static,
{
    Box::pin(futures::stream::unfold(
        (receiver, true, false),
        move |(mut receiver, first, done)| async move {
            if done || (!first && receiver.changed().await.is_err()) {
                return None;
            }
            let value = receiver.borrow_and_update().clone();
            let done = is_terminal(&value);
            Some((Ok(value), (receiver, false, done)))
        },
    ))
}

/// A one-item stream: the final state of something that finished before this process started.
pub fn once<T: Send + 'static>(value: T) -> WatchStream<T> {
    Box::pin(futures::stream::once(async move { Ok(value) }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test]
    async fn streams_changes_and_stops_at_the_terminal_value() {
        let (sender, receiver) = watch::channel(0u32);
        let stream = until_terminal(receiver, |v| *v >= 3);
        let producer = tokio::spawn(async move {
            for v in 1..=5 {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                sender.send_replace(v);
            }
        });
        let seen: Vec<u32> = stream.map(|r| r.unwrap()).collect().await;
        producer.await.unwrap();
        assert_eq!(seen.first(), Some(&0));
        assert_eq!(seen.last(), Some(&3));
        assert!(seen.windows(2).all(|w| w[0] < w[1]));
    }
}
