//! The pod VM's packet filter as Contrast's parts change it (docs/protocol.md §11.2): the
//! default-deny rule the pod VM installs in `filter/INPUT` before the workload starts, and
//! the `iptables` tools that check, remove and add rules.
//!
//! Whoever owns the pod's network lifts the default-deny rule: the mesh sidecar once its
//! redirect rules are in place, the Initializer when the pod has no mesh, the Coordinator
//! for itself ([`Iptables::lift_default_deny`]). IPv6 is left alone only when the kernel
//! has none ([`KernelIpv6`]).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The default-deny rule in `filter/INPUT` that the pod VM installs before the workload
/// starts: new inbound connections are dropped.
pub const DEFAULT_DENY_RULE: [&str; 7] = [
    "-m",
    "conntrack",
    "!",
    "--ctstate",
    "ESTABLISHED,RELATED",
    "-j",
    "DROP",
];

/// An IP family, with its own set of netfilter tables and tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpFamily {
    /// IPv4 (`iptables`).
    V4,
    /// IPv6 (`ip6tables`).
    V6,
}

/// Whether the kernel speaks IPv6 at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelIpv6 {
    /// IPv6 sockets can be created; IPv6 packets may arrive (even if every interface has
    /// `disable_ipv6` set now: that can be undone).
    Present,
    /// No IPv6 in this kernel (`EAFNOSUPPORT`): no IPv6 packet is ever received.
    Absent,
}

impl KernelIpv6 {
    /// Asks the kernel for an IPv6 socket. Only `EAFNOSUPPORT` counts as absent; any other
    /// failure (out of descriptors, …) counts as present, so the rules are still required.
    pub fn probe() -> KernelIpv6 {
        /// Linux's "address family not supported by protocol".
        const EAFNOSUPPORT: i32 = 97;
        match socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::STREAM, None) {
            Err(error) if error.raw_os_error() == Some(EAFNOSUPPORT) => KernelIpv6::Absent,
            _ => KernelIpv6::Present,
        }
    }
}

/// A failed `iptables` invocation.
#[derive(Debug, thiserror::Error)]
pub enum IptablesError {
    /// The tool could not be started.
    #[error(
        "starting {program}; install iptables (with ip6tables) in the image or pass the \
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
    /// The rule was not there (removed before, e.g. by an earlier run, or never installed).
    NotPresent,
}

/// What [`Iptables::lift_default_deny`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifted {
    /// The IPv4 rule.
    pub ipv4: DefaultDeny,
    /// The IPv6 rule; `None` when the kernel has no IPv6 and no `ip6tables` was run.
    pub ipv6: Option<DefaultDeny>,
}

/// The `iptables` tools to run (by path or by name on `PATH`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iptables {
    /// `iptables`.
    pub iptables: PathBuf,
    /// `iptables-restore`.
    pub iptables_restore: PathBuf,
    /// `ip6tables`.
    pub ip6tables: PathBuf,
    /// `ip6tables-restore`.
    pub ip6tables_restore: PathBuf,
}

impl Default for Iptables {
    fn default() -> Self {
        Iptables {
            iptables: PathBuf::from("iptables"),
            iptables_restore: PathBuf::from("iptables-restore"),
            ip6tables: PathBuf::from("ip6tables"),
            ip6tables_restore: PathBuf::from("ip6tables-restore"),
        }
    }
}

impl Iptables {
    /// Removes the default-deny rules: IPv4 first, then IPv6 unless the kernel has none.
    /// A failure leaves that family (and IPv6, if IPv4 failed) denied.
    pub fn lift_default_deny(&self, ipv6: KernelIpv6) -> Result<Lifted, IptablesError> {
        let ipv4 = self.remove_default_deny(IpFamily::V4)?;
        let ipv6 = match ipv6 {
            KernelIpv6::Present => Some(self.remove_default_deny(IpFamily::V6)?),
            KernelIpv6::Absent => None,
        };
        Ok(Lifted { ipv4, ipv6 })
    }

