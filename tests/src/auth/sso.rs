//! Team SSO (issue 23, item 6): a team's settings (owner only, never the secret), sign-in
//! through the team's own provider (a second fake OpenID provider, speaking the real protocol),
//! accounts that join the team by their email's domain while a seat is free, a hostile team's
//! provider refused for anyone not in the team, and `sso_required` against password sign-in.

use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};

use super::oidc::{REDIRECT, callback, pkce};
use crate::backend_tests;
use crate::harness::{Backend, TestApp, TestUser, error_body, spawn_app_with};
use crate::oidc::{CLIENT_ID, CLIENT_SECRET, FakeProvider, Person};
use crate::teams::activate_team;

backend_tests!(
    team_sso_settings_are_the_owners_and_never_show_the_secret,
    without_the_key_team_sso_cannot_be_set,
    members_sign_in_through_their_teams_provider,
    a_new_account_joins_only_while_a_seat_is_free,
    a_hostile_teams_provider_cannot_sign_into_a_non_member,
    sso_required_refuses_password_sign_in_to_members_but_not_the_owner,
);

const SSO_KEY: &str = "test-sso-secret-key-0123456789abcdef";

async fn sso_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, &[("SSO_SECRET_KEY", SSO_KEY)]).await
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
    request.send().await.unwrap()
}

