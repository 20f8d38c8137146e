//! RBAC for test identities: rules, and a Role or ClusterRole bound to a
//! ServiceAccount in one call.

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use kube::api::{Api, ObjectMeta};

use super::fixtures::create;

/// A rule granting `verbs` on `resources` of API `groups` (`""`: the core group).
pub fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
    let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    PolicyRule {
        api_groups: Some(owned(groups)),
        resources: Some(owned(resources)),
        verbs: owned(verbs),
        ..PolicyRule::default()
    }
}

fn named(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        ..ObjectMeta::default()
    }
}

/// ServiceAccount `ns/name` as an RBAC subject.
pub fn service_account(ns: &str, name: &str) -> Subject {
    Subject {
        kind: "ServiceAccount".into(),
        name: name.into(),
        namespace: Some(ns.into()),
        ..Subject::default()
    }
}

/// Group `name` as an RBAC subject.
pub fn group(name: &str) -> Subject {
    Subject {
        kind: "Group".into(),
        name: name.into(),
        api_group: Some("rbac.authorization.k8s.io".into()),
        ..Subject::default()
    }
}

/// `roleRef` to the `kind` (`Role` or `ClusterRole`) named `name`.
fn role_ref(kind: &str, name: &str) -> RoleRef {
    RoleRef {
        api_group: "rbac.authorization.k8s.io".into(),
        kind: kind.into(),
        name: name.into(),
    }
}

/// Creates Role `name` with `rules` in namespace `ns` and a RoleBinding of the
/// same name granting it to ServiceAccount `sa_ns/sa`.
pub async fn grant_role(
    admin: &kube::Client,
    ns: &str,
    name: &str,
    rules: Vec<PolicyRule>,
    (sa_ns, sa): (&str, &str),
) {
    grant_role_to(admin, ns, name, rules, service_account(sa_ns, sa)).await;
}

/// Creates Role `name` with `rules` in namespace `ns` and a RoleBinding of the
/// same name granting it to `subject`.
pub async fn grant_role_to(
    admin: &kube::Client,
    ns: &str,
    name: &str,
    rules: Vec<PolicyRule>,
    subject: Subject,
) {
    let role = Role {
        metadata: named(name),
        rules: Some(rules),
    };
    create(&Api::<Role>::namespaced(admin.clone(), ns), &role).await;
    let binding = RoleBinding {
        metadata: named(name),
        role_ref: role_ref("Role", name),
        subjects: Some(vec![subject]),
    };
    create(&Api::<RoleBinding>::namespaced(admin.clone(), ns), &binding).await;
}

/// Creates ClusterRole `name` with `rules` and a ClusterRoleBinding of the same
/// name granting it to ServiceAccount `sa_ns/sa`.
pub async fn grant_cluster_role(
    admin: &kube::Client,
    name: &str,
    rules: Vec<PolicyRule>,
    (sa_ns, sa): (&str, &str),
) {
    let (role_ref, subjects) = (
        role_ref("ClusterRole", name),
        Some(vec![service_account(sa_ns, sa)]),
    );
    let (roles, bindings) = (Api::all(admin.clone()), Api::all(admin.clone()));
    let role = ClusterRole {
        rules: Some(rules),
        metadata: named(name),
        ..ClusterRole::default()
    };
    create(&roles, &role).await;
    let metadata = named(name);
    create(
        &bindings,
        &ClusterRoleBinding {
            metadata,
            role_ref,
            subjects,
        },
    )
    .await;
}
