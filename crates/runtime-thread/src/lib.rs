//! An async runtime on a thread of its own, so synchronous code (a history store's trait,
//! a verifier inside a TLS handshake) can wait for async I/O from any thread, inside a
//! runtime or not, without starting a runtime per call.

#![forbid(unsafe_code)]

use std::future::Future;

use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::oneshot;

/// The thread has stopped (only after a panic in it): nothing runs on it any more.
#[derive(Debug, thiserror::Error)]
#[error("the runtime thread has stopped")]
pub struct Stopped;

/// A current-thread runtime driven by a thread of its own; dropping it stops the thread.
#[derive(Debug)]
pub struct RuntimeThread {
    handle: Handle,
    _stop: oneshot::Sender<()>,
}

impl RuntimeThread {
    /// Starts the runtime on a thread named `name`.
    pub fn start(name: &str) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                // Tasks run while block_on waits; the sender's drop ends the wait.
                let _ = runtime.block_on(stopped);
                runtime.shutdown_background();
            })?;
        Ok(RuntimeThread {
            handle,
            _stop: stop,
        })
    }

    /// The runtime, to spawn tasks that outlive a call.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Runs `task` on the thread and waits for it, blocking the calling thread (inside a
    /// multi-thread runtime it says so first, so that runtime's other tasks move on).
    pub fn block_on<T: Send + 'static>(
        &self,
        task: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, Stopped> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            // The caller gave up waiting only if its thread died.
            let _ = tx.send(task.await);
        });
        let wait = move || rx.recv().map_err(|_| Stopped);
        match Handle::try_current() {
            Ok(current) if current.runtime_flavor() == RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(wait)
            }
            _ => wait(),
        }
    }

    /// Runs `task` on the thread and awaits it from any runtime.
    pub async fn run<T: Send + 'static>(
        &self,
        task: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, Stopped> {
        self.handle.spawn(task).await.map_err(|_| Stopped)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_task_runs_from_a_plain_thread_and_from_both_kinds_of_runtime() {
        let thread = std::sync::Arc::new(RuntimeThread::start("test-runtime").unwrap());
        assert_eq!(thread.block_on(async { 1 }).unwrap(), 1);

        let multi = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        let t = thread.clone();
        let got = multi
            .block_on(multi.spawn(async move { t.block_on(async { 2 }).unwrap() }))
            .unwrap();
        assert_eq!(got, 2);

        let single = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert_eq!(
            single
                .block_on(async { thread.block_on(async { 3 }) })
                .unwrap(),
            3
        );
        assert_eq!(single.block_on(thread.run(async { 4 })).unwrap(), 4);
    }

    #[test]
    fn a_task_that_panics_is_an_error_not_a_hang() {
        let thread = RuntimeThread::start("test-runtime").unwrap();
        let result = thread.block_on(async { panic!("in the task") });
        assert!(matches!(result, Err::<(), _>(Stopped)));
    }
}
