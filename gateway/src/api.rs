//! HTTP API: groups, conversations, dev log-in, metrics. Errors are JSON
//! `{code, reason}` with a matching status.

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use parley_adapters::store::{ConversationSummary, Group};
use parley_core::event::{MembershipData, MessageEvent};
use parley_core::ids::{self, ConversationId};
use parley_core::time::now_millis;
use serde::{Deserialize, Serialize};

use crate::api_error::{ApiError, codes};
use crate::auth::AuthUser;
use crate::state::AppState;

/// Lifetime of tokens minted by the dev log-in.
const DEV_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);
const MAX_GROUP_NAME_CHARS: usize = 100;

type ApiResult<T> = Result<T, ApiError>;

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut text = state.metrics.encode();
    if let Some(extra) = &state.extra_metrics {
        text = crate::metrics::join_exposition(text, &extra());
    }
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text)
}

#[derive(Serialize)]
pub struct Me {
    user: String,
}

pub async fn me(AuthUser(user): AuthUser) -> Json<Me> {
    Json(Me { user })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevTokenRequest {
    user: String,
}

#[derive(Serialize)]
pub struct TokenResponse {
    token: String,
}

/// Mint a token for any name: the browser page's log-in in standalone mode.
pub async fn dev_token(
    State(state): State<AppState>,
    body: Result<Json<DevTokenRequest>, JsonRejection>,
) -> ApiResult<Json<TokenResponse>> {
    if !state.dev_login {
        return Err(ApiError::new(StatusCode::NOT_FOUND, codes::NOT_FOUND, "dev log-in is disabled"));
    }
    let Json(req) = body?;
    ids::validate_user_id(&req.user).map_err(ApiError::bad_request)?;
    let token = state.auth.mint(&req.user, DEV_TOKEN_TTL).map_err(ApiError::bad_request)?;
    Ok(Json(TokenResponse { token }))
}

pub async fn conversations(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
) -> ApiResult<Json<Vec<ConversationSummary>>> {
    Ok(Json(state.store.conversations_of(&user).await?))
}

pub async fn my_groups(State(state): State<AppState>, AuthUser(user): AuthUser) -> ApiResult<Json<Vec<Group>>> {
    let mut groups = Vec::new();
    for summary in state.store.conversations_of(&user).await? {
        if let Some(id) = summary.conversation.group_id()
            && let Some(group) = state.store.group(id).await?
        {
            groups.push(group);
        }
    }
    Ok(Json(groups))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateGroup {
    /// Chosen id; generated when absent.
    id: Option<String>,
    name: String,
    #[serde(default)]
    members: Vec<String>,
}

pub async fn create_group(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    body: Result<Json<CreateGroup>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Group>)> {
    let Json(req) = body?;
    let id = match req.id {
        Some(id) => id,
        None => uuid::Uuid::now_v7().simple().to_string(),
    };
    ids::validate_group_id(&id).map_err(ApiError::bad_request)?;
    let name = ids::validate_display_name(&req.name, MAX_GROUP_NAME_CHARS).map_err(ApiError::bad_request)?;
    // The creator is a member too.
    let max_members = state.session.user.max_group_members;
    if req.members.iter().filter(|m| **m != user).count() + 1 > max_members {
        return Err(ApiError::bad_request(format!("a group has at most {max_members} members, its creator included")));
    }
    for m in &req.members {
        ids::validate_user_id(m).map_err(|e| ApiError::bad_request(format!("member `{m}`: {e}")))?;
    }
    // Counted once the request is sound: a refused request costs nothing.
    if !state.users.group_creation(&user) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            codes::RATE_LIMITED,
            format!(
                "too many groups created by this user; at most {} per hour",
                state.session.user.group_creations_per_hour
            ),
        ));
    }
    let group = state.store.create_group(&id, name, &user, &req.members).await?;
    Ok((StatusCode::CREATED, Json(group)))
}

#[derive(Serialize)]
pub struct Members {
    group: String,
    members: Vec<String>,
}

pub async fn members(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Json<Members>> {
    ids::validate_group_id(&id).map_err(ApiError::bad_request)?;
    let members = state.store.members(&id).await?;
    // An unknown group and one the user is not in get the same answer, so
    // the endpoint does not tell which ids exist.
    if !members.contains(&user) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            codes::NOT_FOUND,
            format!("no group {id} with you as a member"),
        ));
    }
    Ok(Json(Members { group: id, members }))
}

pub async fn join(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    ids::validate_group_id(&id).map_err(ApiError::bad_request)?;
    let members = state.store.members(&id).await?;
    let max = state.session.user.max_group_members;
    // In Kafka mode joins on their way through the group topic are not
    // counted yet, so a burst of joins can pass the cap by as many.
    if members.len() >= max && !members.contains(&user) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            codes::CONFLICT,
            format!("group {id} is full ({max} members)"),
        ));
    }
    if state.membership_via_broker {
        if state.store.group(&id).await?.is_none() {
            return Err(ApiError::new(StatusCode::NOT_FOUND, codes::NOT_FOUND, format!("group {id}")));
        }
        publish_membership(&state, &id, &user, true).await?;
        return Ok(StatusCode::ACCEPTED);
    }
    state.store.join_group(&id, &user).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Kafka mode: the change goes to the group topic with the group's key and
/// takes effect when the storage consumer reaches it (202 Accepted).
async fn publish_membership(state: &AppState, group: &str, user: &str, joined: bool) -> ApiResult<()> {
    let data = MembershipData { group_id: group.to_owned(), user: user.to_owned(), joined };
    let event = MessageEvent::membership(&data, now_millis())?;
    let key = ConversationId::group(group).to_string();
    state.broker.publish(&state.topics.group_messages, &key, event.to_bytes()?).await?;
    Ok(())
}

pub async fn leave(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    ids::validate_group_id(&id).map_err(ApiError::bad_request)?;
    state.membership.forget(&id, &user);
    if state.membership_via_broker {
        if !state.store.is_member(&id, &user).await? {
            return Err(ApiError::new(StatusCode::NOT_FOUND, codes::NOT_FOUND, format!("not a member of group {id}")));
        }
        publish_membership(&state, &id, &user, false).await?;
        return Ok(StatusCode::ACCEPTED);
    }
    if state.store.leave_group(&id, &user).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(StatusCode::NOT_FOUND, codes::NOT_FOUND, format!("not a member of group {id}")))
    }
}
