//! The transparent redirect rules for the pod's network namespace
//! (contrast-protocol.md §10.5, §10.2), as data, and applying them with the `iptables`
//! tools.
//!
//! Mangle table: `PREROUTING -p tcp` jumps to `CONTRAST_INBOUND`, which returns traffic
//! from `lo` (the proxy's own upstream connections, other containers of the pod) and
//! packets of established connections, and sends the rest to `CONTRAST_IN_REDIRECT`: ports
//! configured `true` return (bypass), ports configured `false` go by TPROXY to the
//! no-client-auth port, everything else by TPROXY to the mTLS port. Packets to the pod's
//! own addresses are delivered locally anyway, so TPROXY needs no mark or routing table.
//!
//! Both chains are (re)written in one `iptables-restore --noflush` transaction, so a
//! restarted sidecar replaces stale rules without a moment in which inbound connections
//! would pass unredirected; the `PREROUTING` jump is added only if missing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::config::{IngressEntry, IngressPortMode};

/// The chain `PREROUTING` jumps to.
pub const INBOUND_CHAIN: &str = "CONTRAST_INBOUND";
/// The chain that decides per destination port.
pub const REDIRECT_CHAIN: &str = "CONTRAST_IN_REDIRECT";
/// The default-deny rule in `filter/INPUT` that the pod VM installs before the workload
/// starts; the sidecar removes it once its own rules are in place.
pub const DEFAULT_DENY_RULE: [&str; 7] = [
    "-m",
    "conntrack",
    "!",
    "--ctstate",
    "ESTABLISHED,RELATED",
    "-j",
    "DROP",
];

/// The proxy's two ingress ports, the TPROXY targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TproxyPorts {
    /// Connections that must present a mesh client certificate.
    pub mtls: u16,
    /// Connections to ports configured `false`.
    pub no_client_auth: u16,
}

/// The rules for one ingress configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectRules {
    /// Input for `iptables-restore --noflush`: the mangle table's two Contrast chains.
    pub restore_input: String,
    /// The rule in `mangle/PREROUTING` that sends TCP to [`INBOUND_CHAIN`] (arguments
    /// after `-A PREROUTING`/`-C PREROUTING`).
    pub prerouting_jump: Vec<String>,
}

impl RedirectRules {
    /// The rules for `entries` with the proxy listening on `ports`.
    pub fn new(entries: &[IngressEntry], ports: TproxyPorts) -> RedirectRules {
        let mut lines = vec![
            "*mangle".to_owned(),
            format!(":{INBOUND_CHAIN} - [0:0]"),
            format!(":{REDIRECT_CHAIN} - [0:0]"),
            format!("-A {INBOUND_CHAIN} -p tcp -i lo -j RETURN"),
            format!(
                "-A {INBOUND_CHAIN} -p tcp -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN"
            ),
            format!("-A {INBOUND_CHAIN} -p tcp -j {REDIRECT_CHAIN}"),
        ];
        for entry in entries {
            let port = entry.port;
            lines.push(match entry.mode {
                IngressPortMode::Bypass => {
                    format!("-A {REDIRECT_CHAIN} -p tcp --dport {port} -j RETURN")
                }
                IngressPortMode::TlsWithoutClientAuth => format!(
                    "-A {REDIRECT_CHAIN} -p tcp --dport {port} -j TPROXY --on-port {}",
                    ports.no_client_auth
                ),
            });
        }
        lines.push(format!(
            "-A {REDIRECT_CHAIN} -p tcp -j TPROXY --on-port {}",
            ports.mtls
        ));
        lines.push("COMMIT".to_owned());
        let mut restore_input = lines.join("\n");
        restore_input.push('\n');
        RedirectRules {
            restore_input,
            prerouting_jump: ["-p", "tcp", "-j", INBOUND_CHAIN]
                .map(str::to_owned)
                .to_vec(),
        }
    }
}

/// A failed `iptables` invocation.
#[derive(Debug, thiserror::Error)]
pub enum RedirectError {
    /// The tool could not be started.
    #[error(
        "starting {program}: {source}; install iptables in the sidecar image or pass the \
         tool's path"
    )]
    Spawn {
        /// The program.
        program: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The tool failed.
    #[error("{command} failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// What it wrote to stderr.
        stderr: String,
    },
}

/// What removing the default-deny rule found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultDeny {
    /// The rule was there and is gone.
    Removed,
    /// The rule was not there (already removed, e.g. by an earlier run of the sidecar).
    NotPresent,
}

/// The `iptables` tools to run (by path or by name on `PATH`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iptables {
    /// `iptables`.
    pub iptables: PathBuf,
    /// `iptables-restore`.
    pub iptables_restore: PathBuf,
}

impl Default for Iptables {
    fn default() -> Self {
        Iptables {
            iptables: PathBuf::from("iptables"),
            iptables_restore: PathBuf::from("iptables-restore"),
        }
    }
}

impl Iptables {
    /// Writes both chains atomically, then adds the `PREROUTING` jump if it is missing.
    pub fn apply(&self, rules: &RedirectRules) -> Result<(), RedirectError> {
        let restore_args = ["--noflush", "--wait"];
        let output = run_with_input(&self.iptables_restore, &restore_args, &rules.restore_input)?;
        expect_success(&self.iptables_restore, &restore_args, &output)?;

        let mut check = vec!["--wait", "-t", "mangle", "-C", "PREROUTING"];
        check.extend(rules.prerouting_jump.iter().map(String::as_str));
        if !self.rule_exists(&check)? {
            let mut append = check.clone();
            append[3] = "-A";
            let output = run(&self.iptables, &append)?;
            expect_success(&self.iptables, &append, &output)?;
        }
        Ok(())
    }

