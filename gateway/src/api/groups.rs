//! Groups over HTTP: create, invite, join, leave, remove, roles. Who may do
//! what is `parley_core::groups`; this module checks it and acts. In Kafka
//! mode a change of membership goes to the group topic with the group's key
//! and takes effect when the storage consumer reaches it (202 Accepted),
//! ordered with the group's messages; invitations and roles are written at
//! once in both modes.
//!
//! A group the caller may not see (unknown, or one they are not in) gets
//! the same 404 whatever the reason, so ids cannot be probed.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use parley_adapters::store::{Group, Invitation, Joined, Membership, NewGroup};
use parley_core::event::{MembershipData, MessageEvent};
use parley_core::groups::{self, History, Refusal, Role};
use parley_core::ids::{self, ConversationId};
use parley_core::time::now_millis;
use serde::{Deserialize, Serialize};

use super::ApiResult;
use crate::api_error::{ApiError, codes};
use crate::auth::AuthUser;
use crate::state::AppState;

const MAX_GROUP_NAME_CHARS: usize = 100;

/// The answer for a group the caller may not see or act on as a member.
fn unseen(id: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, codes::NOT_FOUND, format!("no group {id} with you as a member"))
}

fn refused(why: Refusal) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, codes::FORBIDDEN, why)
}

fn valid_group(id: &str) -> ApiResult<()> {
    ids::validate_group_id(id).map_err(ApiError::bad_request)
}

fn valid_user(user: &str) -> ApiResult<()> {
    ids::validate_user_id(user).map_err(|e| ApiError::bad_request(format!("user `{user}`: {e}")))
}

/// The caller's standing in `id`, or the 404 every outsider gets.
async fn standing(state: &AppState, id: &str, user: &str) -> ApiResult<Membership> {
    state.store.membership(id, user).await?.ok_or_else(|| unseen(id))
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
    /// Invited: each becomes a member by joining.
    #[serde(default)]
    members: Vec<String>,
    /// Anyone may join (default: invitation only).
    #[serde(default)]
    open: bool,
    #[serde(default)]
    history: History,
}

#[derive(Serialize)]
pub struct Created {
    #[serde(flatten)]
    group: Group,
    invited: Vec<String>,
}

pub async fn create_group(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    body: Result<Json<CreateGroup>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Created>)> {
    let Json(req) = body?;
    let id = match req.id {
        Some(id) => id,
        None => uuid::Uuid::now_v7().simple().to_string(),
    };
    valid_group(&id)?;
    let name = ids::validate_display_name(&req.name, MAX_GROUP_NAME_CHARS).map_err(ApiError::bad_request)?;
    let mut invited: Vec<String> = req.members.into_iter().filter(|m| *m != user).collect();
    invited.sort();
    invited.dedup();
    // The creator is a member too; invitations count as members, so a
    // group never outgrows the cap by accepting them.
    let max_members = state.session.user.max_group_members;
    if invited.len() + 1 > max_members {
        return Err(ApiError::bad_request(format!("a group has at most {max_members} members, its creator included")));
    }
    for m in &invited {
        valid_user(m)?;
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
    let new = NewGroup { open: req.open, history: req.history, invited, ..NewGroup::new(&id, name, &user) };
    let group = state.store.create_group(&new).await?;
    state.rosters.forget(&id);
    Ok((StatusCode::CREATED, Json(Created { group, invited: new.invited })))
}

#[derive(Serialize)]
pub struct Members {
    group: String,
    owner: Option<String>,
    admins: Vec<String>,
    /// Everyone, owner and admins included, in name order.
    members: Vec<String>,
}

pub async fn members(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Json<Members>> {
    valid_group(&id)?;
    let roster = state.store.roster(&id).await?;
    if !roster.iter().any(|m| m.user == user) {
        return Err(unseen(&id));
    }
    let with = |role: Role| roster.iter().filter(move |m| m.role == role).map(|m| m.user.clone());
    Ok(Json(Members {
        group: id,
        owner: with(Role::Owner).next(),
        admins: with(Role::Admin).collect(),
        members: roster.iter().map(|m| m.user.clone()).collect(),
    }))
}

pub async fn join(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    valid_group(&id)?;
    // Unknown and closed-without-invitation read the same.
    let closed = || ApiError::new(StatusCode::NOT_FOUND, codes::NOT_FOUND, format!("no group {id} you may join"));
    let Some(group) = state.store.group(&id).await? else {
        return Err(closed());
    };
    let members = state.store.members(&id).await?;
    if members.contains(&user) {
        return Ok(StatusCode::NO_CONTENT);
    }
    let invited = state.store.invitations_of(&user).await?.iter().any(|i| i.group == id);
    groups::may_join(group.open, invited).map_err(|_| closed())?;
    let max = state.session.user.max_group_members;
    // In Kafka mode joins on their way through the group topic are not
    // counted yet, so a burst of joins can pass the cap by as many.
    if members.len() >= max {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            codes::CONFLICT,
            format!("group {id} is full ({max} members)"),
        ));
    }
    if state.membership_via_broker {
        publish_membership(&state, MembershipData { group_id: id, user, joined: true, by: None }).await?;
        return Ok(StatusCode::ACCEPTED);
    }
    let joined = state.store.join_group(&id, &user).await;
    state.rosters.forget(&id);
    match joined {
        Ok(Joined::Joined | Joined::AlreadyMember) => Ok(StatusCode::NO_CONTENT),
        // The invitation was withdrawn, or the group went, in between.
        Ok(Joined::NotInvited) | Err(parley_adapters::Error::NotFound(_)) => Err(closed()),
        Err(e) => Err(e.into()),
    }
}

