//! Running containers with crun, the OCI runtime in the image.
//!
//! Why crun: it implements the whole OCI runtime spec the requests use (namespaces,
//! cgroup v2, capabilities, seccomp, rlimits, masked and read-only paths, mounts), it is
//! small (≈0.5 MB with its libraries from Debian) and maintained in Debian, and as a
//! separate process it keeps namespace and mount set-up out of the agent, which is
//! multi-threaded (youki's libcontainer would fork the agent itself). The agent runs each
//! process in the foreground (`crun run`, `crun exec`): crun stays its parent, passes its
//! stdio on and exits with the process's status, so the agent waits on crun alone and
//! needs no reaper for processes it did not start.

pub mod cgroup;
pub mod spec;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::process::{ChildStderr, ChildStdin, ChildStdout, Command};
use tokio::sync::{Mutex, watch};

/// The longest read a ReadStdout/ReadStderr answers (the runtime asks for 32 KiB).
const MAX_READ: usize = 1 << 20;

/// crun, with its state under the agent's run directory.
#[derive(Debug, Clone)]
pub struct Crun {
    /// The crun binary.
    pub binary: PathBuf,
    /// Its state directory (`--root`).
    pub state: PathBuf,
}

/// Why crun could not be driven.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// crun could not be started.
    #[error("starting {binary}")]
    Spawn {
        /// The binary.
        binary: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// crun refused (its own message).
    #[error("crun {command} {id}: {stderr}")]
    Refused {
        /// The crun subcommand.
        command: &'static str,
        /// The container.
        id: String,
        /// What crun said.
        stderr: String,
    },
    /// The process's terminal could not be set up.
    #[error("container {id}: the terminal: {detail}")]
    Terminal {
        /// The container.
        id: String,
        /// What failed.
        detail: String,
    },
    /// The container's process did not come up.
    #[error("container {id}: crun gave no process ID within 30 s ({detail})")]
    NoPid {
        /// The container.
        id: String,
        /// What is known.
        detail: String,
    },
}

impl Crun {
    fn command(&self) -> Command {
        let mut command = Command::new(&self.binary);
        command.arg("--root").arg(&self.state);
        command.kill_on_drop(false);
        command
    }

    /// Runs the container of `bundle` in the foreground; its init process is the
    /// returned [`Process`]. Waits until crun has written the process's PID.
    pub async fn run(
        &self,
        id: &str,
        bundle: &Path,
        io: ProcessIo,
    ) -> Result<Process, RuntimeError> {
        let mut command = self.command();
        command.arg("run").arg("--bundle").arg(bundle);
        self.foreground(command, "run", &bundle.join("init.pid"), id, io)
            .await
    }

    /// Runs `process.json` (an OCI `process`) in container `id` in the foreground.
    pub async fn exec(
        &self,
        id: &str,
        process_json: &Path,
        io: ProcessIo,
    ) -> Result<Process, RuntimeError> {
        let mut command = self.command();
        command.arg("exec").arg("--process").arg(process_json);
        self.foreground(command, "exec", &process_json.with_extension("pid"), id, io)
            .await
    }

    /// Starts `command` (crun's `run` or `exec`, without the container ID) with
    /// `--pid-file pid_file` for container `id`, and waits until crun has written the PID.
    /// A terminal comes from crun's `--console-socket`, a socket beside the PID file.
    async fn foreground(
        &self,
        mut command: Command,
        name: &'static str,
        pid_file: &Path,
        id: &str,
        io: ProcessIo,
    ) -> Result<Process, RuntimeError> {
        let _ = std::fs::remove_file(pid_file);
        let console = if io == ProcessIo::Terminal {
            let path = pid_file.with_extension("console");
            let _ = std::fs::remove_file(&path);
            let listener =
                tokio::net::UnixListener::bind(&path).map_err(|e| RuntimeError::Terminal {
                    id: id.to_owned(),
                    detail: format!("binding {}: {e}", path.display()),
                })?;
            command.arg("--console-socket").arg(&path);
            Some((listener, path))
        } else {
            None
        };
        command.arg("--pid-file").arg(pid_file).arg(id);
        let mut process = Process::spawn(&mut command, &self.binary, io == ProcessIo::Pipes)?;
        if let Some((listener, path)) = console {
            let master = process.receive_terminal(&listener, name, id).await;
            let _ = std::fs::remove_file(&path);
            process.terminal = Some(Arc::new(Terminal::new(master?, id)?));
        }
        let pid = process.wait_for_pid(pid_file, name, id).await?;
        Ok(Process {
            pid: Some(pid),
            ..process
        })
    }

