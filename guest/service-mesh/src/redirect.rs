//! The transparent redirect rules for the pod's network namespace
//! (docs/protocol.md §11.5, §11.2), as data, and applying them with the `iptables`
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
//!
//! IPv6 gets the same rules with `ip6tables-restore`: the rules match no addresses, so
//! one text serves both families, and without them a client could reach the workload over
//! IPv6 (a pod's link-local address is always there) past the mesh. [`install`]
//! does both families in an order that is never less safe than before it started:
//!
//! 1. IPv6 rules, then IPv4 rules. If IPv6 fails, nothing of IPv4 has been touched. If
//!    IPv4 fails after IPv6 succeeded, the IPv6 rules stay: they send IPv6 TCP to the
//!    proxy's ports, where nothing listens once the failed sidecar exits, so it is dropped.
//! 2. Only then the default-deny rules are removed, IPv4 first, then the IPv6 one if the
//!    pod VM installed it too. A failure leaves that family denied.
//!
//! Any failure is an error, and the sidecar does not report ready.
//!
//! A kernel without IPv6 (built without it or booted with `ipv6.disable=1`: no IPv6
//! socket can be created) receives no IPv6 packets, so there is nothing to redirect and no
//! `ip6tables` is run. IPv6 that is merely switched off by sysctl (`disable_ipv6`) still
//! gets the rules: anything with `CAP_NET_ADMIN` in the pod can switch it back on.

use contrast_netfilter::{IpFamily, Iptables, IptablesError, KernelIpv6, Lifted};

use crate::config::{IngressEntry, IngressPortMode};

/// The chain `PREROUTING` jumps to.
pub const INBOUND_CHAIN: &str = "CONTRAST_INBOUND";
/// The chain that decides per destination port.
pub const REDIRECT_CHAIN: &str = "CONTRAST_IN_REDIRECT";
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

/// What [`install`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Installed {
    /// Whether redirect rules were written (none when ingress is disabled).
    pub redirect: bool,
    /// The default-deny rules.
    pub default_deny: Lifted,
}

/// Everything the sidecar does to the pod's netfilter tables, in the order the module
/// documentation gives: the redirect `rules` (if any) for IPv6, then IPv4, then removal of
/// the default-deny rules. IPv6 is left alone only when the kernel has none.
pub fn install(
    tools: &Iptables,
    rules: Option<&RedirectRules>,
    ipv6: KernelIpv6,
) -> Result<Installed, IptablesError> {
    let families: &[IpFamily] = match ipv6 {
        KernelIpv6::Present => &[IpFamily::V6, IpFamily::V4],
        KernelIpv6::Absent => &[IpFamily::V4],
    };
    if let Some(rules) = rules {
        for &family in families {
            apply(tools, family, rules)?;
        }
    }
    Ok(Installed {
        redirect: rules.is_some(),
        default_deny: tools.lift_default_deny(ipv6)?,
    })
}

