//! A fake OpenID provider for the tests, speaking the real protocol on loopback: the discovery
//! document (`/.well-known/openid-configuration`), a JWKS with `Cache-Control` (an RSA key from
//! `tests/fixtures/oidc/`, an ES256 key made with ring at start, and the keys of later
//! rotations), the authorization endpoint (which plays the person signing in: it records the
//! request and redirects to `redirect_uri` with a code and the state), and a token endpoint that
//! checks the form body (grant type, code, redirect URI, client id and secret, the PKCE verifier
//! against the challenge), refuses a code twice, and answers with a signed ID token.
//!
//! Tests choose who signs in ([`FakeProvider::set_person`]), how the next ID tokens are
//! forged ([`Forgery`]), which key signs ([`FakeProvider::use_es256`],
//! [`FakeProvider::rotate`]) and whether the provider is down.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _, RSA_PKCS1_SHA256, RsaKeyPair,
};
use serde_json::{Map, Value, json};

pub const CLIENT_ID: &str = "adiuva-test.apps.example";
pub const CLIENT_SECRET: &str = "adiuva-test-client-secret";

/// The person the authorization endpoint signs in.
#[derive(Debug, Clone)]
pub struct Person {
    pub subject: String,
    pub email: String,
    pub email_verified: bool,
}

impl Person {
    /// A verified person with a unique subject and email.
    pub fn new() -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        Self {
            subject: format!("sub-{id}"),
            email: format!("person-{id}@example.com"),
            email_verified: true,
        }
    }
}

impl Default for Person {
    fn default() -> Self {
        Self::new()
    }
}

/// How the next ID tokens are made wrong.
#[derive(Debug, Clone, Default)]
pub struct Forgery {
    /// Claims set (or, as `null`, removed) over the honest ones.
    pub claims: Map<String, Value>,
    /// `none` (no signature) or `HS256` (an HMAC keyed with the RSA public key) instead of the
    /// signing key's algorithm.
    pub alg: Option<&'static str>,
    /// Signed by a key the JWKS does not hold, under the kid of the signing key.
    pub foreign_key: bool,
    /// Signed with the signing key under a kid that the JWKS does not hold.
    pub unknown_kid: bool,
}

enum Key {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

struct Signer {
    kid: String,
    key: Key,
}

impl Signer {
    fn ec(kid: &str) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        Self {
            kid: kid.to_owned(),
            key: Key::Ec(key),
        }
    }

    fn rsa(kid: &str) -> Self {
        Self {
            kid: kid.to_owned(),
            key: Key::Rsa(RsaKeyPair::from_pkcs8(&fixture_rsa_pkcs8()).unwrap()),
        }
    }

    fn alg(&self) -> &'static str {
        match self.key {
            Key::Rsa(_) => "RS256",
            Key::Ec(_) => "ES256",
        }
    }

    fn jwk(&self) -> Value {
        match &self.key {
            Key::Rsa(key) => {
                let public: ring::rsa::PublicKeyComponents<Vec<u8>> = key.public().into();
                json!({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid,
                       "n": URL_SAFE_NO_PAD.encode(&public.n), "e": URL_SAFE_NO_PAD.encode(&public.e)})
            }
            Key::Ec(key) => {
                let point = key.public_key().as_ref();
                json!({"kty": "EC", "use": "sig", "alg": "ES256", "crv": "P-256", "kid": self.kid,
                       "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65])})
            }
        }
    }

    fn sign(&self, message: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match &self.key {
            Key::Rsa(key) => {
                let mut signature = vec![0; key.public().modulus_len()];
                key.sign(&RSA_PKCS1_SHA256, &rng, message, &mut signature)
                    .unwrap();
                signature
            }
            Key::Ec(key) => key.sign(&rng, message).unwrap().as_ref().to_vec(),
        }
    }
}

/// The committed test key (`openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048`),
/// PEM to PKCS#8 DER.
fn fixture_rsa_pkcs8() -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/oidc/test-only-rsa-signing-key.pem");
    let pem = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{path:?}: {err}"));
    let body: String = pem
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    STANDARD.decode(body).unwrap()
}

/// A code the authorization endpoint gave out.
struct Grant {
    redirect_uri: String,
    nonce: String,
    code_challenge: String,
    person: Person,
    used: bool,
}

