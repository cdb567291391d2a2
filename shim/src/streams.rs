//! A process's standard streams between containerd's FIFOs and the agent: stdout and
//! stderr read from the agent (ReadStdout, ReadStderr) into the FIFOs, the stdin FIFO
//! written to the agent (WriteStdin, then CloseStdin).

use contrast_agent_protocol::proto::agent::{
    CloseStdinRequest, ReadStreamRequest, WriteStreamRequest,
};
use contrast_agent_protocol::proto::agent_ttrpc::AgentServiceClient;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::task::ctx;

/// Copies a process's stdout or stderr from the agent into containerd's FIFO until the
/// stream ends.
pub(crate) async fn copy_out(
    agent: AgentServiceClient,
    container_id: String,
    exec_id: String,
    fifo: String,
    stdout: bool,
) {
    // Read-write, as runc's shim opens it: no wait for containerd's reader, and no broken
    // pipe when containerd restarts (its reader comes back to the same FIFO).
    let mut sender = match tokio::net::unix::pipe::OpenOptions::new()
        .read_write(true)
        .open_sender(&fifo)
    {
        Ok(sender) => Some(sender),
        Err(e) => {
            tracing::warn!(fifo, error = %e, "containerd's FIFO cannot be opened; the output is dropped");
            None
        }
    };
    // Read to the end even when the output cannot be written: a stream nobody reads
    // would stop the process in the guest once its pipe is full.
    loop {
        let mut read = ReadStreamRequest::new();
        read.container_id = container_id.clone();
        read.exec_id = exec_id.clone();
        read.len = 32 * 1024;
        let chunk = if stdout {
            agent
                .read_stdout(ttrpc::context::with_timeout(0), &read)
                .await
        } else {
            agent
                .read_stderr(ttrpc::context::with_timeout(0), &read)
                .await
        };
        match chunk {
            Ok(chunk) if !chunk.data.is_empty() => {
                if let Some(out) = sender.as_mut()
                    && out.write_all(&chunk.data).await.is_err()
                {
                    tracing::warn!(
                        fifo,
                        "writing containerd's FIFO failed; the rest of the output is dropped"
                    );
                    sender = None;
                }
            }
            // The end of the stream (the Kata agent answers EOF with an error).
            _ => return,
        }
    }
}

/// Copies containerd's stdin FIFO into the process; at its end, closes the process's stdin.
pub(crate) async fn copy_in(
    agent: AgentServiceClient,
    container_id: String,
    exec_id: String,
    fifo: String,
) {
    // Non-blocking open: a blocking one waits for a writer that may never come.
    let Ok(mut receiver) = tokio::net::unix::pipe::OpenOptions::new().open_receiver(&fifo) else {
        tracing::warn!(fifo, "containerd's stdin FIFO could not be opened");
        return;
    };
    let mut buffer = vec![0u8; 32 * 1024];
    loop {
        match receiver.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let mut write = WriteStreamRequest::new();
                write.container_id = container_id.clone();
                write.exec_id = exec_id.clone();
                write.data = buffer[..n].to_vec();
                if agent.write_stdin(ctx(30), &write).await.is_err() {
                    return;
                }
            }
        }
    }
    let mut close = CloseStdinRequest::new();
    close.container_id = container_id;
    close.exec_id = exec_id;
    let _ = agent.close_stdin(ctx(30), &close).await;
}