    /// Removes the default-deny rule from `filter/INPUT` if it is there.
    pub fn remove_default_deny(&self) -> Result<DefaultDeny, RedirectError> {
        let mut check = vec!["--wait", "-t", "filter", "-C", "INPUT"];
        check.extend(DEFAULT_DENY_RULE);
        if !self.rule_exists(&check)? {
            return Ok(DefaultDeny::NotPresent);
        }
        let mut delete = check.clone();
        delete[3] = "-D";
        let output = run(&self.iptables, &delete)?;
        expect_success(&self.iptables, &delete, &output)?;
        Ok(DefaultDeny::Removed)
    }

    /// `iptables -C`: exit status 0 means present, 1 absent, anything else is an error.
    fn rule_exists(&self, check: &[&str]) -> Result<bool, RedirectError> {
        let output = run(&self.iptables, check)?;
        match output.status.code() {
            Some(0) => Ok(true),
            Some(1) => Ok(false),
            _ => Err(failed(&self.iptables, check, &output)),
        }
    }
}

fn run(program: &Path, args: &[&str]) -> Result<Output, RedirectError> {
    Command::new(program)
        .args(args)
        .output()
        .map_err(|source| RedirectError::Spawn {
            program: program.display().to_string(),
            source,
        })
}

fn run_with_input(program: &Path, args: &[&str], input: &str) -> Result<Output, RedirectError> {
    use std::io::Write as _;
    use std::process::Stdio;
    let spawn_error = |source| RedirectError::Spawn {
        program: program.display().to_string(),
        source,
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_error)?;
    if let Some(mut stdin) = child.stdin.take() {
        // A write error means the tool exited early; its status and stderr say why.
        let _ = stdin.write_all(input.as_bytes());
    }
    child.wait_with_output().map_err(spawn_error)
}

fn expect_success(program: &Path, args: &[&str], output: &Output) -> Result<(), RedirectError> {
    if output.status.success() {
        Ok(())
    } else {
        Err(failed(program, args, output))
    }
}

fn failed(program: &Path, args: &[&str], output: &Output) -> RedirectError {
    RedirectError::Failed {
        command: format!("{} {}", program.display(), args.join(" ")),
        status: output.status.to_string(),
        stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PORTS: TproxyPorts = TproxyPorts {
        mtls: 15006,
        no_client_auth: 15007,
    };

    #[test]
    fn rules_for_an_empty_ingress_list_send_everything_to_mtls() {
        assert_eq!(
            RedirectRules::new(&[], PORTS).restore_input,
            "*mangle\n\
             :CONTRAST_INBOUND - [0:0]\n\
             :CONTRAST_IN_REDIRECT - [0:0]\n\
             -A CONTRAST_INBOUND -p tcp -i lo -j RETURN\n\
             -A CONTRAST_INBOUND -p tcp -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN\n\
             -A CONTRAST_INBOUND -p tcp -j CONTRAST_IN_REDIRECT\n\
             -A CONTRAST_IN_REDIRECT -p tcp -j TPROXY --on-port 15006\n\
             COMMIT\n"
        );
    }

    #[test]
    fn rules_per_port_in_the_given_order() {
        let entries = [
            IngressEntry {
                name: "web".into(),
                port: 8080,
                mode: IngressPortMode::TlsWithoutClientAuth,
            },
            IngressEntry {
                name: "metrics".into(),
                port: 9090,
                mode: IngressPortMode::Bypass,
            },
        ];
        let rules = RedirectRules::new(
            &entries,
            TproxyPorts {
                mtls: 16006,
                no_client_auth: 16007,
            },
        );
        let redirect: Vec<&str> = rules
            .restore_input
            .lines()
            .filter(|l| l.starts_with("-A CONTRAST_IN_REDIRECT"))
            .collect();
        assert_eq!(
            redirect,
            [
                "-A CONTRAST_IN_REDIRECT -p tcp --dport 8080 -j TPROXY --on-port 16007",
                "-A CONTRAST_IN_REDIRECT -p tcp --dport 9090 -j RETURN",
                "-A CONTRAST_IN_REDIRECT -p tcp -j TPROXY --on-port 16006",
            ]
        );
        assert_eq!(
            rules.prerouting_jump,
            ["-p", "tcp", "-j", "CONTRAST_INBOUND"]
        );
    }

    #[test]
    fn missing_tool_is_a_spawn_error_naming_it() {
        let tools = Iptables {
            iptables: PathBuf::from("/nonexistent/iptables"),
            iptables_restore: PathBuf::from("/nonexistent/iptables-restore"),
        };
        let error = tools.apply(&RedirectRules::new(&[], PORTS)).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("starting /nonexistent/iptables-restore:"),
            "{error}"
        );
        let error = tools.remove_default_deny().unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("starting /nonexistent/iptables:"),
            "{error}"
        );
    }

    #[test]
    fn failing_tool_reports_command_status_and_stderr() {
        // `false` stands in for a tool that refuses: exit status 1 from `-C` means "absent",
        // but the restore step must fail loudly.
        let tools = Iptables {
            iptables: PathBuf::from("false"),
            iptables_restore: PathBuf::from("false"),
        };
        let error = tools.apply(&RedirectRules::new(&[], PORTS)).unwrap_err();
        assert!(
            matches!(&error, RedirectError::Failed { command, .. } if command == "false --noflush --wait"),
            "{error}"
        );
    }
}