struct Provider {
    issuer: String,
    /// The published keys; `signing` is the one that signs.
    keys: Vec<Signer>,
    signing: usize,
    /// Made once, never published: what forged tokens are signed with.
    foreign: Signer,
    codes: HashMap<String, Grant>,
    person: Person,
    forgery: Forgery,
    down: bool,
    jwks_max_age: u64,
    jwks_fetches: usize,
    /// The form bodies the token endpoint received.
    token_requests: Vec<Vec<(String, String)>>,
    /// The query of each authorization request.
    authorizations: Vec<HashMap<String, String>>,
    rotations: usize,
}

type Shared = Arc<Mutex<Provider>>;

/// The fake provider; clones share it.
#[derive(Clone)]
pub struct FakeProvider {
    pub issuer: String,
    state: Shared,
}

impl std::fmt::Debug for FakeProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeProvider")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl FakeProvider {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(Provider {
            issuer: issuer.clone(),
            keys: vec![Signer::rsa("rsa-1"), Signer::ec("ec-1")],
            signing: 0,
            foreign: Signer::ec("foreign"),
            codes: HashMap::new(),
            person: Person::new(),
            forgery: Forgery::default(),
            down: false,
            jwks_max_age: 3600,
            jwks_fetches: 0,
            token_requests: Vec::new(),
            authorizations: Vec::new(),
            rotations: 0,
        }));
        let app = axum::Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { issuer, state }
    }

    fn lock(&self) -> MutexGuard<'_, Provider> {
        self.state.lock().unwrap()
    }

    /// The settings that make this fake the app's Google.
    pub fn settings(&self) -> Vec<(&'static str, String)> {
        vec![
            ("GOOGLE_CLIENT_ID", CLIENT_ID.to_owned()),
            ("GOOGLE_CLIENT_SECRET", CLIENT_SECRET.to_owned()),
            ("GOOGLE_ISSUER", self.issuer.clone()),
        ]
    }

    /// Who the next authorization signs in.
    pub fn set_person(&self, person: &Person) {
        self.lock().person = person.clone();
    }

    /// How the next ID tokens are forged (`Forgery::default()`: honest again).
    pub fn forge(&self, forgery: Forgery) {
        self.lock().forgery = forgery;
    }

    /// Signs with the published ES256 key from now on.
    pub fn use_es256(&self) {
        let mut provider = self.lock();
        provider.signing = provider
            .keys
            .iter()
            .position(|key| key.kid == "ec-1")
            .unwrap();
    }

    /// Rotates the keys: a new ES256 key with a new kid signs from now on and is published in
    /// place of the others.
    pub fn rotate(&self) {
        let mut provider = self.lock();
        provider.rotations += 1;
        let signer = Signer::ec(&format!("rotated-{}", provider.rotations));
        provider.keys = vec![signer];
        provider.signing = 0;
    }

    /// Every endpoint answers 503 while down.
    pub fn set_down(&self, down: bool) {
        self.lock().down = down;
    }

    /// The JWKS's `Cache-Control: max-age`.
    pub fn set_jwks_max_age(&self, seconds: u64) {
        self.lock().jwks_max_age = seconds;
    }

    /// How many times the JWKS was fetched.
    pub fn jwks_fetches(&self) -> usize {
        self.lock().jwks_fetches
    }

    /// The form bodies the token endpoint received.
    pub fn token_requests(&self) -> Vec<Vec<(String, String)>> {
        self.lock().token_requests.clone()
    }

    /// The queries of the authorization requests.
    pub fn authorizations(&self) -> Vec<HashMap<String, String>> {
        self.lock().authorizations.clone()
    }

    /// Plays the browser: opens `authorization_url` and follows nothing. Returns the `code`
    /// and `state` of the provider's redirect to the app.
    pub async fn authorize(&self, authorization_url: &str) -> (String, String) {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let response = client.get(authorization_url).send().await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::FOUND,
            "the provider did not redirect"
        );
        let location = response.headers()[header::LOCATION]
            .to_str()
            .unwrap()
            .to_owned();
        let url = url::Url::parse(&location).unwrap();
        let query: HashMap<String, String> = url.query_pairs().into_owned().collect();
        (query["code"].clone(), query["state"].clone())
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn unavailable() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, "down").into_response()
}

async fn discovery(State(state): State<Shared>) -> Response {
    let provider = state.lock().unwrap();
    if provider.down {
        return unavailable();
    }
    let issuer = &provider.issuer;
    axum::Json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_post"],
    }))
    .into_response()
}

