//! Every manifest under `examples/` is accepted by the real API server: the
//! namespaces they use are created, then each object is sent as a server-side
//! apply with `dryRun=All` (so nothing else is stored).

mod common;

use common::ControlPlane;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use serde::Deserialize;

fn example_objects() -> Vec<(String, GroupVersionKind, DynamicObject)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("examples/ exists")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).expect("readable example");
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v = serde_yaml::Value::deserialize(doc).expect("valid YAML");
            if v.is_null() {
                continue;
            }
            let obj: DynamicObject = serde_yaml::from_value(v).expect("a Kubernetes object");
            let gvk = GroupVersionKind::try_from(obj.types.as_ref().expect("apiVersion/kind"))
                .expect("valid apiVersion");
            out.push((
                f.file_name().unwrap().to_string_lossy().into_owned(),
                gvk,
                obj,
            ));
        }
    }
    out
}

/// The examples a user copies must be valid objects for Kubernetes 1.33.
#[tokio::test(flavor = "multi_thread")]
async fn every_example_passes_a_server_side_dry_run() {
    let cp = ControlPlane::shared();
    cp.apply_crds().await;
    let client = cp.admin_client().await;
    let objects = example_objects();
    assert!(
        objects.len() >= 5,
        "expected the example manifests, found {}",
        objects.len()
    );

    // Namespaces are created for real (a dry-run namespace cannot hold a dry-run object).
    let ns_api: Api<Namespace> = Api::all(client.clone());
    let mut namespaces: Vec<String> = objects
        .iter()
        .filter_map(|(_, _, o)| o.metadata.namespace.clone())
        .collect();
    namespaces.sort();
    namespaces.dedup();
    for ns in &namespaces {
        let obj: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": ns}})).unwrap();
        match ns_api.create(&PostParams::default(), &obj).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => panic!("cannot create namespace {ns}: {e}"),
        }
    }

    let params = PatchParams::apply("examples-test").dry_run();
    let mut checked = Vec::new();
    for (file, gvk, obj) in &objects {
        let (resource, caps) = kube::discovery::pinned_kind(&client, gvk)
            .await
            .unwrap_or_else(|e| panic!("{file}: kind {} not served: {e}", gvk.kind));
        let api: Api<DynamicObject> = if caps.scope == kube::discovery::Scope::Namespaced {
            let ns = obj
                .metadata
                .namespace
                .as_deref()
                .expect("namespaced example names its namespace");
            Api::namespaced_with(client.clone(), ns, &resource)
        } else {
            Api::all_with(client.clone(), &resource)
        };
        let name = obj.metadata.name.clone().expect("named");
        api.patch(&name, &params, &Patch::Apply(obj))
            .await
            .unwrap_or_else(|e| {
                panic!("{file}: {} {name} refused by the API server: {e}", gvk.kind)
            });
        checked.push(format!("{file}: {}/{name}", gvk.kind));
    }
    println!(
        "accepted by server-side dry run:\n  {}",
        checked.join("\n  ")
    );
    for kind in ["Deployment", "TracingRelation", "ConfigMap", "Service"] {
        assert!(
            objects.iter().any(|(_, g, _)| g.kind == kind),
            "examples/ should contain a {kind}"
        );
    }
}
