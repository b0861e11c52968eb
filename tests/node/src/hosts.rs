//! Service names for `/etc/hosts`: every pod shares the host's loopback network, so every
//! Service's DNS names resolve to 127.0.0.1 (its targetPort must be what the process listens on).

use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use tokio::sync::watch;

/// Lists the Services every few seconds and publishes the `/etc/hosts` lines naming them.
pub async fn run(client: Client, tx: watch::Sender<String>) -> anyhow::Result<()> {
    let api: Api<Service> = Api::all(client);
    loop {
        match api.list(&ListParams::default()).await {
            Ok(list) => {
                let lines = service_lines(&list.items);
                tx.send_if_modified(|current| {
                    let changed = *current != lines;
                    *current = lines;
                    changed
                });
            }
            Err(error) => tracing::warn!("listing services: {error}"),
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
}

fn service_lines(services: &[Service]) -> String {
    let mut lines = String::new();
    for service in services {
        let (name, namespace) = (service.name_any(), service.namespace().unwrap_or_default());
        lines.push_str(&format!(
            "127.0.0.1\t{name}.{namespace}.svc.cluster.local {name}.{namespace}.svc {name}.{namespace} {name}\n"
        ));
    }
    lines
}

/// The `/etc/hosts` of a pod: localhost, the pod's own name, and every Service.
pub fn pod_hosts(hostname: &str, services: &str) -> String {
    format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.0.1\t{hostname}\n{services}"
    )
}
