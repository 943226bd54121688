//! Teams (issue 21): the role matrix of every team route, the invitation rules and the race for
//! the last seat, the effective tier of members, wrapped keys and public keys, the team log,
//! and what deleting an account or a team removes.
//!
//! Billing per seat is the billing function's: here a team is made active by writing
//! `teams.status = 'active'` and `teams.seats` directly ([`activate_team`]), standing in for a
//! paid checkout and its webhook.

use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};

use crate::backend_tests;
use crate::harness::{Backend, TestApp, TestUser, Tokens, error_body, spawn_app, spawn_app_with};

backend_tests!(
    teams_are_created_listed_renamed_and_bounded,
    every_team_route_answers_each_role_as_the_matrix_says,
    invitations_follow_their_rules,
    two_accepts_racing_for_the_last_seat_let_one_in,
    a_seat_in_an_active_team_gives_the_team_tier_until_it_ends,
    keys_are_shared_per_member_and_go_with_the_membership,
    the_team_log_records_each_change_newest_first,
    an_owner_cannot_delete_their_account_and_a_member_leaves_with_theirs,
    deleting_a_team_removes_its_rows_and_nothing_of_another,
);

/// Makes the team's subscription active with `seats` seats, as a paid checkout and its
/// webhook would (billing per seat is the billing function's; this stands in for it).
pub(crate) async fn activate_team(app: &TestApp, team_id: &str, seats: i64) {
    adiuva_db::sqlx::query("UPDATE teams SET status = 'active', seats = $2 WHERE id = $1")
        .bind(team_id)
        .bind(seats)
        .execute(app.database.db.pool())
        .await
        .expect("failed to activate the team");
}

/// Registers `email` and returns the user signed in.
pub(crate) async fn register_as(app: &TestApp, email: &str) -> TestUser {
    let password = "correct-horse-battery".to_owned();
    let response = app.register(email, &password).await;
    assert_eq!(response.status(), StatusCode::CREATED, "register failed");
    let tokens: Tokens = response.json().await.unwrap();
    let profile: Value = app.me(&tokens.access_token).await.json().await.unwrap();
    TestUser {
        id: profile["id"].as_str().unwrap().to_owned(),
        email: email.to_owned(),
        password,
        tokens,
    }
}