    /// Sends `signal` to an exec'd process (by its PID in the VM; crun's `kill` reaches
    /// only a container's init). One that has ended already is left alone.
    pub fn signal_exec(&self, process: &Process, signal: u32) -> Result<(), RuntimeError> {
        if process.exited() {
            return Ok(());
        }
        let (Some(pid), Ok(signal)) = (
            process.pid.and_then(|p| i32::try_from(p).ok()),
            nix::sys::signal::Signal::try_from(i32::try_from(signal).unwrap_or(-1)),
        ) else {
            return Err(RuntimeError::Refused {
                command: "signal",
                id: format!("{:?}", process.pid),
                stderr: format!("no PID, or {signal} is not a signal"),
            });
        };
        match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
            Err(e) => Err(RuntimeError::Refused {
                command: "signal",
                id: pid.to_string(),
                stderr: e.to_string(),
            }),
        }
    }

    /// Sends `signal` to container `id`'s init process (all of them with `all`).
    pub async fn kill(&self, id: &str, signal: u32, all: bool) -> Result<(), RuntimeError> {
        let mut command = self.command();
        command.arg("kill");
        if all {
            command.arg("--all");
        }
        command.arg(id).arg(signal.to_string());
        self.finish(command, "kill", id).await
    }

    /// Removes container `id`, killing what still runs.
    pub async fn delete(&self, id: &str) -> Result<(), RuntimeError> {
        let mut command = self.command();
        command.arg("delete").arg("--force").arg(id);
        self.finish(command, "delete", id).await
    }

    async fn finish(
        &self,
        mut command: Command,
        name: &'static str,
        id: &str,
    ) -> Result<(), RuntimeError> {
        let output = command
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|source| RuntimeError::Spawn {
                binary: self.binary.clone(),
                source,
            })?;
        if output.status.success() {
            return Ok(());
        }
        Err(RuntimeError::Refused {
            command: name,
            id: id.to_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

/// How a process's stdio is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessIo {
    /// stdout and stderr as pipes; no stdin.
    Output,
    /// stdin, stdout and stderr as pipes.
    Pipes,
    /// A terminal (`process.terminal`): its pty master carries stdin and stdout.
    Terminal,
}

/// A process's terminal: the pty master crun passed over its console socket, one handle
/// for reads and one for writes (so a pending read does not hold up a write) and one for
/// the window size.
#[derive(Debug)]
pub struct Terminal {
    reader: Mutex<tokio::fs::File>,
    writer: Mutex<Option<tokio::fs::File>>,
    master: std::os::fd::OwnedFd,
}

impl Terminal {
    fn new(master: std::os::fd::OwnedFd, id: &str) -> Result<Terminal, RuntimeError> {
        let clone = |fd: &std::os::fd::OwnedFd| {
            fd.try_clone().map_err(|e| RuntimeError::Terminal {
                id: id.to_owned(),
                detail: format!("duplicating the pty master: {e}"),
            })
        };
        let reader = std::fs::File::from(clone(&master)?);
        let writer = std::fs::File::from(clone(&master)?);
        Ok(Terminal {
            reader: Mutex::new(tokio::fs::File::from_std(reader)),
            writer: Mutex::new(Some(tokio::fs::File::from_std(writer))),
            master,
        })
    }

    /// Sets the window size (TIOCSWINSZ); the process gets SIGWINCH.
    pub fn resize(&self, rows: u16, columns: u16) -> std::io::Result<()> {
        rustix::termios::tcsetwinsize(
            &self.master,
            rustix::termios::Winsize {
                ws_row: rows,
                ws_col: columns,
                ws_xpixel: 0,
                ws_ypixel: 0,
            },
        )
        .map_err(std::io::Error::from)
    }
}

/// Receives one file descriptor (SCM_RIGHTS) on `stream`, as crun sends a pty master.
fn receive_fd(stream: &std::os::unix::net::UnixStream) -> std::io::Result<std::os::fd::OwnedFd> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut data = [0u8; 256];
    rustix::net::recvmsg(
        stream,
        &mut [std::io::IoSliceMut::new(&mut data)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(mut fds) = message
            && let Some(fd) = fds.next()
        {
            return Ok(fd);
        }
    }
    Err(std::io::Error::other(
        "the message carried no file descriptor",
    ))
}

/// A process of a container: its streams and its exit status.
#[derive(Debug, Clone)]
pub struct Process {
    /// The container init's PID in the VM (for `crun run`), once known.
    pub pid: Option<u32>,
    /// Its terminal, when the spec asks for one.
    pub terminal: Option<Arc<Terminal>>,
    stdin: Arc<Mutex<Option<ChildStdin>>>,
    stdout: Arc<Mutex<Option<ChildStdout>>>,
    stderr: Arc<Mutex<Option<ChildStderr>>>,
    exit: watch::Receiver<Option<i32>>,
}

impl Process {
    fn spawn(command: &mut Command, binary: &Path, stdin: bool) -> Result<Process, RuntimeError> {
        let mut child = command
            .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| RuntimeError::Spawn {
                binary: binary.to_owned(),
                source,
            })?;
        let (exit_tx, exit) = watch::channel(None);
        let process = Process {
            pid: None,
            terminal: None,
            stdin: Arc::new(Mutex::new(child.stdin.take())),
            stdout: Arc::new(Mutex::new(child.stdout.take())),
            stderr: Arc::new(Mutex::new(child.stderr.take())),
            exit,
        };
        tokio::spawn(async move {
            let status = match child.wait().await {
                Ok(status) => exit_code(status),
                Err(e) => {
                    tracing::warn!(error = %e, "waiting for crun failed");
                    255
                }
            };
            exit_tx.send_replace(Some(status));
        });
        Ok(process)
    }

    /// Accepts crun's connection on the console socket and takes the pty master it sends;
    /// fails when crun exits first or takes longer than 30 s.
    async fn receive_terminal(
        &self,
        listener: &tokio::net::UnixListener,
        command: &'static str,
        id: &str,
    ) -> Result<std::os::fd::OwnedFd, RuntimeError> {
        let failed = |detail: String| RuntimeError::Terminal {
            id: id.to_owned(),
            detail,
        };
        let mut exit = self.exit.clone();
        let exited = async move {
            let _ = exit.wait_for(Option::is_some).await;
        };
        let stream = tokio::select! {
            accepted = listener.accept() => accepted
                .map_err(|e| failed(format!("accepting crun's connection: {e}")))?
                .0,
            () = exited => {
                let stderr = self.read(false, MAX_READ).await;
                return Err(RuntimeError::Refused {
                    command,
                    id: id.to_owned(),
                    stderr: format!(
                        "exited before it sent the terminal: {}",
                        String::from_utf8_lossy(&stderr).trim()
                    ),
                });
            }
            () = tokio::time::sleep(std::time::Duration::from_secs(30)) => {
                return Err(failed("crun sent no terminal within 30 s".to_owned()));
            }
        };
        let stream = stream
            .into_std()
            .map_err(|e| failed(format!("crun's connection: {e}")))?;
        tokio::task::spawn_blocking(move || {
            stream.set_nonblocking(false)?;
            stream.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
            receive_fd(&stream)
        })
        .await
        .map_err(|e| failed(e.to_string()))?
        .map_err(|e| failed(format!("receiving the pty master: {e}")))
    }

    async fn wait_for_pid(
        &self,
        pid_file: &Path,
        command: &'static str,
        id: &str,
    ) -> Result<u32, RuntimeError> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Ok(text) = std::fs::read_to_string(pid_file)
                && let Ok(pid) = text.trim().parse::<u32>()
            {
                return Ok(pid);
            }
            let exited = *self.exit.borrow();
            if let Some(status) = exited {
                let stderr = self.read(false, MAX_READ).await;
                return Err(RuntimeError::Refused {
                    command,
                    id: id.to_owned(),
                    stderr: format!(
                        "exited with {status} before the process ran: {}",
                        String::from_utf8_lossy(&stderr).trim()
                    ),
                });
            }
            if tokio::time::Instant::now() > deadline {
                return Err(RuntimeError::NoPid {
                    id: id.to_owned(),
                    detail: format!("{} not written", pid_file.display()),
                });
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// The exit status, once the process has ended: its exit code, or 128 + the signal
    /// that ended it (crun passes on the container's status).
    pub async fn wait(&self) -> i32 {
        let mut exit = self.exit.clone();
        match exit.wait_for(Option::is_some).await {
            Ok(status) => status.unwrap_or(255),
            Err(_) => 255,
        }
    }

    /// Whether the process has ended.
    pub fn exited(&self) -> bool {
        self.exit.borrow().is_some()
    }

    /// Up to `len` bytes of stdout (or stderr), waiting until some are there; empty at
    /// the end of the stream.
    pub async fn read(&self, stdout: bool, len: usize) -> Vec<u8> {
        let mut buffer = vec![0u8; len.clamp(1, MAX_READ)];
        let n = if let Some(terminal) = self.terminal.as_ref().filter(|_| stdout) {
            // EIO once the process's side has closed: the end of the stream.
            terminal
                .reader
                .lock()
                .await
                .read(&mut buffer)
                .await
                .unwrap_or(0)
        } else if stdout {
            match self.stdout.lock().await.as_mut() {
                Some(s) => s.read(&mut buffer).await.unwrap_or(0),
                None => 0,
            }
        } else {
            match self.stderr.lock().await.as_mut() {
                Some(s) => s.read(&mut buffer).await.unwrap_or(0),
                None => 0,
            }
        };
        buffer.truncate(n);
        buffer
    }

    /// Writes to stdin; the number of bytes written.
    pub async fn write(&self, data: &[u8]) -> std::io::Result<usize> {
        if let Some(terminal) = &self.terminal {
            return match terminal.writer.lock().await.as_mut() {
                Some(writer) => {
                    writer.write_all(data).await?;
                    writer.flush().await.map(|()| data.len())
                }
                None => Err(std::io::Error::new(
                    std::io::ErrorKind::BrokenPipe,
                    "the terminal's input was closed",
                )),
            };
        }
        match self.stdin.lock().await.as_mut() {
            Some(stdin) => stdin.write_all(data).await.map(|()| data.len()),
            None => Err(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the process has no stdin (closed, or not asked for)",
            )),
        }
    }

    /// Closes stdin.
    pub async fn close_stdin(&self) {
        if let Some(terminal) = &self.terminal {
            terminal.writer.lock().await.take();
        }
        self.stdin.lock().await.take();
    }
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => 255,
    }
}
