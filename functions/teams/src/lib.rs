//! Teams function: teams under `/api/v1/teams` (issue 21): the caller's teams, members and
//! their roles, invitations and their acceptance, the team key wrapped for each member, and
//! the team's log, and the team's SSO settings (its own OpenID provider; the sign-in through it
//! is the auth function's). Every route runs behind authentication; anyone not a member of a team gets
//! 404 for every route of it, before any other check. Seats are billed by the billing function
//! and team spaces (records) are the storage function's; deleting a team ends its subscription
//! (adiuva-billing) and purges its space (adiuva-storage) before its rows go.

use adiuva_billing::Billing;
use adiuva_config::{ConfigError, Context};
#[cfg(feature = "openapi")]
use adiuva_http::ErrorBody;
use adiuva_http::paging;
use adiuva_http::{Function, Json, Path, Query, Result, Routes, routes};
use adiuva_pipeline::CurrentUser;
use adiuva_storage::Storage;
use adiuva_teams::{
    InvitationCreated, InvitationView, Member, NewInvitation, NewTeamKey, Sso, SsoUpdate, Team,
    TeamEvent, TeamKey, TeamRole, TeamSso, Teams,
};
use axum::extract::{FromRef, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use serde::{Deserialize, Serialize};

pub fn function(context: &Context) -> Result<Function, ConfigError> {
    let services = Services {
        teams: context.get()?,
        billing: context.get()?,
        storage: context.get()?,
        sso: context.get()?,
    };
    let routes = Routes::new()
        .routes(routes!(create_team).idempotent())
        .routes(routes!(list_teams))
        .routes(routes!(get_team))
        .routes(routes!(rename_team))
        .routes(routes!(delete_team))
        .routes(routes!(list_members))
        .routes(routes!(set_member_role))
        .routes(routes!(remove_member))
        .routes(routes!(transfer_ownership))
        .routes(routes!(invite).idempotent())
        .routes(routes!(list_invitations))
        .routes(routes!(revoke_invitation))
        .routes(routes!(accept_invitation))
        .routes(routes!(share_key))
        .routes(routes!(my_key))
        .routes(routes!(team_events))
        .routes(routes!(put_sso, get_sso, delete_sso))
        .with_state(services);
    adiuva_pipeline::authenticated("teams", routes, context)
}

/// What the routes share: the teams, and for a team's deletion its subscription and space.
#[derive(Debug, Clone)]
struct Services {
    teams: Teams,
    billing: Billing,
    storage: Storage,
    sso: Sso,
}

impl FromRef<Services> for Teams {
    fn from_ref(services: &Services) -> Self {
        services.teams.clone()
    }
}

impl FromRef<Services> for Sso {
    fn from_ref(services: &Services) -> Self {
        services.sso.clone()
    }
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TeamName {
    /// 1 to 100 characters (trimmed), no control characters.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 100))]
    pub name: String,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RoleChange {
    /// `admin` or `member` (ownership moves with `POST /teams/{id}/transfer`).
    pub role: TeamRole,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OwnershipTransfer {
    /// The member who becomes the owner.
    #[cfg_attr(feature = "openapi", schema(max_length = 64))]
    pub user_id: String,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InvitationAcceptance {
    /// The invitation's token: 64 lowercase hex digits.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[0-9a-f]{64}$"))]
    pub token: String,
}

#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TeamDeleted {
    /// The deleted team's id.
    pub id: String,
    pub ok: bool,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct TeamEventsQuery {
    /// The page after this cursor: the `X-Next-Cursor` of the page before. Without it, the
    /// newest page.
    #[cfg_attr(feature = "openapi", param(value_type = String, required = false, pattern = "^[0-9a-f]{1,256}$"))]
    pub cursor: Option<String>,
    /// Events per page, 1 to 200 (default 50).
    #[cfg_attr(feature = "openapi", param(value_type = i64, required = false, minimum = 1, maximum = 200))]
    pub limit: Option<u32>,
}

/// Creates a team; the caller is its owner. It has no seats until its subscription is paid
/// (`POST /billing/checkout` with its id).
#[adiuva_http::route(post, path = "/api/v1/teams", tag = "teams", request_body = TeamName,
    responses(
        (status = 201, description = "Created", body = Team),
        (status = 409, description = "The caller already owns 5 teams (`team_limit_reached`)", body = ErrorBody),
        (status = 422, description = "Invalid name (`invalid_team_name`)", body = ErrorBody),
    ))]
async fn create_team(
    State(teams): State<Teams>,
    CurrentUser(caller): CurrentUser,
    Json(body): Json<TeamName>,
) -> Result<(StatusCode, Json<Team>)> {
    let team = teams.create(&caller, &body.name).await?;
    Ok((StatusCode::CREATED, Json(team)))
}

/// The caller's teams, each with the caller's role.
#[adiuva_http::route(get, path = "/api/v1/teams", tag = "teams",
    responses(
        (status = 200, description = "The caller's teams, oldest membership first", body = Vec<Team>),
    ))]
async fn list_teams(
    State(teams): State<Teams>,
    CurrentUser(caller): CurrentUser,
) -> Result<Json<Vec<Team>>> {
    Ok(Json(teams.list(&caller).await?))
}

/// One of the caller's teams.
#[adiuva_http::route(get, path = "/api/v1/teams/{id}", tag = "teams",
    params(("id" = String, Path, description = "Team id")),
    responses(
        (status = 200, description = "The team", body = Team),
        (status = 404, description = "No such team of yours", body = ErrorBody),
    ))]
