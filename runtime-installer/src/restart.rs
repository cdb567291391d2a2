//! Restarting the unit that runs containerd, on the host, only when its configuration
//! changed (docs/runtime.md §6).
//!
//! Commands run in PID 1's mount namespace (`nsenter --target 1 --mount --`; the pod
//! shares the host's PID namespace), so the host's own systemctl talks to the host's
//! systemd. The runner is a trait: tests record commands instead of running them.
//!
//! Restarting containerd may take the installer's container down with it. So the
//! decision is remembered *before* the restart: a state file in the runtime directory
//! holds the SHA-256 of the configuration a restart was issued for. A run that finds the
//! configuration unchanged but the state file stale (a crash between writing the file
//! and restarting) restarts; one that finds both current does nothing.

use std::fmt;
use std::io;
use std::path::Path;
use std::process::Command;

use aws_lc_rs::digest;

use crate::InstallError;
use crate::containerd::read_optional;

/// Runs a program and reports its result.
pub trait CommandRunner: fmt::Debug {
    /// Runs `program` with `args` to completion.
    fn run(&mut self, program: &str, args: &[&str]) -> io::Result<CommandOutput>;
}

/// What a command printed and whether it succeeded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CommandOutput {
    /// Exit status 0.
    pub success: bool,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Runs commands for real.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemRunner;