async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    user: &TestUser,
    body: Option<Value>,
) -> Response {
    let mut request = app
        .request(method, &format!("/api/v1{path}"))
        .bearer_auth(&user.tokens.access_token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.expect("request failed")
}

async fn ok_json(response: Response, status: StatusCode) -> Value {
    let actual = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(actual, status, "unexpected status: {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

async fn create_team(app: &TestApp, owner: &TestUser, name: &str) -> String {
    let team = ok_json(
        call(
            app,
            Method::POST,
            "/teams",
            owner,
            Some(json!({"name": name})),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    team["id"].as_str().unwrap().to_owned()
}

/// An active team of `seats` seats owned by a new user.
async fn active_team(app: &TestApp, seats: i64) -> (TestUser, String) {
    let owner = app.register_user().await;
    let team = create_team(app, &owner, "Studio").await;
    activate_team(app, &team, seats).await;
    (owner, team)
}

async fn invite(app: &TestApp, by: &TestUser, team: &str, email: &str, role: &str) -> Response {
    call(
        app,
        Method::POST,
        &format!("/teams/{team}/invitations"),
        by,
        Some(json!({"email": email, "role": role})),
    )
    .await
}

async fn invitation(app: &TestApp, by: &TestUser, team: &str, email: &str, role: &str) -> Value {
    ok_json(
        invite(app, by, team, email, role).await,
        StatusCode::CREATED,
    )
    .await
}

async fn accept(app: &TestApp, user: &TestUser, token: &str) -> Response {
    call(
        app,
        Method::POST,
        "/teams/invitations/accept",
        user,
        Some(json!({"token": token})),
    )
    .await
}

/// A new user who joined `team` with `role` through an invitation from `by`.
async fn join(app: &TestApp, by: &TestUser, team: &str, role: &str) -> TestUser {
    let user = app.register_user().await;
    let invited = invitation(app, by, team, &user.email, role).await;
    ok_json(
        accept(app, &user, invited["token"].as_str().unwrap()).await,
        StatusCode::OK,
    )
    .await;
    user
}

async fn remove(app: &TestApp, by: &TestUser, team: &str, user_id: &str) -> Response {
    call(
        app,
        Method::DELETE,
        &format!("/teams/{team}/members/{user_id}"),
        by,
        None,
    )
    .await
}

async fn share_key(app: &TestApp, by: &TestUser, team: &str, user_id: &str, key: &str) -> Response {
    call(
        app,
        Method::PUT,
        &format!("/teams/{team}/keys/{user_id}"),
        by,
        Some(json!({"wrapped_key": key, "key_version": 1})),
    )
    .await
}

async fn count(app: &TestApp, sql: &str, team: &str) -> i64 {
    adiuva_db::sqlx::query_scalar(adiuva_db::sqlx::AssertSqlSafe(sql.to_owned()))
        .bind(team)
        .fetch_one(app.database.db.pool())
        .await
        .unwrap()
}

async fn teams_creating_and_listing(app: &TestApp) {
    let owner = app.register_user().await;
    let created = ok_json(
        call(
            app,
            Method::POST,
            "/teams",
            &owner,
            Some(json!({"name": "  Design  "})),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(created["name"], "Design");
    assert_eq!(created["role"], "owner");
    assert_eq!(created["seats"], 0);
    assert_eq!(created["seats_used"], 1);
    assert_eq!(created["status"], "none");
    assert!(created["created_at"].as_i64().unwrap() > 0);
    let id = created["id"].as_str().unwrap();

    let renamed = ok_json(
        call(
            app,
            Method::PATCH,
            &format!("/teams/{id}"),
            &owner,
            Some(json!({"name": "Design EU"})),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(renamed["name"], "Design EU");
    for bad in ["", "   ", "a\u{7}b"] {
        error_body(
            call(
                app,
                Method::PATCH,
                &format!("/teams/{id}"),
                &owner,
                Some(json!({"name": bad})),
            )
            .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_team_name",
        )
        .await;
    }
    error_body(
        call(
            app,
            Method::POST,
            "/teams",
            &owner,
            Some(json!({"name": "x".repeat(101)})),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_team_name",
    )
    .await;

    // Five owned teams at most; a team one is only a member of does not count.
    let other = app.register_user().await;
    let elsewhere = create_team(app, &other, "Elsewhere").await;
    activate_team(app, &elsewhere, 5).await;
    let invited = invitation(app, &other, &elsewhere, &owner.email, "admin").await;
    ok_json(
        accept(app, &owner, invited["token"].as_str().unwrap()).await,
        StatusCode::OK,
    )
    .await;
    for n in 2..=5 {
        create_team(app, &owner, &format!("Team {n}")).await;
    }
    error_body(
        call(
            app,
            Method::POST,
            "/teams",
            &owner,
            Some(json!({"name": "Sixth"})),
        )
        .await,
        StatusCode::CONFLICT,
        "team_limit_reached",
    )
    .await;
    let list = ok_json(
        call(app, Method::GET, "/teams", &owner, None).await,
        StatusCode::OK,
    )
    .await;
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 6);
    assert_eq!(list[0]["id"], id);
    assert_eq!(
        list.iter().filter(|team| team["role"] == "owner").count(),
        5
    );
    let joined = list.iter().find(|team| team["id"] == elsewhere).unwrap();
    assert_eq!(joined["role"], "admin");
    assert_eq!(joined["status"], "active");
    assert_eq!(joined["seats"], 5);
    assert_eq!(joined["seats_used"], 2);
    // The other owner sees only their own team.
    let theirs = ok_json(
        call(app, Method::GET, "/teams", &other, None).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(theirs.as_array().unwrap().len(), 1);
}

async fn teams_are_created_listed_renamed_and_bounded(backend: Backend) {
    let app = spawn_app(backend).await;
    teams_creating_and_listing(&app).await;
}

/// The five kinds of caller of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Outsider,
    Removed,
    Member,
    Admin,
    Owner,
}

const EVERYONE: [Who; 5] = [
    Who::Outsider,
    Who::Removed,
    Who::Member,
    Who::Admin,
    Who::Owner,
];

#[derive(Debug, Clone, Copy)]
enum Route {
    GetTeam,
    RenameTeam,
    ListMembers,
    SetRole,
    RemoveOther,
    Leave,
    Transfer,
    Invite,
    ListInvitations,
    RevokeInvitation,
    ShareKey,
    MyKey,
    Events,
    DeleteTeam,
}

/// Every team route for outsider, removed member, member, admin and owner (in that order).
/// The last row deletes the team, so it comes last; routes that change the team run on fresh
/// targets each time, so that every cell starts from the same team.
const MATRIX: [(Route, [u16; 5]); 14] = [
    (Route::GetTeam, [404, 404, 200, 200, 200]),
    (Route::RenameTeam, [404, 404, 403, 200, 200]),
    (Route::ListMembers, [404, 404, 200, 200, 200]),
    (Route::SetRole, [404, 404, 403, 403, 200]),
    (Route::RemoveOther, [404, 404, 403, 204, 204]),
    (Route::Leave, [404, 404, 204, 204, 409]),
    (Route::Transfer, [404, 404, 403, 403, 200]),
    (Route::Invite, [404, 404, 403, 201, 201]),
    (Route::ListInvitations, [404, 404, 403, 200, 200]),
    (Route::RevokeInvitation, [404, 404, 403, 204, 204]),
    (Route::ShareKey, [404, 404, 403, 200, 200]),
    (Route::MyKey, [404, 404, 200, 200, 200]),
    (Route::Events, [404, 404, 403, 200, 200]),
    (Route::DeleteTeam, [404, 404, 403, 403, 200]),
];

struct Cast {
    team: String,
    owner: TestUser,
    admin: TestUser,
    member: TestUser,
    /// A member of another team only.
    outsider: TestUser,
    /// A member once, removed (after a key was wrapped for them).
    removed: TestUser,
    /// The plain member the role and key routes act on.
    target: TestUser,
}

impl Cast {
    fn user(&self, who: Who) -> &TestUser {
        match who {
            Who::Outsider => &self.outsider,
            Who::Removed => &self.removed,
            Who::Member => &self.member,
            Who::Admin => &self.admin,
            Who::Owner => &self.owner,
        }
    }
}

/// Runs one cell: prepares what the route acts on (fresh where the route consumes it) and
/// returns the status the caller gets.
async fn run(app: &TestApp, cast: &Cast, route: Route, who: Who) -> Response {
    let team = &cast.team;
    let caller = cast.user(who);
    match route {
        Route::GetTeam => call(app, Method::GET, &format!("/teams/{team}"), caller, None).await,
        Route::RenameTeam => {
            call(
                app,
                Method::PATCH,
                &format!("/teams/{team}"),
                caller,
                Some(json!({"name": "Renamed"})),
            )
            .await
        }
        Route::ListMembers => {
            call(
                app,
                Method::GET,
                &format!("/teams/{team}/members"),
                caller,
                None,
            )
            .await
        }
        Route::SetRole => {
            call(
                app,
                Method::PATCH,
                &format!("/teams/{team}/members/{}", cast.target.id),
                caller,
                Some(json!({"role": "member"})),
            )
            .await
        }
        Route::RemoveOther => {
            let victim = join(app, &cast.owner, team, "member").await;
            remove(app, caller, team, &victim.id).await
        }
        Route::Leave => {
            // Someone of the role leaves: a fresh one, so the cast stays.
            let leaver = match who {
                Who::Member => join(app, &cast.owner, team, "member").await,
                Who::Admin => join(app, &cast.owner, team, "admin").await,
                _ => caller.clone(),
            };
            remove(app, &leaver, team, &leaver.id).await
        }
        Route::Transfer => {
            let response = call(
                app,
                Method::POST,
                &format!("/teams/{team}/transfer"),
                caller,
                Some(json!({"user_id": cast.target.id})),
            )
            .await;
            if response.status() == StatusCode::OK {
                // Handed back, and the target a plain member again, for the next cells.
                ok_json(
                    call(
                        app,
                        Method::POST,
                        &format!("/teams/{team}/transfer"),
                        &cast.target,
                        Some(json!({"user_id": cast.owner.id})),
                    )
                    .await,
                    StatusCode::OK,
                )
                .await;
                ok_json(
                    call(
                        app,
                        Method::PATCH,
                        &format!("/teams/{team}/members/{}", cast.target.id),
                        &cast.owner,
                        Some(json!({"role": "member"})),
                    )
                    .await,
                    StatusCode::OK,
                )
                .await;
            }
            response
        }
        Route::Invite => {
            let email = format!("invitee-{}@example.com", uuid::Uuid::new_v4().simple());
            invite(app, caller, team, &email, "member").await
        }
        Route::ListInvitations => {
            call(
                app,
                Method::GET,
                &format!("/teams/{team}/invitations"),
                caller,
                None,
            )
            .await
        }
        Route::RevokeInvitation => {
            let email = format!("pending-{}@example.com", uuid::Uuid::new_v4().simple());
            let pending = invitation(app, &cast.owner, team, &email, "member").await;
            call(
                app,
                Method::DELETE,
                &format!(
                    "/teams/{team}/invitations/{}",
                    pending["id"].as_str().unwrap()
                ),
                caller,
                None,
            )
            .await
        }
        Route::ShareKey => share_key(app, caller, team, &cast.target.id, "d3JhcHBlZA==").await,
        Route::MyKey => {
            call(
                app,
                Method::GET,
                &format!("/teams/{team}/keys/me"),
                caller,
                None,
            )
            .await
        }
        Route::Events => {
            call(
                app,
                Method::GET,
                &format!("/teams/{team}/events"),
                caller,
                None,
            )
            .await
        }
        Route::DeleteTeam => {
            call(app, Method::DELETE, &format!("/teams/{team}"), caller, None).await
        }
    }
}

async fn every_team_route_answers_each_role_as_the_matrix_says(backend: Backend) {
    let app = spawn_app(backend).await;
    let (owner, team) = active_team(&app, 100).await;
    let admin = join(&app, &owner, &team, "admin").await;
    let member = join(&app, &owner, &team, "member").await;
    let target = join(&app, &owner, &team, "member").await;
    let removed = join(&app, &owner, &team, "member").await;
    // Everyone has a key, so that `keys/me` is 200 for each member; the removed member's goes
    // with their membership.
    for user in [&owner, &admin, &member, &target, &removed] {
        ok_json(
            share_key(&app, &owner, &team, &user.id, "d3JhcHBlZA==").await,
            StatusCode::OK,
        )
        .await;
    }
    assert_eq!(
        remove(&app, &owner, &team, &removed.id).await.status(),
        StatusCode::NO_CONTENT
    );
    let (outsider, _their_team) = active_team(&app, 5).await;
    let cast = Cast {
        team: team.clone(),
        owner,
        admin,
        member,
        outsider,
        removed,
        target,
    };

    let mut wrong = Vec::new();
    for (route, expected) in MATRIX {
        for (who, status) in EVERYONE.into_iter().zip(expected) {
            let response = run(&app, &cast, route, who).await;
            let actual = response.status().as_u16();
            if actual != status {
                wrong.push(format!("{route:?} as {who:?}: {actual}, expected {status}"));
                continue;
            }
            // The team's existence does not leak: the same 404 as for a team that never was.
            if status == 404 {
                let body: Value = response.json().await.unwrap();
                assert_eq!(body["code"], "not_found", "{route:?} as {who:?}: {body}");
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    // A team that does not exist answers the same as one the caller is not in.
    error_body(
        call(
            &app,
            Method::GET,
            &format!("/teams/{}", uuid::Uuid::new_v4()),
            &cast.member,
            None,
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    // The owner's delete (the last cell) took the team: nobody sees it any more.
    for who in EVERYONE {
        assert_eq!(
            run(&app, &cast, Route::GetTeam, who).await.status(),
            StatusCode::NOT_FOUND
        );
    }
}

async fn invitations_follow_their_rules(backend: Backend) {
    let app = spawn_app(backend).await;
    let owner = app.register_user().await;
    let team = create_team(&app, &owner, "Studio").await;
    let bob = app.register_user().await;
    // No subscription yet: no invitation.
    error_body(
        invite(&app, &owner, &team, &bob.email, "member").await,
        StatusCode::PAYMENT_REQUIRED,
        "team_inactive",
    )
    .await;
    activate_team(&app, &team, 3).await;
    error_body(
        invite(&app, &owner, &team, "not-an-email", "member").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_email",
    )
    .await;
    error_body(
        invite(&app, &owner, &team, &bob.email, "owner").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_role",
    )
    .await;

    // The email is matched without regard to case.
    let for_bob = invitation(&app, &owner, &team, &bob.email.to_uppercase(), "admin").await;
    let token = for_bob["token"].as_str().unwrap().to_owned();
    assert_eq!(token.len(), 64);
    assert_eq!(for_bob["email"], bob.email);
    assert_eq!(for_bob["role"], "admin");
    let week = 7 * 24 * 60 * 60 * 1000;
    let expires_at = for_bob["expires_at"].as_i64().unwrap();
    let now = adiuva_db::now_ms();
    assert!((now + week - 60_000..=now + week).contains(&expires_at));
    // Stored as its SHA-256, never in the clear.
    let stored: String =
        adiuva_db::sqlx::query_scalar("SELECT token_hash FROM team_invitations WHERE id = $1")
            .bind(for_bob["id"].as_str().unwrap())
            .fetch_one(app.database.db.pool())
            .await
            .unwrap();
    assert_eq!(stored, adiuva_checksum::sha256_hex(token.as_bytes()));

    // Someone else cannot use it.
    let carol = app.register_user().await;
    error_body(
        accept(&app, &carol, &token).await,
        StatusCode::FORBIDDEN,
        "invitation_email_mismatch",
    )
    .await;
    let joined = ok_json(accept(&app, &bob, &token).await, StatusCode::OK).await;
    assert_eq!(joined["id"], team);
    assert_eq!(joined["role"], "admin");
    assert_eq!(joined["seats_used"], 2);
    // Single use.
    error_body(
        accept(&app, &bob, &token).await,
        StatusCode::GONE,
        "invitation_expired",
    )
    .await;
    // Unknown and malformed tokens name no invitation.
    for unknown in ["a".repeat(64), "nope".to_owned()] {
        error_body(
            accept(&app, &carol, &unknown).await,
            StatusCode::NOT_FOUND,
            "not_found",
        )
        .await;
    }
    // A member is not invited again.
    error_body(
        invite(&app, &owner, &team, &bob.email, "member").await,
        StatusCode::CONFLICT,
        "already_member",
    )
    .await;

    // Revoked.
    let dave = app.register_user().await;
    let for_dave = invitation(&app, &bob, &team, &dave.email, "member").await;
    assert_eq!(
        call(
            &app,
            Method::DELETE,
            &format!(
                "/teams/{team}/invitations/{}",
                for_dave["id"].as_str().unwrap()
            ),
            &owner,
            None,
        )
        .await
        .status(),
        StatusCode::NO_CONTENT
    );
    error_body(
        accept(&app, &dave, for_dave["token"].as_str().unwrap()).await,
        StatusCode::GONE,
        "invitation_expired",
    )
    .await;
    // Revoking twice: no such pending invitation.
    error_body(
        call(
            &app,
            Method::DELETE,
            &format!(
                "/teams/{team}/invitations/{}",
                for_dave["id"].as_str().unwrap()
            ),
            &owner,
            None,
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;

    // Expired: it no longer holds a seat either.
    let erin = app.register_user().await;
    let for_erin = invitation(&app, &owner, &team, &erin.email, "member").await;
    adiuva_db::sqlx::query("UPDATE team_invitations SET expires_at = $2 WHERE id = $1")
        .bind(for_erin["id"].as_str().unwrap())
        .bind(adiuva_db::now_ms() - 1)
        .execute(app.database.db.pool())
        .await
        .unwrap();
    error_body(
        accept(&app, &erin, for_erin["token"].as_str().unwrap()).await,
        StatusCode::GONE,
        "invitation_expired",
    )
    .await;

    // Seats: owner and bob are members (2 of 3); one pending invitation fills the third.
    let frank = app.register_user().await;
    let first_for_frank = invitation(&app, &owner, &team, &frank.email, "member").await;
    let gina = app.register_user().await;
    error_body(
        invite(&app, &owner, &team, &gina.email, "member").await,
        StatusCode::CONFLICT,
        "seats_exhausted",
    )
    .await;
    // Inviting the same email again replaces the pending invitation (and its seat).
    let for_frank = invitation(&app, &owner, &team, &frank.email, "member").await;
    error_body(
        accept(&app, &frank, first_for_frank["token"].as_str().unwrap()).await,
        StatusCode::GONE,
        "invitation_expired",
    )
    .await;
    let team_now = ok_json(
        call(&app, Method::GET, &format!("/teams/{team}"), &owner, None).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(team_now["seats_used"], 3);

    // The list shows every invitation's state and never a token.
    let list = ok_json(
        call(
            &app,
            Method::GET,
            &format!("/teams/{team}/invitations"),
            &owner,
            None,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 5);
    let state_of = |id: &Value| {
        list.iter()
            .find(|entry| entry["id"] == *id)
            .map(|entry| entry["state"].as_str().unwrap().to_owned())
            .unwrap()
    };
    assert_eq!(state_of(&for_bob["id"]), "accepted");
    assert_eq!(state_of(&for_dave["id"]), "revoked");
    assert_eq!(state_of(&for_erin["id"]), "expired");
    assert_eq!(state_of(&first_for_frank["id"]), "revoked");
    assert_eq!(state_of(&for_frank["id"]), "pending");
    assert_eq!(list[0]["id"], for_frank["id"], "newest first");
    for entry in list {
        assert!(entry.get("token").is_none(), "{entry}");
        assert!(entry.get("token_hash").is_none(), "{entry}");
    }
    ok_json(
        accept(&app, &frank, for_frank["token"].as_str().unwrap()).await,
        StatusCode::OK,
    )
    .await;

    // Once the subscription ends, a pending invitation cannot be accepted either.
    activate_team(&app, &team, 5).await;
    let for_gina = invitation(&app, &owner, &team, &gina.email, "member").await;
    adiuva_db::sqlx::query("UPDATE teams SET status = 'canceled' WHERE id = $1")
        .bind(&team)
        .execute(app.database.db.pool())
        .await
        .unwrap();
    error_body(
        accept(&app, &gina, for_gina["token"].as_str().unwrap()).await,
        StatusCode::PAYMENT_REQUIRED,
        "team_inactive",
    )
    .await;
}

async fn two_accepts_racing_for_the_last_seat_let_one_in(backend: Backend) {
    let app = spawn_app(backend).await;
    for round in 0..3 {
        let (owner, team) = active_team(&app, 3).await;
        let first = app.register_user().await;
        let second = app.register_user().await;
        let a = invitation(&app, &owner, &team, &first.email, "member").await;
        let b = invitation(&app, &owner, &team, &second.email, "member").await;
        // The seats went down (a quantity change in the Billing Portal): one seat is left for
        // the two pending invitations.
        activate_team(&app, &team, 2).await;
        let (one, two) = tokio::join!(
            accept(&app, &first, a["token"].as_str().unwrap()),
            accept(&app, &second, b["token"].as_str().unwrap()),
        );
        let mut statuses = [one.status(), two.status()];
        statuses.sort();
        assert_eq!(
            statuses,
            [StatusCode::OK, StatusCode::CONFLICT],
            "round {round}"
        );
        let (late, token, loser) = if one.status() == StatusCode::OK {
            (&second, &b, two)
        } else {
            (&first, &a, one)
        };
        error_body(loser, StatusCode::CONFLICT, "seats_exhausted").await;
        let members = count(
            &app,
            "SELECT COUNT(*) FROM team_members WHERE team_id = $1",
            &team,
        )
        .await;
        assert_eq!(members, 2, "round {round}");
        // The loser's invitation is still pending: with another seat it goes through.
        activate_team(&app, &team, 3).await;
        ok_json(
            accept(&app, late, token["token"].as_str().unwrap()).await,
            StatusCode::OK,
        )
        .await;
    }
}

async fn profile(app: &TestApp, user: &TestUser) -> Value {
    ok_json(app.me(&user.tokens.access_token).await, StatusCode::OK).await
}

async fn a_seat_in_an_active_team_gives_the_team_tier_until_it_ends(backend: Backend) {
    let app = spawn_app_with(backend, &[("RATE_LIMIT_ENABLED", "true")]).await;
    let (owner, team) = active_team(&app, 5).await;
    let user = app.register_user().await;
    let before = profile(&app, &user).await;
    assert_eq!(before["tier"], "free");
    assert_eq!(before["tier_source"], "own");
    assert_eq!(before["teams"], json!([]));
    let response = app.me(&user.tokens.access_token).await;
    assert_eq!(response.headers()["ratelimit-policy"], "\"free\";q=20;w=60");

    let invited = invitation(&app, &owner, &team, &user.email, "member").await;
    ok_json(
        accept(&app, &user, invited["token"].as_str().unwrap()).await,
        StatusCode::OK,
    )
    .await;
    let during = profile(&app, &user).await;
    assert_eq!(during["tier"], "team");
    assert_eq!(during["tier_source"], "team");
    assert_eq!(during["teams"], json!([{"id": team, "role": "member"}]));
    // The Team tier's allowance, per member.
    let response = app.me(&user.tokens.access_token).await;
    assert_eq!(
        response.headers()["ratelimit-policy"],
        "\"team\";q=200;w=60"
    );
    // What chat-ws does with the token of a WebSocket message: the same caller query.
    let accounts: adiuva_auth::Accounts = app.context.get().unwrap();
    let claims = accounts.verify_token(&user.tokens.access_token).unwrap();
    let caller = accounts
        .caller(&claims.sub, claims.ver, claims.sid.as_deref())
        .await
        .unwrap();
    assert_eq!(caller.tier, adiuva_access::Tier::Team);
    assert_eq!(caller.tier_source, adiuva_access::TierSource::Team);
    // Team tier features: the cloud storage a free account does not have.
    let stored = app
        .create_record(&user.tokens.access_token, "notes", b"ciphertext")
        .await;
    assert_eq!(stored.status(), StatusCode::CREATED);

    // A paid Team subscription of one's own is "own".
    app.set_subscription(&user.id, "team", "active").await;
    let own = profile(&app, &user).await;
    assert_eq!(
        (own["tier"].clone(), own["tier_source"].clone()),
        (json!("team"), json!("own"))
    );
    app.set_subscription(&user.id, "pro", "active").await;
    assert_eq!(profile(&app, &user).await["tier_source"], "team");

    // Removed: back to their own tier at the next request.
    assert_eq!(
        remove(&app, &owner, &team, &user.id).await.status(),
        StatusCode::NO_CONTENT
    );
    let after = profile(&app, &user).await;
    assert_eq!(after["tier"], "pro");
    assert_eq!(after["tier_source"], "own");
    assert_eq!(after["teams"], json!([]));
    let caller = accounts
        .caller(&claims.sub, claims.ver, claims.sid.as_deref())
        .await
        .unwrap();
    assert_eq!(caller.tier, adiuva_access::Tier::Pro);

    // Back in, then the team's subscription ends: the seat no longer gives the tier, though
    // the membership stays.
    let again = invitation(&app, &owner, &team, &user.email, "member").await;
    ok_json(
        accept(&app, &user, again["token"].as_str().unwrap()).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(profile(&app, &user).await["tier"], "team");
    adiuva_db::sqlx::query("UPDATE teams SET status = 'canceled' WHERE id = $1")
        .bind(&team)
        .execute(app.database.db.pool())
        .await
        .unwrap();
    let ended = profile(&app, &user).await;
    assert_eq!(ended["tier"], "pro");
    assert_eq!(ended["tier_source"], "own");
    assert_eq!(ended["teams"], json!([{"id": team, "role": "member"}]));
    // Leaving works the same way (the owner's own seat gave them the tier before).
    activate_team(&app, &team, 5).await;
    assert_eq!(profile(&app, &owner).await["tier_source"], "team");
    assert_eq!(
        remove(&app, &user, &team, &user.id).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(profile(&app, &user).await["tier_source"], "own");
}

async fn keys_are_shared_per_member_and_go_with_the_membership(backend: Backend) {
    let app = spawn_app(backend).await;
    let (owner, team) = active_team(&app, 10).await;
    let admin = join(&app, &owner, &team, "admin").await;
    let member = join(&app, &owner, &team, "member").await;
    let outsider = app.register_user().await;

    // Public keys: base64, at most 1 KiB, one of three algorithms.
    let publish = |user: &TestUser, key: String, algorithm: &str| {
        let body = json!({"public_key": key, "algorithm": algorithm});
        let token = user.tokens.access_token.clone();
        let request = app
            .request(Method::PUT, "/api/v1/auth/me/public-key")
            .bearer_auth(token)
            .json(&body);
        async move { request.send().await.unwrap() }
    };
    let key = crate::harness::b64(&[7u8; 32]);
    let published = ok_json(
        publish(&member, key.clone(), "x25519").await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(published, json!({"public_key": key, "algorithm": "x25519"}));
    for (bad, algorithm) in [
        (key.clone(), "rsa"),
        ("not base64!".to_owned(), "p256"),
        (String::new(), "p256"),
        ("A".repeat(1028), "rsa-oaep-256"),
    ] {
        error_body(
            publish(&member, bad, algorithm).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_public_key",
        )
        .await;
    }
    ok_json(
        publish(&admin, "A".repeat(1024), "rsa-oaep-256").await,
        StatusCode::OK,
    )
    .await;
    let members = ok_json(
        call(
            &app,
            Method::GET,
            &format!("/teams/{team}/members"),
            &admin,
            None,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let entry = members
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["user_id"] == member.id)
        .unwrap()
        .clone();
    assert_eq!(entry["email"], member.email);
    assert_eq!(entry["role"], "member");
    assert_eq!(entry["public_key"], key);
    assert_eq!(entry["key_algorithm"], "x25519");
    assert!(entry["joined_at"].as_i64().unwrap() > 0);
    let owner_entry = &members[0];
    assert_eq!(owner_entry["role"], "owner");
    assert_eq!(owner_entry["public_key"], Value::Null);

    // Nothing until an admin wrapped one.
    error_body(
        call(
            &app,
            Method::GET,
            &format!("/teams/{team}/keys/me"),
            &member,
            None,
        )
        .await,
        StatusCode::NOT_FOUND,
        "key_not_shared",
    )
    .await;
    let wrapped = crate::harness::b64(b"team key wrapped for the member");
    let shared = ok_json(
        share_key(&app, &admin, &team, &member.id, &wrapped).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(shared["wrapped_by"], admin.id);
    let mine = ok_json(
        call(
            &app,
            Method::GET,
            &format!("/teams/{team}/keys/me"),
            &member,
            None,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(mine["wrapped_key"], wrapped);
    assert_eq!(mine["key_version"], 1);
    assert_eq!(mine["wrapped_by"], admin.id);
    assert!(mine["updated_at"].as_i64().unwrap() > 0);
    // A new version replaces it.
    ok_json(
        call(
            &app,
            Method::PUT,
            &format!("/teams/{team}/keys/{}", member.id),
            &owner,
            Some(json!({"wrapped_key": "bmV3", "key_version": 2})),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let mine = ok_json(
        call(
            &app,
            Method::GET,
            &format!("/teams/{team}/keys/me"),
            &member,
            None,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        (mine["wrapped_key"].clone(), mine["key_version"].clone()),
        (json!("bmV3"), json!(2))
    );
    assert_eq!(mine["wrapped_by"], owner.id);

    // Plain members do not wrap; only members get keys; the bounds hold.
    error_body(
        share_key(&app, &member, &team, &admin.id, &wrapped).await,
        StatusCode::FORBIDDEN,
        "team_admin_required",
    )
    .await;
    error_body(
        share_key(&app, &admin, &team, &outsider.id, &wrapped).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    for bad in ["not base64!".to_owned(), String::new(), "A".repeat(4100)] {
        error_body(
            share_key(&app, &admin, &team, &member.id, &bad).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_wrapped_key",
        )
        .await;
    }
    ok_json(
        share_key(&app, &admin, &team, &member.id, &"A".repeat(4096)).await,
        StatusCode::OK,
    )
    .await;
    error_body(
        call(
            &app,
            Method::PUT,
            &format!("/teams/{team}/keys/{}", member.id),
            &admin,
            Some(json!({"wrapped_key": "bmV3", "key_version": 0})),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_key_version",
    )
    .await;

    // Removed, the member's wrapped key is gone; back in, nothing is shared until an admin
    // wraps the key again.
    assert_eq!(
        remove(&app, &admin, &team, &member.id).await.status(),
        StatusCode::NO_CONTENT
    );
    let keys = count(
        &app,
        "SELECT COUNT(*) FROM team_keys WHERE user_id = $1",
        &member.id,
    )
    .await;
    assert_eq!(keys, 0);
    let again = invitation(&app, &owner, &team, &member.email, "member").await;
    ok_json(
        accept(&app, &member, again["token"].as_str().unwrap()).await,
        StatusCode::OK,
    )
    .await;
    error_body(
        call(
            &app,
            Method::GET,
            &format!("/teams/{team}/keys/me"),
            &member,
            None,
        )
        .await,
        StatusCode::NOT_FOUND,
        "key_not_shared",
    )
    .await;
}

async fn events(app: &TestApp, user: &TestUser, team: &str, query: &str) -> Response {
    call(
        app,
        Method::GET,
        &format!("/teams/{team}/events{query}"),
        user,
        None,
    )
    .await
}

async fn the_team_log_records_each_change_newest_first(backend: Backend) {
    let app = spawn_app(backend).await;
    let (owner, team) = active_team(&app, 10).await;
    let alice = app.register_user().await;
    let invited = invitation(&app, &owner, &team, &alice.email, "member").await;
    let invitation_id = invited["id"].as_str().unwrap().to_owned();
    ok_json(
        accept(&app, &alice, invited["token"].as_str().unwrap()).await,
        StatusCode::OK,
    )
    .await;
    ok_json(
        call(
            &app,
            Method::PATCH,
            &format!("/teams/{team}/members/{}", alice.id),
            &owner,
            Some(json!({"role": "admin"})),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    ok_json(
        share_key(&app, &alice, &team, &owner.id, "a2V5").await,
        StatusCode::OK,
    )
    .await;
    ok_json(
        call(
            &app,
            Method::POST,
            &format!("/teams/{team}/transfer"),
            &owner,
            Some(json!({"user_id": alice.id})),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let bob = join(&app, &alice, &team, "member").await;
    assert_eq!(
        remove(&app, &alice, &team, &bob.id).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        remove(&app, &owner, &team, &owner.id).await.status(),
        StatusCode::NO_CONTENT
    );

    // Newest first, each with its actor and subject.
    let expected = [
        ("member_left", &owner.id, Some(owner.id.as_str())),
        ("member_removed", &alice.id, Some(bob.id.as_str())),
        ("member_joined", &bob.id, Some(bob.id.as_str())),
        ("member_invited", &alice.id, None),
        ("ownership_transferred", &owner.id, Some(alice.id.as_str())),
        ("key_shared", &alice.id, Some(owner.id.as_str())),
        ("role_changed", &owner.id, Some(alice.id.as_str())),
        ("member_joined", &alice.id, Some(alice.id.as_str())),
        ("member_invited", &owner.id, Some(invitation_id.as_str())),
    ];
    let all = ok_json(events(&app, &alice, &team, "").await, StatusCode::OK).await;
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), expected.len(), "{all:#?}");
    for (entry, (kind, actor, subject)) in all.iter().zip(expected) {
        assert_eq!(entry["type"], kind, "{entry}");
        assert_eq!(entry["actor_id"], **actor, "{entry}");
        if let Some(subject) = subject {
            assert_eq!(entry["subject_id"], subject, "{entry}");
        }
        let keys: Vec<&String> = entry.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            ["actor_id", "at", "subject_id", "type"],
            "no content, no token"
        );
    }
    let times: Vec<i64> = all
        .iter()
        .map(|entry| entry["at"].as_i64().unwrap())
        .collect();
    assert!(times.windows(2).all(|pair| pair[0] > pair[1]), "{times:?}");

    // Pages of two, following the cursor, give the same entries.
    let mut paged = Vec::new();
    let mut query = "?limit=2".to_owned();
    loop {
        let response = events(&app, &alice, &team, &query).await;
        let next = response
            .headers()
            .get("x-next-cursor")
            .map(|value| value.to_str().unwrap().to_owned());
        let page = ok_json(response, StatusCode::OK).await;
        assert!(page.as_array().unwrap().len() <= 2);
        paged.extend(page.as_array().unwrap().iter().cloned());
        match next {
            Some(cursor) => query = format!("?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(&paged, all);
    error_body(
        events(&app, &alice, &team, "?cursor=zz").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_cursor",
    )
    .await;
    error_body(
        events(&app, &alice, &team, "?limit=0").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_error",
    )
    .await;
    // Plain members do not read it; the former owner, who left, gets 404.
    let carol = join(&app, &alice, &team, "member").await;
    error_body(
        events(&app, &carol, &team, "").await,
        StatusCode::FORBIDDEN,
        "team_admin_required",
    )
    .await;
    error_body(
        events(&app, &owner, &team, "").await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}

async fn delete_account(app: &TestApp, user: &TestUser) -> Response {
    app.request(Method::DELETE, "/api/v1/auth/me")
        .bearer_auth(&user.tokens.access_token)
        .json(&json!({"password": user.password}))
        .send()
        .await
        .unwrap()
}

async fn an_owner_cannot_delete_their_account_and_a_member_leaves_with_theirs(backend: Backend) {
    let app = spawn_app(backend).await;
    let (owner, team) = active_team(&app, 10).await;
    let admin = join(&app, &owner, &team, "admin").await;
    let member = join(&app, &owner, &team, "member").await;
    ok_json(
        share_key(&app, &admin, &team, &member.id, "a2V5").await,
        StatusCode::OK,
    )
    .await;

    error_body(
        delete_account(&app, &owner).await,
        StatusCode::CONFLICT,
        "owner_must_transfer",
    )
    .await;
    // Nothing was deleted.
    assert_eq!(profile(&app, &owner).await["id"], owner.id);

    // A member's deletion takes their membership and keys; the team stays.
    assert_eq!(delete_account(&app, &member).await.status(), StatusCode::OK);
    for sql in [
        "SELECT COUNT(*) FROM team_members WHERE user_id = $1",
        "SELECT COUNT(*) FROM team_keys WHERE user_id = $1",
    ] {
        assert_eq!(count(&app, sql, &member.id).await, 0, "{sql}");
    }
    let members = ok_json(
        call(
            &app,
            Method::GET,
            &format!("/teams/{team}/members"),
            &owner,
            None,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(members.as_array().unwrap().len(), 2);

    // Once ownership moved, the former owner's account can go; the team stays with the new
    // owner.
    ok_json(
        call(
            &app,
            Method::POST,
            &format!("/teams/{team}/transfer"),
            &owner,
            Some(json!({"user_id": admin.id})),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(delete_account(&app, &owner).await.status(), StatusCode::OK);
    let kept = ok_json(
        call(&app, Method::GET, &format!("/teams/{team}"), &admin, None).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(kept["role"], "owner");
    assert_eq!(kept["seats_used"], 1);

    // Deleting the team also frees its owner.
    error_body(
        delete_account(&app, &admin).await,
        StatusCode::CONFLICT,
        "owner_must_transfer",
    )
    .await;
    ok_json(
        call(
            &app,
            Method::DELETE,
            &format!("/teams/{team}"),
            &admin,
            None,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(delete_account(&app, &admin).await.status(), StatusCode::OK);
}

const TEAM_TABLES: [&str; 5] = [
    "SELECT COUNT(*) FROM teams WHERE id = $1",
    "SELECT COUNT(*) FROM team_members WHERE team_id = $1",
    "SELECT COUNT(*) FROM team_invitations WHERE team_id = $1",
    "SELECT COUNT(*) FROM team_keys WHERE team_id = $1",
    "SELECT COUNT(*) FROM team_events WHERE team_id = $1",
];

async fn rows_of(app: &TestApp, team: &str) -> Vec<i64> {
    let mut counts = Vec::new();
    for sql in TEAM_TABLES {
        counts.push(count(app, sql, team).await);
    }
    counts
}

/// A team with a member, a key, a pending invitation and so a log.
async fn furnished_team(app: &TestApp) -> (TestUser, TestUser, String) {
    let (owner, team) = active_team(app, 10).await;
    let member = join(app, &owner, &team, "member").await;
    ok_json(
        share_key(app, &owner, &team, &member.id, "a2V5").await,
        StatusCode::OK,
    )
    .await;
    invitation(app, &owner, &team, "later@example.com", "member").await;
    (owner, member, team)
}

async fn deleting_a_team_removes_its_rows_and_nothing_of_another(backend: Backend) {
    let app = spawn_app(backend).await;
    let (owner, member, doomed) = furnished_team(&app).await;
    let (_, _, kept) = furnished_team(&app).await;
    let before = rows_of(&app, &kept).await;
    assert!(rows_of(&app, &doomed).await.iter().all(|n| *n > 0));

    // What the storage and billing code ask.
    let teams = adiuva_teams::Teams::new(app.database.db.clone());
    let role = |team: &str, user: &TestUser| {
        let (teams, team, user) = (teams.clone(), team.to_owned(), user.id.clone());
        async move { teams.membership(&team, &user).await.unwrap() }
    };
    assert_eq!(
        role(&doomed, &owner).await,
        Some(adiuva_teams::TeamRole::Owner)
    );
    assert_eq!(
        role(&doomed, &member).await,
        Some(adiuva_teams::TeamRole::Member)
    );
    assert_eq!(role(&kept, &member).await, None);

    let deleted = ok_json(
        call(
            &app,
            Method::DELETE,
            &format!("/teams/{doomed}"),
            &owner,
            None,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(deleted, json!({"id": doomed, "ok": true}));
    assert_eq!(rows_of(&app, &doomed).await, [0, 0, 0, 0, 0]);
    assert_eq!(rows_of(&app, &kept).await, before);
    for user in [&owner, &member] {
        error_body(
            call(&app, Method::GET, &format!("/teams/{doomed}"), user, None).await,
            StatusCode::NOT_FOUND,
            "not_found",
        )
        .await;
        assert_eq!(profile(&app, user).await["teams"], json!([]));
    }
    // The accounts stay.
    assert_eq!(profile(&app, &member).await["id"], member.id);
    assert_eq!(role(&doomed, &member).await, None);

    // The domain's purge for operators and jobs does the same.
    assert!(teams.purge_team(&kept).await.unwrap());
    assert_eq!(rows_of(&app, &kept).await, [0, 0, 0, 0, 0]);
    assert!(!teams.purge_team(&kept).await.unwrap());
}