async fn get_team(
    State(teams): State<Teams>,
    CurrentUser(caller): CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<Team>> {
    Ok(Json(teams.get(&caller, &id).await?))
}

/// Renames the team (owner or admin).
#[adiuva_http::route(patch, path = "/api/v1/teams/{id}", tag = "teams", request_body = TeamName,
    params(("id" = String, Path, description = "Team id")),
    responses(
        (status = 200, description = "Renamed", body = Team),
        (status = 403, description = "A plain member (`team_admin_required`)", body = ErrorBody),
        (status = 404, description = "No such team of yours", body = ErrorBody),
        (status = 422, description = "Invalid name (`invalid_team_name`)", body = ErrorBody),
    ))]
async fn rename_team(
    State(teams): State<Teams>,
    CurrentUser(caller): CurrentUser,
    Path(id): Path<String>,
    Json(body): Json<TeamName>,
) -> Result<Json<Team>> {
    Ok(Json(teams.rename(&caller, &id, &body.name).await?))
}

/// Deletes the team (owner only) with its members, invitations, wrapped keys and log.
#[adiuva_http::route(delete, path = "/api/v1/teams/{id}", tag = "teams",
    params(("id" = String, Path, description = "Team id")),
    responses(
        (status = 200, description = "Deleted", body = TeamDeleted),
        (status = 403, description = "Not the owner (`team_owner_required`)", body = ErrorBody),
        (status = 404, description = "No such team of yours", body = ErrorBody),
        (status = 503, description = "Stripe or the database is unavailable; nothing was deleted", body = ErrorBody),
    ))]
async fn delete_team(
    State(services): State<Services>,
    CurrentUser(caller): CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<TeamDeleted>> {
    // Only the owner gets past this, and only then is anything ended: first the subscription
    // at Stripe (an error leaves the team as it was, so no card is charged for a team that is
    // gone), then the team space's records and blobs, then the rows (members, invitations,
    // keys, log). A failure halfway leaves a team the owner deletes again.
    if services.teams.membership(&id, &caller.id).await? == Some(TeamRole::Owner) {
        services.billing.cancel_team_subscription_now(&id).await?;
        services.storage.purge_team_space(&id).await?;
    }
    let deleted = services.teams.delete(&caller, &id).await?;
    Ok(Json(TeamDeleted {
        id: deleted.id,
        ok: true,
    }))
}

/// The team's members with their roles and public keys (any member).
#[adiuva_http::route(get, path = "/api/v1/teams/{id}/members", tag = "teams",
    params(("id" = String, Path, description = "Team id")),
    responses(
        (status = 200, description = "The members, oldest first", body = Vec<Member>),
        (status = 404, description = "No such team of yours", body = ErrorBody),
    ))]