async fn json_of(response: Response, status: StatusCode) -> Value {
    let actual = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(actual, status, "{text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// A team of `owner`, active with `seats` seats.
async fn team_of(app: &TestApp, owner: &TestUser, seats: i64) -> String {
    let team = json_of(
        call(
            app,
            Method::POST,
            "/teams",
            owner,
            Some(json!({"name": "Studio"})),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    let id = team["id"].as_str().unwrap().to_owned();
    activate_team(app, &id, seats).await;
    id
}

/// Makes `user` a member of the team with `role` (what an accepted invitation does).
async fn add_member(app: &TestApp, team: &str, user: &TestUser, role: &str) {
    adiuva_db::sqlx::query(
        "INSERT INTO team_members (team_id, user_id, role, joined_at) VALUES ($1, $2, $3, 1)",
    )
    .bind(team)
    .bind(&user.id)
    .bind(role)
    .execute(app.database.db.pool())
    .await
    .unwrap();
}

fn settings(issuer: &str, domains: &[&str], required: bool) -> Value {
    json!({"issuer": issuer, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
           "domains": domains, "required": required})
}

async fn put_sso(app: &TestApp, owner: &TestUser, team: &str, body: Value) -> Response {
    call(
        app,
        Method::PUT,
        &format!("/teams/{team}/sso"),
        owner,
        Some(body),
    )
    .await
}

async fn team_event_types(app: &TestApp, owner: &TestUser, team: &str) -> Vec<String> {
    let events = json_of(
        call(
            app,
            Method::GET,
            &format!("/teams/{team}/events"),
            owner,
            None,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    events
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["type"].as_str().unwrap().to_owned())
        .collect()
}

/// The whole flow through the team's provider for `person`.
async fn team_sign_in(
    app: &TestApp,
    provider: &FakeProvider,
    team: &str,
    person: &Person,
) -> Response {
    provider.set_person(person);
    let pkce = pkce();
    let response = app
        .post_json(
            "/api/v1/auth/oidc/start",
            &json!({"team_id": team, "redirect_uri": REDIRECT,
                    "code_challenge": pkce.challenge, "code_challenge_method": "S256"}),
        )
        .await;
    let started = json_of(response, StatusCode::OK).await;
    let url = started["authorization_url"].as_str().unwrap();
    assert!(url.starts_with(&format!("{}/authorize?", provider.issuer)));
    let (code, state) = provider.authorize(url).await;
    callback(app, &state, &code, &pkce.verifier).await
}

async fn user_id_of(app: &TestApp, email: &str) -> Option<String> {
    adiuva_db::sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
        .bind(email)
        .fetch_optional(app.database.db.pool())
        .await
        .unwrap()
}

async fn role_in(app: &TestApp, team: &str, user_id: &str) -> Option<String> {
    adiuva_db::sqlx::query_scalar(
        "SELECT role FROM team_members WHERE team_id = $1 AND user_id = $2",
    )
    .bind(team)
    .bind(user_id)
    .fetch_optional(app.database.db.pool())
    .await
    .unwrap()
}

async fn team_sso_settings_are_the_owners_and_never_show_the_secret(backend: Backend) {
    let app = sso_app(backend).await;
    let owner = app.register_user().await;
    let admin = app.register_user().await;
    let member = app.register_user().await;
    let outsider = app.register_user().await;
    let team = team_of(&app, &owner, 5).await;
    add_member(&app, &team, &admin, "admin").await;
    add_member(&app, &team, &member, "member").await;
    let body = settings(
        "https://idp.example.com/realms/studio",
        &[" Studio.Example.COM ", "example.org"],
        true,
    );

    // An inactive team cannot have SSO, exactly as it cannot invite.
    adiuva_db::sqlx::query("UPDATE teams SET status = 'past_due' WHERE id = $1")
        .bind(&team)
        .execute(app.database.db.pool())
        .await
        .unwrap();
    error_body(
        put_sso(&app, &owner, &team, body.clone()).await,
        StatusCode::PAYMENT_REQUIRED,
        "team_inactive",
    )
    .await;
    // Settings that are wrong in themselves are said to be so first, whatever the team's state.
    let mut long_issuer = body.clone();
    long_issuer["issuer"] = json!(format!("https://idp.example.com/{}", "a".repeat(600)));
    error_body(
        put_sso(&app, &owner, &team, long_issuer).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_issuer",
    )
    .await;
    activate_team(&app, &team, 5).await;

    // Only the owner sets and removes it; admins read it; members and outsiders do neither.
    let path = format!("/teams/{team}/sso");
    error_body(
        put_sso(&app, &admin, &team, body.clone()).await,
        StatusCode::FORBIDDEN,
        "team_owner_required",
    )
    .await;
    error_body(
        put_sso(&app, &outsider, &team, body.clone()).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    error_body(
        call(&app, Method::GET, &path, &owner, None).await,
        StatusCode::NOT_FOUND,
        "sso_not_found",
    )
    .await;

    // Invalid settings are refused before anything is stored.
    for (bad, code) in [
        (
            settings("http://idp.example.com", &["example.com"], false),
            "invalid_issuer",
        ),
        (
            settings("https://idp.example.com?tenant=1", &["example.com"], false),
            "invalid_issuer",
        ),
        (
            settings("https://idp.example.com", &[], false),
            "invalid_domains",
        ),
        (
            settings("https://idp.example.com", &["not a domain"], false),
            "invalid_domains",
        ),
        (
            json!({"issuer": "https://idp.example.com", "client_id": "", "client_secret": "s",
                   "domains": ["example.com"], "required": false}),
            "invalid_client",
        ),
    ] {
        error_body(
            put_sso(&app, &owner, &team, bad).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            code,
        )
        .await;
    }

    let response = put_sso(&app, &owner, &team, body.clone()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    assert!(!text.contains(CLIENT_SECRET), "{text}");
    let set: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(set["team_id"], team.as_str());
    assert_eq!(set["issuer"], "https://idp.example.com/realms/studio");
    assert_eq!(set["client_id"], CLIENT_ID);
    assert_eq!(set["domains"], json!(["studio.example.com", "example.org"]));
    assert_eq!(set["required"], true);
    assert!(set.get("client_secret").is_none());

    for reader in [&owner, &admin] {
        let response = call(&app, Method::GET, &path, reader, None).await;
        assert_eq!(response.status(), StatusCode::OK);
        let text = response.text().await.unwrap();
        assert!(!text.contains(CLIENT_SECRET), "{text}");
        let read: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(read["domains"], set["domains"]);
    }
    error_body(
        call(&app, Method::GET, &path, &member, None).await,
        StatusCode::FORBIDDEN,
        "team_admin_required",
    )
    .await;
    error_body(
        call(&app, Method::GET, &path, &outsider, None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;

    // Stored sealed: the row holds no trace of the secret.
    let stored: String =
        adiuva_db::sqlx::query_scalar("SELECT client_secret FROM team_sso WHERE team_id = $1")
            .bind(&team)
            .fetch_one(app.database.db.pool())
            .await
            .unwrap();
    assert!(!stored.is_empty());
    assert!(!stored.contains(CLIENT_SECRET));
    assert!(!stored.contains("adiuva-test"));

    // Replacing keeps one row; each change is in the team's log.
    let replaced = json_of(
        put_sso(
            &app,
            &owner,
            &team,
            settings(
                "https://idp.example.com/realms/studio",
                &["example.org"],
                false,
            ),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(replaced["domains"], json!(["example.org"]));
    assert_eq!(replaced["required"], false);
    assert_eq!(replaced["created_at"], set["created_at"]);

    error_body(
        call(&app, Method::DELETE, &path, &admin, None).await,
        StatusCode::FORBIDDEN,
        "team_owner_required",
    )
    .await;
    assert_eq!(
        call(&app, Method::DELETE, &path, &owner, None)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    error_body(
        call(&app, Method::GET, &path, &owner, None).await,
        StatusCode::NOT_FOUND,
        "sso_not_found",
    )
    .await;
    error_body(
        call(&app, Method::DELETE, &path, &owner, None).await,
        StatusCode::NOT_FOUND,
        "sso_not_found",
    )
    .await;
    let types = team_event_types(&app, &owner, &team).await;
    assert_eq!(
        &types[..3],
        ["sso_removed", "sso_configured", "sso_configured"],
        "{types:?}"
    );

    // Deleting the team deletes its SSO.
    put_sso(&app, &owner, &team, body).await;
    assert_eq!(
        call(
            &app,
            Method::DELETE,
            &format!("/teams/{team}"),
            &owner,
            None
        )
        .await
        .status(),
        StatusCode::OK
    );
    let left: i64 = adiuva_db::sqlx::query_scalar("SELECT COUNT(*) FROM team_sso")
        .fetch_one(app.database.db.pool())
        .await
        .unwrap();
    assert_eq!(left, 0);
}

async fn without_the_key_team_sso_cannot_be_set(backend: Backend) {
    let app = spawn_app_with(backend, &[]).await;
    let owner = app.register_user().await;
    let team = team_of(&app, &owner, 5).await;
    let response = put_sso(
        &app,
        &owner,
        &team,
        settings("https://idp.example.com", &["example.com"], false),
    )
    .await;
    let body = error_body(
        response,
        StatusCode::SERVICE_UNAVAILABLE,
        "sso_secret_key_missing",
    )
    .await;
    assert!(
        body["detail"].as_str().unwrap().contains("SSO_SECRET_KEY"),
        "{body}"
    );
}

async fn members_sign_in_through_their_teams_provider(backend: Backend) {
    let app = sso_app(backend).await;
    let provider = FakeProvider::start().await;
    let owner = app.register_user().await;
    let team = team_of(&app, &owner, 5).await;
    json_of(
        put_sso(
            &app,
            &owner,
            &team,
            settings(&provider.issuer, &["example.com"], false),
        )
        .await,
        StatusCode::OK,
    )
    .await;

    // A new identity of the team's domain creates its account, which joins the team.
    let person = Person::new();
    let response = team_sign_in(&app, &provider, &team, &person).await;
    let tokens = json_of(response, StatusCode::OK).await;
    // The code was redeemed with the team's client secret, opened from its sealed copy.
    let form = provider.token_requests().pop().unwrap();
    assert!(
        form.iter()
            .any(|(key, value)| key == "client_secret" && value == CLIENT_SECRET),
        "{form:?}"
    );
    let user_id = user_id_of(&app, &person.email).await.unwrap();
    assert_eq!(
        role_in(&app, &team, &user_id).await.as_deref(),
        Some("member")
    );
    let me: Value = app
        .me(tokens["access_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["tier"], "team");
    assert_eq!(me["identities"][0]["provider"], format!("team:{team}"));
    assert_eq!(me["identities"][0]["issuer"], provider.issuer.as_str());
    let joined: Vec<(String, Option<String>)> = adiuva_db::sqlx::query_as(
        "SELECT event_type, subject_id FROM team_events WHERE team_id = $1 ORDER BY at",
    )
    .bind(&team)
    .fetch_all(app.database.db.pool())
    .await
    .unwrap();
    assert!(
        joined.contains(&("member_joined".to_owned(), Some(user_id.clone()))),
        "{joined:?}"
    );

    // The same identity signs in again, into the same account.
    let again = json_of(
        team_sign_in(&app, &provider, &team, &person).await,
        StatusCode::OK,
    )
    .await;
    let me: Value = app
        .me(again["access_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["id"], user_id.as_str());

    // An email of another domain creates nothing.
    let stranger = Person {
        email: format!("stranger-{}@elsewhere.org", uuid::Uuid::new_v4().simple()),
        ..Person::new()
    };
    error_body(
        team_sign_in(&app, &provider, &team, &stranger).await,
        StatusCode::FORBIDDEN,
        "sso_domain_not_allowed",
    )
    .await;
    assert_eq!(user_id_of(&app, &stranger.email).await, None);

    // A team without SSO, an unknown team, or both kinds of provider at once.
    let other_team = team_of(&app, &owner, 5).await;
    let pkce = pkce();
    for body in [
        json!({"team_id": other_team}),
        json!({"team_id": "00000000-0000-0000-0000-000000000000"}),
    ] {
        let mut body = body;
        body["redirect_uri"] = json!(REDIRECT);
        body["code_challenge"] = json!(pkce.challenge);
        body["code_challenge_method"] = json!("S256");
        error_body(
            app.post_json("/api/v1/auth/oidc/start", &body).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_provider",
        )
        .await;
    }
    error_body(
        app.post_json(
            "/api/v1/auth/oidc/start",
            &json!({"team_id": team, "provider": "google", "redirect_uri": REDIRECT,
                    "code_challenge": pkce.challenge, "code_challenge_method": "S256"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_error",
    )
    .await;

    // Once the team's SSO is removed, a started sign-in cannot finish through it.
    provider.set_person(&person);
    let started = json_of(
        app.post_json(
            "/api/v1/auth/oidc/start",
            &json!({"team_id": team, "redirect_uri": REDIRECT,
                    "code_challenge": pkce.challenge, "code_challenge_method": "S256"}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let (code, state) = provider
        .authorize(started["authorization_url"].as_str().unwrap())
        .await;
    assert_eq!(
        call(
            &app,
            Method::DELETE,
            &format!("/teams/{team}/sso"),
            &owner,
            None
        )
        .await
        .status(),
        StatusCode::NO_CONTENT
    );
    error_body(
        callback(&app, &state, &code, &pkce.verifier).await,
        StatusCode::UNAUTHORIZED,
        "oidc_invalid",
    )
    .await;
}

async fn a_new_account_joins_only_while_a_seat_is_free(backend: Backend) {
    let app = sso_app(backend).await;
    let provider = FakeProvider::start().await;
    let owner = app.register_user().await;
    // Two seats: the owner's, and one held by a pending invitation of someone else.
    let team = team_of(&app, &owner, 2).await;
    json_of(
        call(
            &app,
            Method::POST,
            &format!("/teams/{team}/invitations"),
            &owner,
            Some(json!({"email": "invited@elsewhere.org", "role": "member"})),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    json_of(
        put_sso(
            &app,
            &owner,
            &team,
            settings(&provider.issuer, &["example.com"], false),
        )
        .await,
        StatusCode::OK,
    )
    .await;

    let person = Person::new();
    error_body(
        team_sign_in(&app, &provider, &team, &person).await,
        StatusCode::CONFLICT,
        "seats_exhausted",
    )
    .await;
    // Nothing was created: no account, no identity, no membership, nothing in the log.
    assert_eq!(user_id_of(&app, &person.email).await, None);
    let identities: i64 = adiuva_db::sqlx::query_scalar("SELECT COUNT(*) FROM user_identities")
        .fetch_one(app.database.db.pool())
        .await
        .unwrap();
    assert_eq!(identities, 0);
    assert!(
        !team_event_types(&app, &owner, &team)
            .await
            .contains(&"member_joined".to_owned())
    );

    // A third seat lets them in.
    activate_team(&app, &team, 3).await;
    json_of(
        team_sign_in(&app, &provider, &team, &person).await,
        StatusCode::OK,
    )
    .await;
    let user_id = user_id_of(&app, &person.email).await.unwrap();
    assert_eq!(
        role_in(&app, &team, &user_id).await.as_deref(),
        Some("member")
    );

    // A pending invitation of the new account's own email holds its seat: it is accepted by
    // the join, with its role, and not counted twice.
    activate_team(&app, &team, 4).await;
    let invited = Person::new();
    json_of(
        call(
            &app,
            Method::POST,
            &format!("/teams/{team}/invitations"),
            &owner,
            Some(json!({"email": invited.email, "role": "admin"})),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    json_of(
        team_sign_in(&app, &provider, &team, &invited).await,
        StatusCode::OK,
    )
    .await;
    let invited_id = user_id_of(&app, &invited.email).await.unwrap();
    assert_eq!(
        role_in(&app, &team, &invited_id).await.as_deref(),
        Some("admin")
    );
    let states: Vec<Value> = json_of(
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
    .await
    .as_array()
    .unwrap()
    .clone();
    let accepted = states
        .iter()
        .find(|invitation| invitation["email"] == invited.email.as_str())
        .unwrap();
    assert_eq!(accepted["state"], "accepted");
}

async fn a_hostile_teams_provider_cannot_sign_into_a_non_member(backend: Backend) {
    let app = sso_app(backend).await;
    let honest = FakeProvider::start().await;
    let hostile = FakeProvider::start().await;

    // The victim has a password account, and is a member of an honest team whose provider
    // linked an identity to it.
    let victim = app.register_user().await;
    let honest_owner = app.register_user().await;
    let honest_team = team_of(&app, &honest_owner, 5).await;
    json_of(
        put_sso(
            &app,
            &honest_owner,
            &honest_team,
            settings(&honest.issuer, &["example.com"], false),
        )
        .await,
        StatusCode::OK,
    )
    .await;

    // A hostile team of the same domain, with a provider of its own.
    let attacker = app.register_user().await;
    let hostile_team = team_of(&app, &attacker, 5).await;
    json_of(
        put_sso(
            &app,
            &attacker,
            &hostile_team,
            settings(&hostile.issuer, &["example.com"], false),
        )
        .await,
        StatusCode::OK,
    )
    .await;

    // Its provider asserts the victim's email: refused, nothing linked or joined.
    let forged = Person {
        email: victim.email.clone(),
        ..Person::new()
    };
    error_body(
        team_sign_in(&app, &hostile, &hostile_team, &forged).await,
        StatusCode::FORBIDDEN,
        "sso_not_member",
    )
    .await;
    // So is the honest team's provider for the victim, who is not in that team either.
    error_body(
        team_sign_in(&app, &honest, &honest_team, &forged).await,
        StatusCode::FORBIDDEN,
        "sso_not_member",
    )
    .await;
    let linked: i64 =
        adiuva_db::sqlx::query_scalar("SELECT COUNT(*) FROM user_identities WHERE user_id = $1")
            .bind(&victim.id)
            .fetch_one(app.database.db.pool())
            .await
            .unwrap();
    assert_eq!(linked, 0);
    assert_eq!(role_in(&app, &hostile_team, &victim.id).await, None);

    // A member of the honest team signs up through it; then the hostile team points its SSO at
    // the honest team's issuer: the member's own identity still does not sign in through the
    // hostile team, whose member they are not.
    let member = Person::new();
    json_of(
        team_sign_in(&app, &honest, &honest_team, &member).await,
        StatusCode::OK,
    )
    .await;
    json_of(
        put_sso(
            &app,
            &attacker,
            &hostile_team,
            settings(&honest.issuer, &["example.com"], false),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    error_body(
        team_sign_in(&app, &honest, &hostile_team, &member).await,
        StatusCode::FORBIDDEN,
        "sso_not_member",
    )
    .await;
    let member_id = user_id_of(&app, &member.email).await.unwrap();
    assert_eq!(role_in(&app, &hostile_team, &member_id).await, None);
    // The victim's password still works, and nothing of theirs changed.
    assert_eq!(
        app.login(&victim.email, &victim.password).await.status(),
        StatusCode::OK
    );
    // A member whose email has an unlinked account signs in and links, as for Google.
    let victim_in_team = Person {
        email: victim.email.clone(),
        ..Person::new()
    };
    adiuva_db::sqlx::query(
        "INSERT INTO team_members (team_id, user_id, role, joined_at) VALUES ($1, $2, 'member', 1)",
    )
    .bind(&honest_team)
    .bind(&victim.id)
    .execute(app.database.db.pool())
    .await
    .unwrap();
    error_body(
        team_sign_in(&app, &honest, &honest_team, &victim_in_team).await,
        StatusCode::CONFLICT,
        "link_required",
    )
    .await;
}

async fn sso_required_refuses_password_sign_in_to_members_but_not_the_owner(backend: Backend) {
    let app = sso_app(backend).await;
    let owner = app.register_user().await;
    let member = app.register_user().await;
    let team = team_of(&app, &owner, 5).await;
    add_member(&app, &team, &member, "admin").await;
    // Another domain's member keeps password sign-in.
    let elsewhere = crate::teams::register_as(
        &app,
        &format!("someone-{}@elsewhere.org", uuid::Uuid::new_v4().simple()),
    )
    .await;
    add_member(&app, &team, &elsewhere, "member").await;

    json_of(
        put_sso(
            &app,
            &owner,
            &team,
            settings("https://idp.example.com", &["example.com"], false),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        app.login(&member.email, &member.password).await.status(),
        StatusCode::OK
    );

    json_of(
        put_sso(
            &app,
            &owner,
            &team,
            settings("https://idp.example.com", &["example.com"], true),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    error_body(
        app.login(&member.email, &member.password).await,
        StatusCode::FORBIDDEN,
        "sso_required",
    )
    .await;
    // Said only to the right password: a wrong one is the usual 401.
    error_body(
        app.login(&member.email, "not-the-password").await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    // The owner keeps password sign-in, so a broken provider cannot lock the team out.
    assert_eq!(
        app.login(&owner.email, &owner.password).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.login(&elsewhere.email, &elsewhere.password)
            .await
            .status(),
        StatusCode::OK
    );
    // Leaving the team gives password sign-in back.
    assert_eq!(
        call(
            &app,
            Method::DELETE,
            &format!("/teams/{team}/members/{}", member.id),
            &member,
            None,
        )
        .await
        .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.login(&member.email, &member.password).await.status(),
        StatusCode::OK
    );
}
