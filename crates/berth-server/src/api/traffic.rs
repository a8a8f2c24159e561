//! Traffic routes: the split across serving revisions (`/traffic`), a running
//! rollout's promote and abort (`/rollout/*`), shadow traffic (`/mirror`), and
//! staging a revision without serving it (`POST /revisions`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use berth_api::{
    ErrorBody, MirrorDiffList, MirrorStatus, OperationAccepted, Revision, RolloutStatus,
    SetMirrorRequest, SetTrafficRequest, Traffic, TrafficShare,
};
use serde_json::Value;

use super::updates::{accepted, prepare_update};
use super::{ApiJson, AppState};
use crate::error::ApiError;
use crate::reconciler::MirrorFailure;

/// Each serving revision's weight, replicas and last-minute figures, the
/// running rollout and the mirror.
#[utoipa::path(get, path = "/v1/services/{name}/traffic", tag = "services",
    params(("name" = String, Path, description = "Service name")),
    responses((status = 200, body = Traffic), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn show_traffic(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Traffic>, ApiError> {
    let stored = state.services.service(&name).await?;
    Ok(Json(
        state.runtime.traffic(&name, stored.traffic.as_deref()),
    ))
}

/// The problems of a requested split, each naming the fix; the shares in
/// order (the heaviest first: it is the stable revision) when there are none.
pub fn check_split(
    request: &SetTrafficRequest,
    latest: u32,
) -> Result<Vec<TrafficShare>, Vec<String>> {
    use berth_api::traffic_split::{check_names, check_weights};
    let mut problems = check_weights(&request.weights);
    problems.extend(check_names(&request.names));
    let mut shares: Vec<TrafficShare> = Vec::new();
    for (key, &weight) in &request.weights {
        let Ok(revision) = key.parse::<u32>() else {
            continue;
        };
        if revision > latest {
            problems.push(format!(
                "`weights` names revision {revision}, which does not exist: the service has revisions 1 to {latest}"
            ));
        }
        shares.push(TrafficShare {
            revision,
            weight,
            role: String::new(),
            name: request.names.get(key).cloned(),
        });
    }
    if !request.weights.is_empty() && request.weights.values().all(|&w| w == 0) {
        problems.push("every weight is 0: at least one revision must take traffic".to_owned());
    }
    for key in request.names.keys() {
        if !request.weights.contains_key(key) {
            problems.push(format!(
                "`names` names revision `{key}`, which has no weight: name only revisions listed in `weights`"
            ));
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    shares.sort_by(|a, b| b.weight.cmp(&a.weight).then(b.revision.cmp(&a.revision)));
    Ok(shares)
}

/// Sets the split across revisions (an operation: revisions that do not run
/// get replicas first; revisions left out are drained). Weights sum to 100.
#[utoipa::path(put, path = "/v1/services/{name}/traffic", tag = "services",
    params(("name" = String, Path, description = "Service name")),
    request_body = SetTrafficRequest,
    responses((status = 202, body = OperationAccepted), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn set_traffic(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiJson(request): ApiJson<SetTrafficRequest>,
) -> Result<Response, ApiError> {
    let stored = state.services.service(&name).await?;
    let shares = check_split(&request, stored.latest_revision).map_err(ApiError::Invalid)?;
    let operation = state
        .services
        .start_traffic_change(
            &name,
            &uuid::Uuid::new_v4().to_string(),
            &shares,
            &crate::now_rfc3339(),
        )
        .await?;
    Ok(accepted(&state, operation, Vec::new()))
}

fn no_rollout(e: crate::reconciler::NoRollout) -> ApiError {
    ApiError::Conflict {
        hint: format!(
            "start one with `berth service update -n {} --strategy canary ...`",
            e.0
        ),
        message: e.to_string(),
    }
}

/// Skips the rest of the running rollout's bake: the candidate takes all traffic.
#[utoipa::path(post, path = "/v1/services/{name}/rollout/promote", tag = "services",
    params(("name" = String, Path, description = "Service name")),
    responses((status = 200, body = RolloutStatus), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn promote_rollout(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<RolloutStatus>, ApiError> {
    state.services.service(&name).await?;
    state.runtime.promote(&name).map(Json).map_err(no_rollout)
}

/// Rolls the running rollout back at once: traffic returns to the stable
/// revision, the candidate drains and stops, the operation ends `RolledBack`.
#[utoipa::path(post, path = "/v1/services/{name}/rollout/abort", tag = "services",
    params(("name" = String, Path, description = "Service name")),
    responses((status = 200, body = RolloutStatus), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn abort_rollout(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<RolloutStatus>, ApiError> {
    state.services.service(&name).await?;
    state.runtime.abort(&name).map(Json).map_err(no_rollout)
}

/// Copies `percent` of the service's requests to `revision` after the primary
/// answered (clients only ever get the primary's answer). A revision that
/// does not serve gets replicas of its own; any change to the service ends it.
#[utoipa::path(put, path = "/v1/services/{name}/mirror", tag = "services",
    params(("name" = String, Path, description = "Service name")),
    request_body = SetMirrorRequest,
    responses((status = 200, body = MirrorStatus), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn set_mirror(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiJson(request): ApiJson<SetMirrorRequest>,
) -> Result<Response, ApiError> {
    let stored = state.services.service(&name).await?;
    if request.percent == 0 {
        state.runtime.stop_mirror(&name).await;
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    if request.percent > 100 {
        return Err(ApiError::invalid(format!(
            "`percent` is {}: give 1–100 (0 stops mirroring)",
            request.percent
        )));
    }
    if request.revision == 0 || request.revision > stored.latest_revision {
        return Err(ApiError::invalid(format!(
            "`revision` is {}: the service has revisions 1 to {} (`berth service revisions -n {name}`)",
            request.revision, stored.latest_revision
        )));
    }
    if stored.serving_revision == Some(request.revision) && stored.traffic.is_none() {
        return Err(ApiError::invalid(format!(
            "revision {} serves all traffic already: mirror to another revision",
            request.revision
        )));
    }
    if let Some(op) = stored.last_operation.as_deref()
        && let Ok(current) = state.services.operation(op, u64::MAX).await
        && !current.state.is_terminal()
    {
        return Err(ApiError::Conflict {
            message: format!(
                "service `{name}` has operation `{op}` in progress; a mirror starts between changes"
            ),
            hint: format!("wait for it (`berth service wait -n {name}`), then start the mirror"),
        });
    }
    match state
        .runtime
        .start_mirror(&name, request.revision, request.percent)
        .await
    {
        Ok(status) => Ok(Json(status).into_response()),
        Err(MirrorFailure::NotServing(what)) => Err(ApiError::Conflict {
            message: format!("service `{what}` serves no revision"),
            hint: format!("deploy it (`berth service show -n {name}` tells its state)"),
        }),
        Err(MirrorFailure::Revision(message)) => Err(ApiError::invalid(message)),
        Err(e @ MirrorFailure::Start { .. }) => Err(ApiError::PreconditionFailed {
            message: e.to_string(),
            hint: format!("`berth service logs -n {name}` shows the replicas' output"),
        }),
        Err(MirrorFailure::Mirror(e)) => Err(ApiError::invalid(e.to_string())),
    }
}

/// Stops mirroring (and the replicas started for it).
#[utoipa::path(delete, path = "/v1/services/{name}/mirror", tag = "services",
    params(("name" = String, Path, description = "Service name")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn stop_mirror(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    state.services.service(&name).await?;
    if state.runtime.stop_mirror(&name).await {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::NotFound(format!(
            "service `{name}` mirrors nothing; `berth service mirror -n {name} --revision N --percent P` starts a mirror"
        )))
    }
}

/// The first 100 pairs of differing answers (primary vs shadow).
#[utoipa::path(get, path = "/v1/services/{name}/mirror/diffs", tag = "services",
    params(("name" = String, Path, description = "Service name")),
    responses((status = 200, body = MirrorDiffList), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn mirror_diffs(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<MirrorDiffList>, ApiError> {
    state.services.service(&name).await?;
    let value = state.runtime.mirror_diffs(&name).ok_or_else(|| {
        ApiError::NotFound(format!(
            "service `{name}` mirrors nothing; `berth service mirror -n {name} --revision N --percent P` starts a mirror"
        ))
    })?;
    Ok(Json(MirrorDiffList { value }))
}

/// Writes a new revision from an update body without serving it (a later
/// `PUT .../traffic` or rollback serves it). 409 while an operation runs.
#[utoipa::path(post, path = "/v1/services/{name}/revisions", tag = "services",
    params(("name" = String, Path, description = "Service name")),
    request_body(content = Object, description = "The same fields as an update (PATCH)"),
    responses((status = 201, body = Revision), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn stage_revision(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    let stored = state.services.service(&name).await?;
    let (change, _warnings) = prepare_update(&state, &name, body).await?;
    let spec = change.new_revision.ok_or_else(|| {
        ApiError::invalid("the body changes no revision setting: nothing to stage")
    })?;
    let now = crate::now_rfc3339();
    let number = state
        .services
        .stage_revision(&name, &spec, stored.latest_revision, &now)
        .await?;
    let location = format!("/v1/services/{name}/revisions");
    Ok((
        StatusCode::CREATED,
        [("location", location)],
        Json(Revision {
            revision: number,
            created_time: now,
            serving: false,
            spec,
        }),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(weights: &[(&str, u32)], names: &[(&str, &str)]) -> SetTrafficRequest {
        SetTrafficRequest {
            weights: weights.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
            names: names
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn a_valid_split_puts_the_heaviest_revision_first() {
        let shares = check_split(&request(&[("3", 10), ("4", 90)], &[("4", "blue")]), 4);
        let shares = shares.unwrap_or_default();
        assert_eq!(
            shares
                .iter()
                .map(|s| (s.revision, s.weight))
                .collect::<Vec<_>>(),
            vec![(4, 90), (3, 10)]
        );
        assert_eq!(shares[0].name.as_deref(), Some("blue"));
    }

    #[test]
    fn every_problem_of_a_split_is_named_with_its_fix() {
        type Case<'a> = (&'a [(&'a str, u32)], &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            (&[], &[], "`weights` is empty"),
            (&[("3", 90), ("4", 20)], &[], "sum to 110"),
            (&[("x", 100)], &[], "has the key `x`"),
            (&[("9", 100)], &[], "revision 9, which does not exist"),
            (&[("3", 150)], &[], "is 150: a weight is a percent"),
            (&[("3", 100)], &[("4", "b")], "`names` names revision `4`"),
            (
                &[("3", 50), ("4", 50)],
                &[("3", "a"), ("4", "a")],
                "given to revisions 3 and 4",
            ),
            (&[("3", 0), ("4", 0)], &[], "every weight is 0"),
        ];
        for (weights, names, expected) in cases {
            let problems = check_split(&request(weights, names), 4)
                .err()
                .unwrap_or_default();
            assert!(
                problems.iter().any(|p| p.contains(expected)),
                "{weights:?} {names:?}: {problems:?}"
            );
        }
    }
}
