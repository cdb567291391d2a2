//! `contrast --version`: the version, the container images this build deploys and injects,
//! and for every platform the runtime handler and the reference values it embeds — what
//! Contrast's CLI prints, in its layout.

use std::fmt::Write as _;

use contrast_manifest::{EmbeddedReferenceValues, Svn};
use contrast_platforms::Platform;
use contrast_reference_values::Release;

/// The text after `contrast ` that `--version` prints.
pub(crate) fn long_version() -> String {
    let mut out = format!(
        "{}\n\ncontainer image versions:\n",
        env!("CARGO_PKG_VERSION")
    );
    let (bundle, injected) = match (crate::bundle::images(), crate::generate::default_images()) {
        (Ok(bundle), Ok(injected)) => (bundle, injected),
        (Err(e), _) | (_, Err(e)) => {
            let _ = writeln!(out, "    {e:#}");
            return out;
        }
    };
    for image in [
        &bundle.coordinator,
        &injected.initializer,
        &injected.service_mesh,
        &bundle.runtime_installer,
        &bundle.port_forwarder,
        &bundle.pause,
    ] {
        let _ = writeln!(out, "    {image}");
    }
    match crate::generate::embedded_reference_values() {
        Ok(embedded) => {
            // Its errors were reported with the images above.
            let release = crate::bundle::embedded_release().ok().flatten();
            for platform in Platform::ALL {
                platform_section(&mut out, &embedded, release.as_ref(), platform);
            }
        }
        Err(e) => {
            let _ = write!(out, "\nreference values: {e:#}\n");
        }
    }
    out
}

fn platform_section(
    out: &mut String,
    embedded: &EmbeddedReferenceValues,
    release: Option<&Release>,
    platform: Platform,
) {
    let _ = write!(out, "\nreference values for {platform} platform:\n");
    let (Some(handler), Ok(values)) = (
        embedded.handler(platform),
        embedded.for_platforms(&[platform]),
    ) else {
        out.push_str("    none in this build: build the guest image for it first\n");
        return;
    };
    let mut line = |label: &str, value: &dyn std::fmt::Display| {
        let label = format!("{label}:");
        let _ = if value.to_string().is_empty() {
            writeln!(out, "    {label}")
        } else {
            writeln!(out, "    {label:<26}{value}")
        };
    };
    line("runtime handler", &handler);
    if let Some(entry) = release.and_then(|r| r.platforms.get(platform.name())) {
        let verdict = if entry.production {
            "yes".to_owned()
        } else {
            format!("no: {}", entry.caveat)
        };
        line("production values", &verdict);
        if !entry.firmware.is_empty() {
            line("firmware", &entry.firmware);
        }
    }
    for snp in &values.snp {
        line("- launch digest", &snp.trusted_measurement);
        line("  product", &snp.product_name);
        if snp.cpus != 0 {
            line("  vCPUs", &snp.cpus);
        }
        line("  default SNP TCB", &"");
        let tcb = &snp.minimum_tcb;
        for (name, svn) in [
            ("bootloader", tcb.bootloader_version),
            ("tee", tcb.tee_version),
            ("snp", tcb.snp_version),
            ("microcode", tcb.microcode_version),
        ] {
            line(&format!("      {name}"), &svn_text(svn));
        }
    }
    for tdx in &values.tdx {
        line("- mrTd", &tdx.mr_td);
        for (i, rtmr) in tdx.rtmrs.iter().enumerate() {
            line(&format!("  rtmr[{i}]"), rtmr);
        }
        line("  minimum qe svn", &optional(tdx.minimum_qe_svn));
        line("  minimum pce svn", &optional(tdx.minimum_pce_svn));
        line("  minimum tee tcb svn", &tdx.minimum_tee_tcb_svn);
        line("  mrSeam", &tdx.mr_seam);
        line("  tdAttributes", &tdx.td_attributes);
        line("  xfam", &tdx.xfam);
    }
}

fn svn_text(svn: Option<Svn>) -> String {
    optional(svn.map(|Svn(value)| value))
}

fn optional(value: Option<impl std::fmt::Display>) -> String {
    value.map_or_else(|| "(no default)".to_owned(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_release_says_per_platform_whether_its_values_are_production_values() {
        let embedded = crate::generate::embedded_reference_values().unwrap();
        let handler = embedded.handler(Platform::SimSnp).unwrap();
        let release = Release {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            images: Default::default(),
            platforms: [(
                "Sim-SNP".to_owned(),
                contrast_reference_values::ReleasePlatform {
                    runtime_handler: handler.to_string(),
                    reference_values: serde_json::Value::Null,
                    production: false,
                    caveat: "a simulated platform".to_owned(),
                    firmware: "Debian package ovmf 1 (SHA-256 00)".to_owned(),
                },
            )]
            .into(),
        };
        let mut out = String::new();
        platform_section(&mut out, &embedded, Some(&release), Platform::SimSnp);
        assert!(
            out.contains("    production values:        no: a simulated platform\n"),
            "{out}"
        );
        assert!(
            out.contains("    firmware:                 Debian package ovmf 1 (SHA-256 00)\n"),
            "{out}"
        );
        let mut out = String::new();
        platform_section(&mut out, &embedded, None, Platform::SimSnp);
        assert!(!out.contains("production values"), "{out}");
    }
}