async fn list_members(
    State(teams): State<Teams>,
    CurrentUser(caller): CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<Vec<Member>>> {
    Ok(Json(teams.members(&caller, &id).await?))
}

/// Makes a member an admin or a plain member (owner only).
#[adiuva_http::route(patch, path = "/api/v1/teams/{id}/members/{user_id}", tag = "teams",
    request_body = RoleChange,
    params(
        ("id" = String, Path, description = "Team id"),
        ("user_id" = String, Path, description = "The member's user id"),
    ),
    responses(
        (status = 200, description = "The member with the new role", body = Member),
        (status = 403, description = "Not the owner (`team_owner_required`)", body = ErrorBody),
        (status = 404, description = "No such team of yours, or no such member", body = ErrorBody),
        (status = 409, description = "The owner's own role (`owner_must_transfer`)", body = ErrorBody),
        (status = 422, description = "`owner` (`invalid_role`: use the transfer)", body = ErrorBody),
    ))]
async fn set_member_role(
    State(teams): State<Teams>,
    CurrentUser(caller): CurrentUser,
    Path((id, user_id)): Path<(String, String)>,
    Json(body): Json<RoleChange>,
) -> Result<Json<Member>> {
    Ok(Json(
        teams.set_role(&caller, &id, &user_id, body.role).await?,
    ))
}

/// Removes a member with their wrapped keys (owner or admin; not the owner), or leaves the
/// team (a member's own id). Takes effect at the member's next request.
#[adiuva_http::route(delete, path = "/api/v1/teams/{id}/members/{user_id}", tag = "teams",
    params(
        ("id" = String, Path, description = "Team id"),
        ("user_id" = String, Path, description = "The member's user id (your own: leave)"),
    ),
    responses(
        (status = 204, description = "Removed (or left)"),
        (status = 403, description = "A plain member removing someone else (`team_admin_required`), or anyone removing the owner (`cannot_remove_owner`)", body = ErrorBody),
        (status = 404, description = "No such team of yours, or no such member", body = ErrorBody),
        (status = 409, description = "The owner leaving (`owner_must_transfer`)", body = ErrorBody),
    ))]
async fn remove_member(
    State(teams): State<Teams>,
    CurrentUser(caller): CurrentUser,
    Path((id, user_id)): Path<(String, String)>,
) -> Result<StatusCode> {
    teams.remove_member(&caller, &id, &user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Makes another member the owner (owner only); the old owner becomes an admin.
#[adiuva_http::route(post, path = "/api/v1/teams/{id}/transfer", tag = "teams",
    request_body = OwnershipTransfer,
    params(("id" = String, Path, description = "Team id")),
    responses(
        (status = 200, description = "Transferred: the team as the old owner (now an admin) sees it", body = Team),
        (status = 403, description = "Not the owner (`team_owner_required`)", body = ErrorBody),
        (status = 404, description = "No such team of yours, or no such member", body = ErrorBody),
    ))]
async fn transfer_ownership(
    State(teams): State<Teams>,
    CurrentUser(caller): CurrentUser,
    Path(id): Path<String>,
    Json(body): Json<OwnershipTransfer>,
) -> Result<Json<Team>> {
    Ok(Json(teams.transfer(&caller, &id, &body.user_id).await?))
}

/// Invites an email address into the team (owner or admin). The answer carries the token,
/// once: send it to the invitee, who accepts it signed in with that email within 7 days.
#[adiuva_http::route(post, path = "/api/v1/teams/{id}/invitations", tag = "teams",
    request_body = NewInvitation,
    params(("id" = String, Path, description = "Team id")),
    responses(
        (status = 201, description = "Invited", body = InvitationCreated),
        (status = 402, description = "The team's subscription is not active (`team_inactive`)", body = ErrorBody),
        (status = 403, description = "A plain member (`team_admin_required`)", body = ErrorBody),
        (status = 404, description = "No such team of yours", body = ErrorBody),
        (status = 409, description = "Members and pending invitations fill the seats (`seats_exhausted`), or the email is a member's (`already_member`)", body = ErrorBody),
        (status = 422, description = "Invalid email (`invalid_email`) or role (`invalid_role`)", body = ErrorBody),
    ))]
async fn invite(
    State(teams): State<Teams>,
    CurrentUser(caller): CurrentUser,
    Path(id): Path<String>,
    Json(body): Json<NewInvitation>,
) -> Result<(StatusCode, Json<InvitationCreated>)> {
    let created = teams.invite(&caller, &id, &body).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// The team's invitations, newest first (at most 200), without their tokens (owner or admin).
#[adiuva_http::route(get, path = "/api/v1/teams/{id}/invitations", tag = "teams",
    params(("id" = String, Path, description = "Team id")),
    responses(
        (status = 200, description = "The invitations", body = Vec<InvitationView>),
        (status = 403, description = "A plain member (`team_admin_required`)", body = ErrorBody),
        (status = 404, description = "No such team of yours", body = ErrorBody),
    ))]