async fn publish_membership(state: &AppState, data: MembershipData) -> ApiResult<()> {
    let event = MessageEvent::membership(&data, now_millis())?;
    let key = ConversationId::group(&data.group_id).to_string();
    state.broker.publish(&state.topics.group_messages, &key, event.to_bytes()?).await?;
    Ok(())
}

pub async fn leave(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    valid_group(&id)?;
    remove_member(&state, &id, &user, None).await
}

/// Take `user` out of `id`, by `by` when someone else removes them.
async fn remove_member(state: &AppState, id: &str, user: &str, by: Option<&str>) -> ApiResult<StatusCode> {
    state.membership.forget(id, user);
    if state.membership_via_broker {
        if !state.store.is_member(id, user).await? {
            return Err(ApiError::new(StatusCode::NOT_FOUND, codes::NOT_FOUND, format!("{user} is not in group {id}")));
        }
        let data =
            MembershipData { group_id: id.to_owned(), user: user.to_owned(), joined: false, by: by.map(str::to_owned) };
        publish_membership(state, data).await?;
        return Ok(StatusCode::ACCEPTED);
    }
    let left = state.store.leave_group(id, user).await;
    state.rosters.forget(id);
    if left? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(StatusCode::NOT_FOUND, codes::NOT_FOUND, format!("{user} is not in group {id}")))
    }
}

/// `DELETE /api/groups/{id}/members/{user}`: an admin removes a member (or
/// withdraws an invitation); a member naming themself leaves.
pub async fn remove(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    Path((id, user)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    valid_group(&id)?;
    valid_user(&user)?;
    let mine = standing(&state, &id, &me).await?;
    if user == me {
        return remove_member(&state, &id, &user, None).await;
    }
    let Some(theirs) = state.store.membership(&id, &user).await? else {
        // Not a member: withdraw a pending invitation, which admins may.
        groups::may_invite(mine.role).map_err(refused)?;
        return if state.store.decline(&id, &user).await? {
            Ok(StatusCode::NO_CONTENT)
        } else {
            Err(ApiError::new(StatusCode::NOT_FOUND, codes::NOT_FOUND, format!("{user} is not in group {id}")))
        };
    };
    groups::may_remove(mine.role, theirs.role).map_err(refused)?;
    remove_member(&state, &id, &user, Some(&me)).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InviteRequest {
    user: String,
}

/// `POST /api/groups/{id}/invites {"user"}`: admins and the owner invite.
pub async fn invite(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
    body: Result<Json<InviteRequest>, JsonRejection>,
) -> ApiResult<StatusCode> {
    valid_group(&id)?;
    let Json(req) = body?;
    valid_user(&req.user)?;
    let mine = standing(&state, &id, &me).await?;
    groups::may_invite(mine.role).map_err(refused)?;
    let max = state.session.user.max_group_members;
    if state.store.members(&id).await?.len() >= max {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            codes::CONFLICT,
            format!("group {id} is full ({max} members)"),
        ));
    }
    if state.store.invite(&id, &req.user, &me).await? {
        Ok(StatusCode::CREATED)
    } else {
        Err(ApiError::new(
            StatusCode::CONFLICT,
            codes::CONFLICT,
            format!("{} is a member of group {id} already", req.user),
        ))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleRequest {
    role: Role,
}

/// `PUT /api/groups/{id}/members/{user}/role {"role": "admin"|"member"}`:
/// the owner names and removes admins.
pub async fn set_role(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    Path((id, user)): Path<(String, String)>,
    body: Result<Json<RoleRequest>, JsonRejection>,
) -> ApiResult<StatusCode> {
    valid_group(&id)?;
    valid_user(&user)?;
    let Json(req) = body?;
    let mine = standing(&state, &id, &me).await?;
    let Some(theirs) = state.store.membership(&id, &user).await? else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, codes::NOT_FOUND, format!("{user} is not in group {id}")));
    };
    groups::may_set_role(mine.role, theirs.role, req.role).map_err(refused)?;
    state.store.set_role(&id, &user, req.role).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/invites`: the caller's pending invitations.
pub async fn invitations(State(state): State<AppState>, AuthUser(user): AuthUser) -> ApiResult<Json<Vec<Invitation>>> {
    Ok(Json(state.store.invitations_of(&user).await?))
}

/// `POST /api/groups/{id}/decline`: turn an invitation down.
pub async fn decline(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    valid_group(&id)?;
    if state.store.decline(&id, &user).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(StatusCode::NOT_FOUND, codes::NOT_FOUND, format!("no invitation to group {id}")))
    }
}
