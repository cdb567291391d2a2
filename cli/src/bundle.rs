//! `contrast runtime` and `contrast coordinator`: print the resources Contrast ships for a
//! platform (RuntimeClass and node installer; the Coordinator bundle), ready for
//! `kubectl apply -f -` or for `contrast generate` (the Coordinator's policy).

use anyhow::Context as _;
use clap::Args;
use contrast_kube_resources::bundle::{self, BundleImages};
use contrast_kube_resources::emit_documents;
use contrast_platforms::{Platform, RuntimeHandler};
use contrast_reference_values::Release;

/// Flags of `contrast runtime`.
#[derive(Debug, Args)]
pub(crate) struct BundleArgs {
    /// The platform, e.g. metal-qemu-snp or sim-snp.
    #[arg(long)]
    pub platform: String,
}

/// Flags of `contrast coordinator`.
#[derive(Debug, Args)]
pub(crate) struct CoordinatorBundleArgs {
    #[command(flatten)]
    pub bundle: BundleArgs,
    /// Also print a port-forwarder Pod for clusters without a load balancer.
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

/// The images of the shipped resources in this build: a release's by digest (the node
/// installer too, when the release was built with a guest image), a development build's by
/// tag.
pub(crate) fn images() -> anyhow::Result<BundleImages> {
    images_of(embedded_release()?.as_ref())
}

fn images_of(release: Option<&Release>) -> anyhow::Result<BundleImages> {
    let mut images = BundleImages::for_version(env!("CARGO_PKG_VERSION"));
    if let Some(release) = release {
        use contrast_reference_values::components::{COORDINATOR, NODE_INSTALLER, PORT_FORWARDER};
        images.coordinator = released(release, COORDINATOR)?;
        images.port_forwarder = released(release, PORT_FORWARDER)?;
        if let Some(installer) = release.image(NODE_INSTALLER) {
            installer.clone_into(&mut images.runtime_installer);
        }
    }
    Ok(images)
}

/// The release this CLI was built for (`cargo xtask release`); `None` in a development
/// build.
pub(crate) fn embedded_release() -> anyhow::Result<Option<Release>> {
    let release =
        Release::embedded().context("the embedded release.json does not parse (a build bug)")?;
    if let Some(release) = &release {
        let version = env!("CARGO_PKG_VERSION");
        anyhow::ensure!(
            release.version == version,
            "the embedded release is version {}, this CLI is {version} (a build bug)",
            release.version
        );
    }
    Ok(release)
}

/// `component`'s image in `release`, by digest.
pub(crate) fn released(release: &Release, component: &str) -> anyhow::Result<String> {
    release
        .image(component)
        .map(str::to_owned)
        .with_context(|| format!("the embedded release has no {component} image (a build bug)"))
}

/// `contrast runtime`.
pub(crate) fn runtime(args: &BundleArgs) -> anyhow::Result<bool> {
    let (platform, handler) = platform_and_handler(args)?;
    crate::print_raw(&emit_documents(&bundle::runtime(
        platform,
        &handler,
        &images()?,
    )));
    Ok(true)
}

/// `contrast coordinator`.
pub(crate) fn coordinator(args: &CoordinatorBundleArgs) -> anyhow::Result<bool> {
    let (platform, handler) = platform_and_handler(&args.bundle)?;
    let images = images()?;
    let mut documents = bundle::coordinator(platform, &handler, &images);
    if args.port_forwarder {
        documents.push(bundle::port_forwarder(&images, bundle::ports::USER_API));
    }
    crate::print_raw(&emit_documents(&documents));
    Ok(true)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn release(images: &[(&str, &str)]) -> Release {
        Release {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            images: images
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            platforms: Default::default(),
        }
    }

    #[test]
    fn a_release_names_its_images_by_digest_a_development_build_by_tag() {
        let development = images_of(None).unwrap();
        assert!(
            development
                .coordinator
                .ends_with(&format!(":v{}", env!("CARGO_PKG_VERSION")))
        );
        let pinned = "r.example/contrast/coordinator@sha256:0123";
        let forwarder = "r.example/contrast/port-forwarder@sha256:4567";
        let released = images_of(Some(&release(&[
            ("coordinator", pinned),
            ("port-forwarder", forwarder),
        ])))
        .unwrap();
        assert_eq!(released.coordinator, pinned);
        assert_eq!(released.port_forwarder, forwarder);
        assert_eq!(released.pause, development.pause);
        // Built without a guest image, a release has no node installer: its tag stays.
        assert_eq!(released.runtime_installer, development.runtime_installer);
        let installer = "r.example/contrast/node-installer@sha256:89ab";
        let with_installer = images_of(Some(&release(&[
            ("coordinator", pinned),
            ("port-forwarder", forwarder),
            ("node-installer", installer),
        ])))
        .unwrap();
        assert_eq!(with_installer.runtime_installer, installer);
        let err = images_of(Some(&release(&[]))).unwrap_err();
        assert!(
            format!("{err:#}").contains("no coordinator image"),
            "{err:#}"
        );
    }
}