async fn list_invitations(
    State(teams): State<Teams>,
    CurrentUser(caller): CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<Vec<InvitationView>>> {
    Ok(Json(teams.invitations(&caller, &id).await?))
}

/// Revokes a pending invitation (owner or admin): its token stops working, its seat is free.
#[adiuva_http::route(delete, path = "/api/v1/teams/{id}/invitations/{invitation_id}", tag = "teams",
    params(
        ("id" = String, Path, description = "Team id"),
        ("invitation_id" = String, Path, description = "Invitation id"),
    ),
    responses(
        (status = 204, description = "Revoked"),
        (status = 403, description = "A plain member (`team_admin_required`)", body = ErrorBody),
        (status = 404, description = "No such team of yours, or no such pending invitation", body = ErrorBody),
    ))]
async fn revoke_invitation(
    State(teams): State<Teams>,
    CurrentUser(caller): CurrentUser,
    Path((id, invitation_id)): Path<(String, String)>,
) -> Result<StatusCode> {
    teams
        .revoke_invitation(&caller, &id, &invitation_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Accepts an invitation: the caller, signed in with the invitation's email, joins the team.
#[adiuva_http::route(post, path = "/api/v1/teams/invitations/accept", tag = "teams",
    request_body = InvitationAcceptance,
    responses(
        (status = 200, description = "Joined: the team", body = Team),
        (status = 402, description = "The team's subscription is no longer active (`team_inactive`)", body = ErrorBody),
        (status = 403, description = "The invitation is for another email (`invitation_email_mismatch`)", body = ErrorBody),
        (status = 404, description = "No invitation has this token", body = ErrorBody),
        (status = 409, description = "Already a member (`already_member`), or the members fill the seats (`seats_exhausted`)", body = ErrorBody),
        (status = 410, description = "Used, revoked or expired (`invitation_expired`)", body = ErrorBody),
    ))]
async fn accept_invitation(
    State(teams): State<Teams>,
    CurrentUser(caller): CurrentUser,
    Json(body): Json<InvitationAcceptance>,
) -> Result<Json<Team>> {
    Ok(Json(teams.accept(&caller, &body.token).await?))
}

/// Stores the team key wrapped (on the admin's device) with a member's public key (owner or
/// admin). Replaces the one before.
#[adiuva_http::route(put, path = "/api/v1/teams/{id}/keys/{user_id}", tag = "teams",
    request_body = NewTeamKey,
    params(
        ("id" = String, Path, description = "Team id"),
        ("user_id" = String, Path, description = "The member the key is wrapped for"),
    ),
    responses(
        (status = 200, description = "Stored", body = TeamKey),
        (status = 403, description = "A plain member (`team_admin_required`)", body = ErrorBody),
        (status = 404, description = "No such team of yours, or the user is not a member", body = ErrorBody),
        (status = 422, description = "Not base64 or over 4 KiB (`invalid_wrapped_key`), or a key_version below 1", body = ErrorBody),
    ))]
async fn share_key(
    State(teams): State<Teams>,
    CurrentUser(caller): CurrentUser,
    Path((id, user_id)): Path<(String, String)>,
    Json(body): Json<NewTeamKey>,
) -> Result<Json<TeamKey>> {
    Ok(Json(teams.share_key(&caller, &id, &user_id, &body).await?))
}

/// The team key as wrapped for the caller, to unwrap on their device with their private key.
#[adiuva_http::route(get, path = "/api/v1/teams/{id}/keys/me", tag = "teams",
    params(("id" = String, Path, description = "Team id")),
    responses(
        (status = 200, description = "The wrapped key", body = TeamKey),
        (status = 404, description = "No such team of yours, or no key wrapped for you yet (`key_not_shared`)", body = ErrorBody),
    ))]
