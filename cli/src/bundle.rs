//! `contrast runtime` and `contrast coordinator`: print the resources Contrast ships for a
//! platform (RuntimeClass and node installer; the Coordinator bundle), ready for
//! `kubectl apply -f -` or for `contrast generate` (the Coordinator's policy).

use anyhow::Context as _;
use clap::Args;
use contrast_kube_resources::bundle::{self, BundleImages};
use contrast_kube_resources::emit_documents;
use contrast_platforms::{Platform, RuntimeHandler};

/// Flags of `contrast runtime` and `contrast coordinator`.
#[derive(Debug, Args)]
pub(crate) struct BundleArgs {
    /// The platform, e.g. metal-qemu-snp or sim-snp.
    #[arg(long)]
    pub platform: String,
    /// Also print a port-forwarder Pod for clusters without a load balancer
    /// (`contrast coordinator` only).
    #[arg(long)]
    pub port_forwarder: bool,
}

fn platform_and_handler(args: &BundleArgs) -> anyhow::Result<(Platform, RuntimeHandler)> {
    let platform: Platform = args
        .platform
        .parse()
        .map_err(|e| anyhow::anyhow!("--platform: {e}"))?;
    let handler = crate::generate::embedded_reference_values()?
        .handler(platform)
        .with_context(|| format!("this build has no runtime for {platform}"))?;
    Ok((platform, handler))
}

/// The images of the shipped resources in this build.
pub(crate) fn images() -> BundleImages {
    BundleImages::for_version(env!("CARGO_PKG_VERSION"))
}

/// `contrast runtime`.
pub(crate) fn runtime(args: &BundleArgs) -> anyhow::Result<bool> {
    let (platform, handler) = platform_and_handler(args)?;
    crate::print_raw(&emit_documents(&bundle::runtime(
        platform,
        &handler,
        &images(),
    )));
    Ok(true)
}

/// `contrast coordinator`.
pub(crate) fn coordinator(args: &BundleArgs) -> anyhow::Result<bool> {
    let (platform, handler) = platform_and_handler(args)?;
    let mut documents = bundle::coordinator(platform, &handler, &images());
    if args.port_forwarder {
        documents.push(bundle::port_forwarder(&images(), bundle::ports::USER_API));
    }
    crate::print_raw(&emit_documents(&documents));
    Ok(true)
}