/// For `family`: writes both chains atomically, then adds the `PREROUTING` jump if it is
/// missing.
pub fn apply(
    tools: &Iptables,
    family: IpFamily,
    rules: &RedirectRules,
) -> Result<(), IptablesError> {
    tools.restore(family, &rules.restore_input)?;
    let jump: Vec<&str> = rules.prerouting_jump.iter().map(String::as_str).collect();
    tools.ensure_rule(family, "mangle", "PREROUTING", &jump)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use contrast_netfilter::DefaultDeny;

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
            ip6tables: PathBuf::from("/nonexistent/ip6tables"),
            ip6tables_restore: PathBuf::from("/nonexistent/ip6tables-restore"),
        };
        let rules = RedirectRules::new(&[], PORTS);
        for (family, restore, tool) in [
            (IpFamily::V4, "iptables-restore", "iptables"),
            (IpFamily::V6, "ip6tables-restore", "ip6tables"),
        ] {
            let error = apply(&tools, family, &rules).unwrap_err();
            let chain = contrast_platforms::error_chain(&error);
            assert!(
                chain.starts_with(&format!("starting /nonexistent/{restore};"))
                    && chain.ends_with("(os error 2)"),
                "{chain}"
            );
            let error = install(&tools, None, KernelIpv6::Present).unwrap_err();
            let chain = contrast_platforms::error_chain(&error);
            assert!(
                chain.starts_with("starting /nonexistent/iptables;")
                    && chain.ends_with("(os error 2)"),
                "{tool}: {chain}"
            );
        }
    }

    #[test]
    fn failing_tool_reports_command_status_and_stderr() {
        // `false` stands in for a tool that refuses: exit status 1 from `-C` means "absent",
        // but the restore step must fail loudly.
        let tools = Iptables {
            iptables: PathBuf::from("false"),
            iptables_restore: PathBuf::from("false"),
            ip6tables: PathBuf::from("false"),
            ip6tables_restore: PathBuf::from("false"),
        };
        let error = apply(&tools, IpFamily::V4, &RedirectRules::new(&[], PORTS)).unwrap_err();
        assert!(
            matches!(&error, IptablesError::Failed { command, .. } if command == "false --noflush --wait"),
            "{error}"
        );
    }

    /// Stand-ins for the four tools that log their arguments (and a restore tool's input)
    /// to one file. `-C` answers "absent"; a restore tool exits with `restore_status`.
    struct FakeTools {
        dir: tempfile::TempDir,
        tools: Iptables,
    }

    impl FakeTools {
        fn new(ip6tables_restore_status: u8) -> FakeTools {
            use std::os::unix::fs::PermissionsExt as _;
            let dir = tempfile::tempdir().unwrap();
            let log = dir.path().join("log");
            let tool = |name: &str, restore_status: u8| -> PathBuf {
                let path = dir.path().join(name);
                let script = format!(
                    "#!/bin/sh\n\
                     echo \"{name} $*\" >> '{log}'\n\
                     case {name} in *-restore) cat >> '{log}'; exit {restore_status};; esac\n\
                     case \" $* \" in *\" -C \"*) exit 1;; esac\n",
                    log = log.display()
                );
                std::fs::write(&path, script).unwrap();
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
                path
            };
            let tools = Iptables {
                iptables: tool("iptables", 0),
                iptables_restore: tool("iptables-restore", 0),
                ip6tables: tool("ip6tables", 0),
                ip6tables_restore: tool("ip6tables-restore", ip6tables_restore_status),
            };
            FakeTools { dir, tools }
        }

        fn log(&self) -> String {
            std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
        }
    }

    #[test]
    fn install_writes_ipv6_rules_first_then_ipv4_then_removes_both_denies() {
        let fake = FakeTools::new(0);
        let entries = [IngressEntry {
            name: "metrics".into(),
            port: 9090,
            mode: IngressPortMode::Bypass,
        }];
        let installed = install(
            &fake.tools,
            Some(&RedirectRules::new(&entries, PORTS)),
            KernelIpv6::Present,
        )
        .unwrap();
        assert_eq!(
            installed,
            Installed {
                redirect: true,
                default_deny: Lifted {
                    ipv4: DefaultDeny::NotPresent,
                    ipv6: Some(DefaultDeny::NotPresent),
                },
            }
        );
        let chains = "*mangle\n\
             :CONTRAST_INBOUND - [0:0]\n\
             :CONTRAST_IN_REDIRECT - [0:0]\n\
             -A CONTRAST_INBOUND -p tcp -i lo -j RETURN\n\
             -A CONTRAST_INBOUND -p tcp -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN\n\
             -A CONTRAST_INBOUND -p tcp -j CONTRAST_IN_REDIRECT\n\
             -A CONTRAST_IN_REDIRECT -p tcp --dport 9090 -j RETURN\n\
             -A CONTRAST_IN_REDIRECT -p tcp -j TPROXY --on-port 15006\n\
             COMMIT\n";
        let deny = "-m conntrack ! --ctstate ESTABLISHED,RELATED -j DROP";
        assert_eq!(
            fake.log(),
            format!(
                "ip6tables-restore --noflush --wait\n\
                 {chains}\
                 ip6tables --wait -t mangle -C PREROUTING -p tcp -j CONTRAST_INBOUND\n\
                 ip6tables --wait -t mangle -A PREROUTING -p tcp -j CONTRAST_INBOUND\n\
                 iptables-restore --noflush --wait\n\
                 {chains}\
                 iptables --wait -t mangle -C PREROUTING -p tcp -j CONTRAST_INBOUND\n\
                 iptables --wait -t mangle -A PREROUTING -p tcp -j CONTRAST_INBOUND\n\
                 iptables --wait -t filter -C INPUT {deny}\n\
                 ip6tables --wait -t filter -C INPUT {deny}\n"
            )
        );
    }

    #[test]
    fn ipv4_left_untouched_when_ip6tables_restore_refused() {
        let fake = FakeTools::new(2);
        let error = install(
            &fake.tools,
            Some(&RedirectRules::new(&[], PORTS)),
            KernelIpv6::Present,
        )
        .unwrap_err();
        assert!(
            matches!(&error, IptablesError::Failed { command, .. }
                if command.ends_with("ip6tables-restore --noflush --wait")),
            "{error}"
        );
        let log = fake.log();
        assert!(log.starts_with("ip6tables-restore "), "{log}");
        // No IPv4 rule written and no default-deny rule touched.
        assert!(!log.contains("\niptables"), "{log}");
        assert!(!log.contains("INPUT"), "{log}");
    }

    #[test]
    fn kernel_without_ipv6_runs_no_ip6tables() {
        let fake = FakeTools::new(0);
        let installed = install(
            &fake.tools,
            Some(&RedirectRules::new(&[], PORTS)),
            KernelIpv6::Absent,
        )
        .unwrap();
        assert_eq!(installed.default_deny.ipv6, None);
        let log = fake.log();
        assert!(log.starts_with("iptables-restore "), "{log}");
        assert!(!log.contains("ip6tables"), "{log}");
    }

    #[test]
    fn ingress_disabled_removes_both_denies_and_writes_no_rules() {
        let fake = FakeTools::new(0);
        let installed = install(&fake.tools, None, KernelIpv6::Present).unwrap();
        assert!(!installed.redirect);
        let log = fake.log();
        assert!(!log.contains("restore") && !log.contains("mangle"), "{log}");
        assert_eq!(log.lines().count(), 2, "{log}");
        assert!(
            log.starts_with("iptables --wait -t filter -C INPUT"),
            "{log}"
        );
        assert!(
            log.lines()
                .nth(1)
                .is_some_and(|l| l.starts_with("ip6tables --wait -t filter -C INPUT")),
            "{log}"
        );
    }
}