    /// Removes the default-deny rule from `filter/INPUT` of `family` if it is there.
    pub fn remove_default_deny(&self, family: IpFamily) -> Result<DefaultDeny, IptablesError> {
        let (tool, _) = self.tools(family);
        let mut check = vec!["--wait", "-t", "filter", "-C", "INPUT"];
        check.extend(DEFAULT_DENY_RULE);
        if !rule_exists(tool, &check)? {
            return Ok(DefaultDeny::NotPresent);
        }
        let mut delete = check.clone();
        delete[3] = "-D";
        let output = run(tool, &delete)?;
        expect_success(tool, &delete, &output)?;
        Ok(DefaultDeny::Removed)
    }

    /// Feeds `input` to the family's `iptables-restore --noflush`: the tables it names are
    /// changed in one transaction, the others kept.
    pub fn restore(&self, family: IpFamily, input: &str) -> Result<(), IptablesError> {
        let (_, restore) = self.tools(family);
        let args = ["--noflush", "--wait"];
        let output = run_with_input(restore, &args, input)?;
        expect_success(restore, &args, &output)
    }

    /// Appends `rule` to `chain` of `table` unless it is there; returns whether it added it.
    pub fn ensure_rule(
        &self,
        family: IpFamily,
        table: &str,
        chain: &str,
        rule: &[&str],
    ) -> Result<bool, IptablesError> {
        let (tool, _) = self.tools(family);
        let mut check = vec!["--wait", "-t", table, "-C", chain];
        check.extend(rule);
        if rule_exists(tool, &check)? {
            return Ok(false);
        }
        check[3] = "-A";
        let output = run(tool, &check)?;
        expect_success(tool, &check, &output)?;
        Ok(true)
    }

    /// The family's rule tool and restore tool.
    fn tools(&self, family: IpFamily) -> (&Path, &Path) {
        match family {
            IpFamily::V4 => (&self.iptables, &self.iptables_restore),
            IpFamily::V6 => (&self.ip6tables, &self.ip6tables_restore),
        }
    }
}

/// `iptables -C`: exit status 0 means present, 1 absent, anything else is an error.
fn rule_exists(tool: &Path, check: &[&str]) -> Result<bool, IptablesError> {
    let output = run(tool, check)?;
    match output.status.code() {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        _ => Err(failed(tool, check, &output)),
    }
}

fn run(program: &Path, args: &[&str]) -> Result<Output, IptablesError> {
    Command::new(program)
        .args(args)
        .output()
        .map_err(|source| IptablesError::Spawn {
            program: program.display().to_string(),
            source,
        })
}

fn run_with_input(program: &Path, args: &[&str], input: &str) -> Result<Output, IptablesError> {
    use std::io::Write as _;
    use std::process::Stdio;
    let spawn_error = |source| IptablesError::Spawn {
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

fn expect_success(program: &Path, args: &[&str], output: &Output) -> Result<(), IptablesError> {
    if output.status.success() {
        Ok(())
    } else {
        Err(failed(program, args, output))
    }
}

fn failed(program: &Path, args: &[&str], output: &Output) -> IptablesError {
    IptablesError::Failed {
        command: format!("{} {}", program.display(), args.join(" ")),
        status: output.status.to_string(),
        stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_missing_tool_is_a_spawn_error_naming_it_and_nothing_further_runs() {
        let tools = Iptables {
            iptables: PathBuf::from("/nonexistent/iptables"),
            iptables_restore: PathBuf::from("/nonexistent/iptables-restore"),
            ip6tables: PathBuf::from("/nonexistent/ip6tables"),
            ip6tables_restore: PathBuf::from("/nonexistent/ip6tables-restore"),
        };
        for family in [IpFamily::V4, IpFamily::V6] {
            let error = tools.remove_default_deny(family).unwrap_err();
            let IptablesError::Spawn { program, source } = &error else {
                panic!("{error:?}");
            };
            let tool = match family {
                IpFamily::V4 => "iptables",
                IpFamily::V6 => "ip6tables",
            };
            assert_eq!(program, &format!("/nonexistent/{tool}"));
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
            assert!(error.to_string().contains("install iptables"), "{error}");
        }
        // IPv4 first: its failure stops the lift before IPv6.
        let error = tools.lift_default_deny(KernelIpv6::Present).unwrap_err();
        assert!(
            matches!(&error, IptablesError::Spawn { program, .. } if program == "/nonexistent/iptables"),
            "{error:?}"
        );
    }
}
