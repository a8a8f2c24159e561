//! Resolving a model reference (`name`, `name:version`, `name:latest`,
//! `name@alias`, `name@latest`) to a registered version: the one place every
//! route, the follower and the CLI-facing answers go through.

use berth_api::Model;
use berth_api::names::{LATEST_ALIAS, ModelRef};

use crate::store::{Store, StoreError};

/// The version `reference` names now.
pub async fn resolve(store: &dyn Store, reference: &ModelRef) -> Result<Model, StoreError> {
    match reference.alias.as_deref() {
        None | Some(LATEST_ALIAS) => store.model(&reference.name, reference.version).await,
        Some(alias) => {
            let version = store.alias_version(&reference.name, alias).await?;
            store.model(&reference.name, Some(version)).await
        }
    }
}

/// A list of references resolved to `name:version` ids, and the references as
/// asked (kept on the revision only when one of them follows an alias).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    /// `name:version`, in the order given.
    pub models: Vec<String>,
    /// The references as written, one per model, or empty when none follows.
    pub references: Vec<String>,
}

/// Resolves every reference, adding one problem per bad reference (naming it
/// and the fix) to `problems`.
pub async fn resolve_all(
    store: &dyn Store,
    references: &[String],
    problems: &mut Vec<String>,
) -> Resolved {
    let mut out = Resolved::default();
    let mut any_follows = false;
    for text in references {
        let parsed = match ModelRef::parse(text) {
            Ok(parsed) => parsed,
            Err(e) => {
                problems.push(e);
                continue;
            }
        };
        match resolve(store, &parsed).await {
            Ok(model) if out.models.contains(&model.id) => {
                problems.push(format!("model `{}` is listed twice", model.id));
            }
            Ok(model) => {
                any_follows |= parsed.follows();
                out.models.push(model.id);
                out.references.push(parsed.to_string());
            }
            Err(StoreError::ModelNotFound(id)) => problems.push(format!(
                "model `{id}` not found; `berth model list` shows the registered models"
            )),
            Err(StoreError::AliasNotFound { name, alias }) => problems.push(format!(
                "model reference `{text}`: `{name}` has no alias `{alias}`; set it with `berth model alias set {name} {alias} VERSION`, or `berth model alias list {name}` shows its aliases"
            )),
            Err(e) => problems.push(e.to_string()),
        }
    }
    if !any_follows {
        out.references.clear();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;

    #[tokio::test]
    async fn references_resolve_versions_aliases_and_latest() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("r.db")).await.unwrap();
        for i in 0..3 {
            store
                .insert_model(crate::store::test_model("m", &format!("sha256:{i:02}")))
                .await
                .unwrap();
        }
        store
            .set_alias("m", "champion", 2, "t", Vec::new())
            .await
            .unwrap();
        let mut problems = Vec::new();
        let refs: Vec<String> = ["m@champion"].iter().map(|s| s.to_string()).collect();
        let got = resolve_all(&store, &refs, &mut problems).await;
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(got.models, vec!["m:2"]);
        assert_eq!(got.references, vec!["m@champion"]);
        let got = resolve_all(&store, &["m@latest".into()], &mut problems).await;
        assert_eq!(
            (got.models, got.references),
            (vec!["m:3".to_owned()], vec!["m@latest".to_owned()])
        );
        // Plain references are not recorded: nothing follows.
        let got = resolve_all(&store, &["m:1".into(), "m".into()], &mut problems).await;
        assert_eq!(got.models, vec!["m:1", "m:3"]);
        assert!(got.references.is_empty());
        assert!(problems.is_empty(), "{problems:?}");
        resolve_all(
            &store,
            &["m@nope".into(), "m@champion".into(), "m:2".into()],
            &mut problems,
        )
        .await;
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].contains("has no alias `nope`") && problems[0].contains("alias set m nope")
        );
        assert!(
            problems[1].contains("`m:2` is listed twice"),
            "{problems:?}"
        );
    }
}