async fn jwks(State(state): State<Shared>) -> Response {
    let mut provider = state.lock().unwrap();
    if provider.down {
        return unavailable();
    }
    provider.jwks_fetches += 1;
    let keys: Vec<Value> = provider.keys.iter().map(Signer::jwk).collect();
    (
        [(
            header::CACHE_CONTROL,
            format!("public, max-age={}, must-revalidate", provider.jwks_max_age),
        )],
        axum::Json(json!({ "keys": keys })),
    )
        .into_response()
}

async fn authorize(
    State(state): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let mut provider = state.lock().unwrap();
    if provider.down {
        return unavailable();
    }
    provider.authorizations.push(query.clone());
    let field = |name: &str| query.get(name).cloned().unwrap_or_default();
    if field("response_type") != "code"
        || field("client_id") != CLIENT_ID
        || !field("scope").split(' ').any(|scope| scope == "openid")
        || field("code_challenge_method") != "S256"
    {
        return (StatusCode::BAD_REQUEST, "invalid_request").into_response();
    }
    let code = format!("code-{}", uuid::Uuid::new_v4().simple());
    let person = provider.person.clone();
    provider.codes.insert(
        code.clone(),
        Grant {
            redirect_uri: field("redirect_uri"),
            nonce: field("nonce"),
            code_challenge: field("code_challenge"),
            person,
            used: false,
        },
    );
    let mut redirect = url::Url::parse(&field("redirect_uri")).unwrap();
    redirect
        .query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", &field("state"));
    (
        StatusCode::FOUND,
        [(header::LOCATION, redirect.to_string())],
    )
        .into_response()
}

fn token_error(error: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({ "error": error })),
    )
        .into_response()
}

async fn token(State(state): State<Shared>, body: axum::body::Bytes) -> Response {
    let mut provider = state.lock().unwrap();
    if provider.down {
        return unavailable();
    }
    let form: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    provider.token_requests.push(form.clone());
    let field = |name: &str| {
        form.iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
            .unwrap_or_default()
    };
    if field("grant_type") != "authorization_code" {
        return token_error("unsupported_grant_type");
    }
    if field("client_id") != CLIENT_ID || field("client_secret") != CLIENT_SECRET {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    let Some(grant) = provider.codes.get_mut(&field("code")) else {
        return token_error("invalid_grant");
    };
    // A code works once (RFC 6749, 4.1.2), for its redirect URI and the verifier of its
    // challenge (RFC 7636, 4.6).
    let verifier = field("code_verifier");
    let challenge = URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        verifier.as_bytes(),
    ));
    if grant.used
        || grant.redirect_uri != field("redirect_uri")
        || grant.code_challenge != challenge
    {
        return token_error("invalid_grant");
    }
    grant.used = true;
    let nonce = grant.nonce.clone();
    let person = grant.person.clone();
    let id_token = provider.id_token(&person, &nonce);
    axum::Json(json!({
        "access_token": format!("at-{}", uuid::Uuid::new_v4().simple()),
        "token_type": "Bearer",
        "expires_in": 3599,
        "scope": "openid email",
        "id_token": id_token,
    }))
    .into_response()
}

impl Provider {
    fn id_token(&self, person: &Person, nonce: &str) -> String {
        let now = now();
        let mut claims = json!({
            "iss": self.issuer, "aud": CLIENT_ID, "azp": CLIENT_ID, "sub": person.subject,
            "email": person.email, "email_verified": person.email_verified,
            "iat": now, "exp": now + 3600, "nonce": nonce,
        });
        for (key, value) in &self.forgery.claims {
            if value.is_null() {
                claims.as_object_mut().unwrap().remove(key);
            } else {
                claims[key] = value.clone();
            }
        }
        let signer = &self.keys[self.signing];
        let kid = if self.forgery.unknown_kid {
            "never-published"
        } else {
            signer.kid.as_str()
        };
        let alg = self.forgery.alg.unwrap_or(signer.alg());
        let header = json!({"alg": alg, "kid": kid, "typ": "JWT"});
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = match alg {
            "none" => Vec::new(),
            "HS256" => {
                // The classic confusion: an HMAC keyed with the provider's public RSA key.
                let Key::Rsa(rsa) = &self.keys[0].key else {
                    unreachable!("the first key is the RSA one")
                };
                let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, rsa.public().as_ref());
                ring::hmac::sign(&key, message.as_bytes()).as_ref().to_vec()
            }
            _ if self.forgery.foreign_key => self.foreign.sign(message.as_bytes()),
            _ => signer.sign(message.as_bytes()),
        };
        format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature))
    }
}