async fn my_key(
    State(teams): State<Teams>,
    CurrentUser(caller): CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<TeamKey>> {
    Ok(Json(teams.my_key(&caller, &id).await?))
}

/// The team's log (owner or admin), newest first, a page at a time: when more follow, the next
/// page's cursor is in `X-Next-Cursor` and `Link` (`rel="next"`).
#[adiuva_http::route(get, path = "/api/v1/teams/{id}/events", tag = "teams",
    params(("id" = String, Path, description = "Team id"), TeamEventsQuery),
    responses(
        (status = 200, description = "A page of the log", body = Vec<TeamEvent>, headers(
            ("X-Next-Cursor" = String, description = "The `cursor` of the next page; absent on the last"),
            ("Link" = String, description = "`<the next page>; rel=\"next\"`; absent on the last"),
        )),
        (status = 403, description = "A plain member (`team_admin_required`)", body = ErrorBody),
        (status = 404, description = "No such team of yours", body = ErrorBody),
        (status = 422, description = "Invalid cursor or limit", body = ErrorBody),
    ))]
async fn team_events(
    State(teams): State<Teams>,
    CurrentUser(caller): CurrentUser,
    Path(id): Path<String>,
    uri: Uri,
    Query(query): Query<TeamEventsQuery>,
) -> Result<(HeaderMap, Json<Vec<TeamEvent>>)> {
    // The limit is checked after the membership (a non-member gets 404 whatever it sends).
    let page = teams
        .events(
            &caller,
            &id,
            query.cursor.as_deref(),
            query.limit.unwrap_or(50),
        )
        .await?;
    Ok((
        paging::next_page(&uri, page.next.as_deref()),
        Json(page.items),
    ))
}

/// Sets the team's SSO: its own OpenID provider (owner only). Members then sign in with
/// `POST /auth/oidc/start {team_id}`; a new identity of one of `domains` creates its account
/// and joins the team while a seat is free; with `required`, members of those domains (the
/// owner excepted) cannot sign in with a password. The client secret is stored encrypted and
/// never answered.
#[adiuva_http::route(put, path = "/api/v1/teams/{id}/sso", tag = "teams", request_body = SsoUpdate,
    params(("id" = String, Path, description = "Team id")),
    responses(
        (status = 200, description = "Set (the settings without the secret)", body = TeamSso),
        (status = 402, description = "The team's subscription is not active (`team_inactive`)", body = ErrorBody),
        (status = 403, description = "Not the owner (`team_owner_required`)", body = ErrorBody),
        (status = 404, description = "No such team of yours", body = ErrorBody),
        (status = 422, description = "Invalid issuer (`invalid_issuer`), client id or secret (`invalid_client`), or domains (`invalid_domains`)", body = ErrorBody),
        (status = 503, description = "The server has no `SSO_SECRET_KEY` (`sso_secret_key_missing`), or the database is unavailable", body = ErrorBody),
    ))]
async fn put_sso(
    State(sso): State<Sso>,
    CurrentUser(caller): CurrentUser,
    Path(id): Path<String>,
    Json(body): Json<SsoUpdate>,
) -> Result<Json<TeamSso>> {
    Ok(Json(sso.put(&caller, &id, &body).await?))
}

/// The team's SSO settings, never the client secret (owner or admin).
#[adiuva_http::route(get, path = "/api/v1/teams/{id}/sso", tag = "teams",
    params(("id" = String, Path, description = "Team id")),
    responses(
        (status = 200, description = "The settings without the secret", body = TeamSso),
        (status = 403, description = "A plain member (`team_admin_required`)", body = ErrorBody),
        (status = 404, description = "No such team of yours, or it has no SSO (`sso_not_found`)", body = ErrorBody),
    ))]
async fn get_sso(
    State(sso): State<Sso>,
    CurrentUser(caller): CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<TeamSso>> {
    Ok(Json(sso.get(&caller, &id).await?))
}

/// Removes the team's SSO (owner only). The accounts and memberships its sign-ins created
/// stay; sign-ins through the team's provider stop.
#[adiuva_http::route(delete, path = "/api/v1/teams/{id}/sso", tag = "teams",
    params(("id" = String, Path, description = "Team id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 403, description = "Not the owner (`team_owner_required`)", body = ErrorBody),
        (status = 404, description = "No such team of yours, or it has no SSO (`sso_not_found`)", body = ErrorBody),
    ))]
async fn delete_sso(
    State(sso): State<Sso>,
    CurrentUser(caller): CurrentUser,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    sso.delete(&caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