impl CommandRunner for SystemRunner {
    fn run(&mut self, program: &str, args: &[&str]) -> io::Result<CommandOutput> {
        let output = Command::new(program).args(args).output()?;
        Ok(CommandOutput {
            success: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }
}

/// The command prefix that enters the host's mount namespace.
pub const NSENTER: [&str; 4] = ["--target", "1", "--mount", "--"];

fn host_systemctl(
    runner: &mut dyn CommandRunner,
    args: &[&str],
) -> Result<CommandOutput, InstallError> {
    let mut full: Vec<&str> = NSENTER.to_vec();
    full.push("systemctl");
    full.extend_from_slice(args);
    runner
        .run("nsenter", &full)
        .map_err(|source| InstallError::CommandSpawn {
            command: format!("nsenter {}", full.join(" ")),
            source,
        })
}

/// What [`restart_if_needed`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestartOutcome {
    /// `unit` was restarted.
    Restarted {
        /// The unit.
        unit: String,
    },
    /// The running containerd already has the configuration.
    NotNeeded,
    /// No unit is configured (the target configuration turned restarts off).
    Disabled,
    /// Dry run: one of `units` would be restarted.
    WouldRestart {
        /// The candidates.
        units: Vec<String>,
    },
}

/// Restarts the first existing unit of `units` if `changed` or if no restart was issued
/// yet for `config` (the bytes of containerd's configuration). `state_file` is the local
/// path of the state file.
pub fn restart_if_needed(
    units: &[String],
    config: &str,
    changed: bool,
    state_file: &Path,
    runner: &mut dyn CommandRunner,
    dry_run: bool,
) -> Result<RestartOutcome, InstallError> {
    if units.is_empty() {
        return Ok(RestartOutcome::Disabled);
    }
    let state = format!(
        "sha256:{}\n",
        hex::encode(digest::digest(&digest::SHA256, config.as_bytes()))
    );
    if !changed && read_optional(state_file)?.as_deref() == Some(state.as_str()) {
        return Ok(RestartOutcome::NotNeeded);
    }
    if dry_run {
        return Ok(RestartOutcome::WouldRestart {
            units: units.to_vec(),
        });
    }
    let unit = select_unit(units, runner)?;
    // Before the restart, which may end this process (see the module documentation).
    contrast_atomic_file::write_creating_dir(state_file, state.as_bytes(), 0o644)?;
    tracing::info!(%unit, "restarting");
    let output = host_systemctl(runner, &["restart", &unit])?;
    if !output.success {
        // Let the next run try again.
        let _ = std::fs::remove_file(state_file);
        return Err(InstallError::RestartFailed {
            unit,
            stderr: output.stderr.trim().to_owned(),
        });
    }
    Ok(RestartOutcome::Restarted { unit })
}

/// The first of `units` systemd knows (one candidate is taken as it is).
fn select_unit(units: &[String], runner: &mut dyn CommandRunner) -> Result<String, InstallError> {
    if let [only] = units {
        return Ok(only.clone());
    }
    for unit in units {
        let output = host_systemctl(runner, &["show", "--property=LoadState", "--value", unit])?;
        if output.success && output.stdout.trim() == "loaded" {
            return Ok(unit.clone());
        }
    }
    Err(InstallError::NoUnitFound {
        units: units.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[derive(Debug, Default)]
    struct Recorder {
        commands: Vec<String>,
        loaded: Vec<&'static str>,
        fail_restart: bool,
    }

    impl CommandRunner for Recorder {
        fn run(&mut self, program: &str, args: &[&str]) -> io::Result<CommandOutput> {
            let line = format!("{program} {}", args.join(" "));
            self.commands.push(line);
            let unit = args.last().copied().unwrap_or_default();
            if args.contains(&"show") {
                let state = if self.loaded.contains(&unit) {
                    "loaded"
                } else {
                    "not-found"
                };
                return Ok(CommandOutput {
                    success: true,
                    stdout: format!("{state}\n"),
                    stderr: String::new(),
                });
            }
            Ok(CommandOutput {
                success: !self.fail_restart,
                stdout: String::new(),
                stderr: if self.fail_restart {
                    "Unit failed.\n".into()
                } else {
                    String::new()
                },
            })
        }
    }

    fn units(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn restarts_once_per_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("etc/state");
        let mut runner = Recorder::default();
        let units = units(&["containerd.service"]);
        let outcome = restart_if_needed(&units, "cfg", true, &state, &mut runner, false).unwrap();
        assert_eq!(
            outcome,
            RestartOutcome::Restarted {
                unit: "containerd.service".into()
            }
        );
        assert_eq!(
            runner.commands,
            ["nsenter --target 1 --mount -- systemctl restart containerd.service"]
        );
        let outcome = restart_if_needed(&units, "cfg", false, &state, &mut runner, false).unwrap();
        assert_eq!(outcome, RestartOutcome::NotNeeded);
        assert_eq!(runner.commands.len(), 1);
    }

    #[test]
    fn a_missed_restart_is_caught_up() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let mut runner = Recorder::default();
        let units = units(&["containerd.service"]);
        restart_if_needed(&units, "old", true, &state, &mut runner, false).unwrap();
        // The configuration changed in a run that did not get to restart.
        let outcome = restart_if_needed(&units, "new", false, &state, &mut runner, false).unwrap();
        assert!(matches!(outcome, RestartOutcome::Restarted { .. }));
    }

    #[test]
    fn picks_the_first_loaded_unit() {
        let dir = tempfile::tempdir().unwrap();
        let mut runner = Recorder {
            loaded: vec!["k3s-agent.service"],
            ..Recorder::default()
        };
        let outcome = restart_if_needed(
            &units(&["k3s.service", "k3s-agent.service"]),
            "c",
            true,
            &dir.path().join("s"),
            &mut runner,
            false,
        )
        .unwrap();
        assert_eq!(
            outcome,
            RestartOutcome::Restarted {
                unit: "k3s-agent.service".into()
            }
        );
        assert_eq!(runner.commands.len(), 3);
    }

    #[test]
    fn no_loaded_unit_is_an_error_naming_them() {
        let dir = tempfile::tempdir().unwrap();
        let err = restart_if_needed(
            &units(&["a.service", "b.service"]),
            "c",
            true,
            &dir.path().join("s"),
            &mut Recorder::default(),
            false,
        )
        .unwrap_err();
        assert!(err.to_string().contains("a.service, b.service"), "{err}");
    }

    #[test]
    fn a_failed_restart_is_retried_next_time() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("s");
        let units = units(&["containerd.service"]);
        let mut failing = Recorder {
            fail_restart: true,
            ..Recorder::default()
        };
        let err = restart_if_needed(&units, "c", true, &state, &mut failing, false).unwrap_err();
        assert!(err.to_string().contains("Unit failed."), "{err}");
        assert!(!state.exists());
        let mut runner = Recorder::default();
        let outcome = restart_if_needed(&units, "c", false, &state, &mut runner, false).unwrap();
        assert!(matches!(outcome, RestartOutcome::Restarted { .. }));
    }

    #[test]
    fn disabled_and_dry_run_run_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut runner = Recorder::default();
        let state = dir.path().join("s");
        assert_eq!(
            restart_if_needed(&[], "c", true, &state, &mut runner, false).unwrap(),
            RestartOutcome::Disabled
        );
        assert!(matches!(
            restart_if_needed(&units(&["x.service"]), "c", true, &state, &mut runner, true)
                .unwrap(),
            RestartOutcome::WouldRestart { .. }
        ));
        assert!(runner.commands.is_empty());
        assert!(!state.exists());
    }
}
