//! A fake Stripe API for the tests, speaking Stripe's wire format: form-encoded requests
//! (recorded, with their idempotency keys, so tests check the fields sent), JSON objects built
//! from Stripe's own example objects (`tests/fixtures/stripe/`, from the public stripe/openapi
//! fixtures, which async-stripe's types parse), Stripe's error bodies, idempotent replays, and
//! webhook deliveries signed with the real `t=...,v1=...` HMAC-SHA256 scheme.
//!
//! It keeps the customers, checkout sessions, subscriptions, payment intents, charges, transfers
//! (with their reversals), disputes and Connect accounts it made; tests play the part of the
//! user paying ([`FakeStripe::complete_checkout`], [`FakeStripe::complete_payment`]), of Stripe
//! changing a subscription ([`FakeStripe::set_status`], [`FakeStripe::set_quantity`] as the
//! Billing Portal does for a team's seats), of an admin refunding a charge
//! ([`FakeStripe::refund`]), of a buyer's bank disputing one ([`FakeStripe::dispute`]), of a
//! developer finishing onboarding ([`FakeStripe::enable_payouts`]) and of time passing beyond
//! Stripe's 24 hours of idempotency ([`FakeStripe::forget_idempotency_keys`]), then deliver
//! the events Stripe would send.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::harness::TestApp;

pub const SECRET_KEY: &str = "sk_test_adiuva_fake";
pub const WEBHOOK_SECRET: &str = "whsec_adiuva_fake";

/// One of Stripe's example objects, by its fixture name (`subscription`, `checkout.session`).
pub fn fixture(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/stripe")
        .join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{path:?}: {err}"));
    serde_json::from_str(&text).unwrap()
}

/// A request the fake received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// The form fields, in order (`line_items[0][price]`, ...).
    pub form: Vec<(String, String)>,
    pub idempotency_key: Option<String>,
}

impl Recorded {
    /// The value of a form field.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// A request's form fields, in order.
type Form = Vec<(String, String)>;

/// What answered a POST with an idempotency key: its form, status and body.
type Replay = (Form, u16, Value);

#[derive(Debug, Default)]
struct Ledger {
    requests: Vec<Recorded>,
    /// Idempotency key -> (the request's form, the answer), as Stripe keeps them for 24 h.
    replays: HashMap<String, Replay>,
    customers: HashMap<String, Value>,
    sessions: HashMap<String, (Value, Form)>,
    subscriptions: HashMap<String, Value>,
    payment_intents: HashMap<String, Value>,
    charges: HashMap<String, Value>,
    transfers: HashMap<String, Value>,
    disputes: HashMap<String, Value>,
    accounts: HashMap<String, Value>,
    down: bool,
    next: u64,
    /// Where the fake serves, for the `url` of checkout sessions.
    base_url: String,
}

#[derive(Clone, Debug)]
pub struct FakeStripe {
    pub base_url: String,
    state: Arc<Mutex<Ledger>>,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn stripe_error(status: StatusCode, kind: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": {"type": kind, "message": message}})),
    )
        .into_response()
}

impl FakeStripe {
    pub async fn start() -> Self {
        Self::serve(None).await
    }

    /// The fake with Stripe's hosted checkout page too: opening a session's `url`
    /// (`GET {base_url}/c/pay/{id}`) pays it, as the user would, and delivers
    /// `checkout.session.completed`, signed, to `webhook_url`. For runs outside the tests (the
    /// `fakes` binary), where no test plays the user.
    pub async fn start_hosted(webhook_url: String) -> Self {
        Self::serve(Some(webhook_url)).await
    }

    async fn serve(webhook_url: Option<String>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let base_url = format!("http://{address}");
        let state = Arc::new(Mutex::new(Ledger {
            base_url: base_url.clone(),
            ..Ledger::default()
        }));
        let stripe = Self { base_url, state };
        let mut app = axum::Router::new()
            .fallback(handle)
            .with_state(stripe.state.clone());
        if let Some(webhook_url) = webhook_url {
            let page = axum::Router::new()
                .route("/c/pay/{id}", axum::routing::get(hosted_checkout))
                .with_state((stripe.clone(), webhook_url));
            app = app.merge(page);
        }
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        stripe
    }

    fn lock(&self) -> MutexGuard<'_, Ledger> {
        self.state.lock().unwrap()
    }

    /// The settings that point billing at this fake.
    pub fn settings(&self) -> Vec<(&'static str, String)> {
        vec![
            ("STRIPE_SECRET_KEY", SECRET_KEY.to_owned()),
            ("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET.to_owned()),
            ("STRIPE_API_BASE", self.base_url.clone()),
        ]
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// The requests to `method path`.
    pub fn requests_to(&self, method: &str, path: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|request| request.method == method && request.path == path)
            .collect()
    }

    /// Every request answers 500 while down.
    pub fn set_down(&self, down: bool) {
        self.lock().down = down;
    }

    pub fn subscription(&self, id: &str) -> Value {
        self.lock().subscriptions[id].clone()
    }

    /// Stripe changes a subscription's status (a payment failed, the retries ran out, ...).
    pub fn set_status(&self, id: &str, status: &str) {
        let mut state = self.lock();
        let subscription = state
            .subscriptions
            .get_mut(id)
            .expect("no such subscription");
        subscription["status"] = json!(status);
        if status == "canceled" {
            subscription["canceled_at"] = json!(now());
            subscription["ended_at"] = json!(now());
        }
    }

    /// Someone changes a subscription's price (and its metadata's tier) at Stripe.
    pub fn set_price(&self, id: &str, price: &str, tier: &str) {
        let mut state = self.lock();
        let subscription = state
            .subscriptions
            .get_mut(id)
            .expect("no such subscription");
        subscription["items"]["data"][0]["price"]["id"] = json!(price);
        subscription["metadata"]["tier"] = json!(tier);
    }

    /// The customer changes a subscription's quantity in the Billing Portal (a team's seats).
    pub fn set_quantity(&self, id: &str, quantity: u64) {
        let mut state = self.lock();
        let subscription = state
            .subscriptions
            .get_mut(id)
            .expect("no such subscription");
        subscription["items"]["data"][0]["quantity"] = json!(quantity);
    }

    /// Stripe moves a subscription's paid period (a renewal, an extension in the dashboard).
    pub fn set_period_end(&self, id: &str, period_end_secs: i64) {
        let mut state = self.lock();
        let subscription = state
            .subscriptions
            .get_mut(id)
            .expect("no such subscription");
        subscription["items"]["data"][0]["current_period_end"] = json!(period_end_secs);
    }

    /// The user pays on the hosted page: the session completes and its subscription starts.
    /// Returns the session (as the `checkout.session.completed` event carries it) and the
    /// subscription id.
    pub fn complete_checkout(&self, checkout_url: &str) -> (Value, String) {
        let mut state = self.lock();
        let session_id = checkout_url.rsplit('/').next().unwrap().to_owned();
        let (mut session, form) = state.sessions[&session_id].clone();
        state.next += 1;
        let subscription_id = format!("sub_fake{:05}", state.next);
        let field = |name: &str| {
            form.iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        };
        let metadata: serde_json::Map<String, Value> = form
            .iter()
            .filter_map(|(key, value)| {
                key.strip_prefix("subscription_data[metadata][")
                    .and_then(|key| key.strip_suffix(']'))
                    .map(|key| (key.to_owned(), json!(value)))
            })
            .collect();
        let mut subscription = fixture("subscription");
        let period_end = now() + 30 * 24 * 60 * 60;
        subscription["id"] = json!(subscription_id);
        subscription["customer"] = json!(field("customer"));
        subscription["status"] = json!("active");
        subscription["created"] = json!(now() + state.next as i64);
        subscription["cancel_at_period_end"] = json!(false);
        subscription["cancel_at"] = Value::Null;
        subscription["canceled_at"] = Value::Null;
        subscription["ended_at"] = Value::Null;
        subscription["metadata"] = Value::Object(metadata);
        let quantity: u64 = field("line_items[0][quantity]")
            .and_then(|quantity| quantity.parse().ok())
            .unwrap_or(1);
        let item = &mut subscription["items"]["data"][0];
        item["id"] = json!(format!("si_fake{:05}", state.next));
        item["price"]["id"] = json!(field("line_items[0][price]"));
        item["quantity"] = json!(quantity);
        item["current_period_end"] = json!(period_end);
        item["subscription"] = json!(subscription_id);
        state
            .subscriptions
            .insert(subscription_id.clone(), subscription);
        session["status"] = json!("complete");
        session["payment_status"] = json!("paid");
        session["subscription"] = json!(subscription_id);
        state.sessions.insert(session_id, (session.clone(), form));
        (session, subscription_id)
    }

    /// The buyer pays a payment-mode session: its payment intent and charge are made, and the
    /// session is complete and paid. Returns the session (as `checkout.session.completed`
    /// carries it) and the charge id.
    pub fn complete_payment(&self, checkout_url: &str) -> (Value, String) {
        let mut state = self.lock();
        let session_id = checkout_url.rsplit('/').next().unwrap().to_owned();
        let (mut session, form) = state.sessions[&session_id].clone();
        assert_eq!(session["mode"], "payment", "not a payment session");
        assert_eq!(
            session["status"], "open",
            "only an open session can be paid"
        );
        state.next += 1;
        let n = state.next;
        let amount = session["amount_total"].as_i64().unwrap();
        let charge_id = format!("ch_fake{n:05}");
        let intent_id = format!("pi_fake{n:05}");
        let mut charge = fixture("charge");
        charge["id"] = json!(charge_id);
        charge["amount"] = json!(amount);
        charge["amount_captured"] = json!(amount);
        charge["currency"] = json!("eur");
        charge["paid"] = json!(true);
        charge["captured"] = json!(true);
        charge["payment_intent"] = json!(intent_id);
        charge["transfer_group"] = session["__transfer_group"].clone();
        let mut intent = fixture("payment_intent");
        intent["id"] = json!(intent_id);
        intent["amount"] = json!(amount);
        intent["currency"] = json!("eur");
        intent["status"] = json!("succeeded");
        intent["latest_charge"] = json!(charge_id);
        intent["metadata"] = session["__intent_metadata"].clone();
        intent["transfer_group"] = session["__transfer_group"].clone();
        state.charges.insert(charge_id.clone(), charge);
        state.payment_intents.insert(intent_id.clone(), intent);
        session["status"] = json!("complete");
        session["payment_status"] = json!("paid");
        session["payment_intent"] = json!(intent_id);
        state.sessions.insert(session_id, (session.clone(), form));
        (public(&session), charge_id)
    }

    /// A session as Stripe would send it now.
    pub fn session(&self, id: &str) -> Value {
        public(&self.lock().sessions[id].0)
    }

    pub fn charge(&self, id: &str) -> Value {
        self.lock().charges[id].clone()
    }

    pub fn transfer(&self, id: &str) -> Value {
        self.lock().transfers[id].clone()
    }

    pub fn account(&self, id: &str) -> Value {
        self.lock().accounts[id].clone()
    }

    /// Refunds a charge (all of it, or `amount` cents); returns the charge.
    pub fn refund(&self, charge_id: &str, amount: Option<i64>) -> Value {
        let mut state = self.lock();
        let charge = state.charges.get_mut(charge_id).expect("no such charge");
        let total = charge["amount"].as_i64().unwrap();
        let refunded = amount.unwrap_or(total);
        charge["amount_refunded"] = json!(refunded);
        charge["refunded"] = json!(refunded == total);
        charge.clone()
    }

    /// The buyer's bank disputes a charge (a new dispute), or a dispute moves to `status`
    /// (`needs_response`, `under_review`, `won`, `lost`, ...). Returns the dispute.
    pub fn dispute(&self, charge_id: &str, status: &str) -> Value {
        let mut state = self.lock();
        let existing = state
            .disputes
            .values()
            .find(|dispute| dispute["charge"] == charge_id)
            .map(|dispute| dispute["id"].as_str().unwrap().to_owned());
        let id = match existing {
            Some(id) => id,
            None => {
                state.next += 1;
                let id = format!("dp_fake{:05}", state.next);
                let amount = state.charges[charge_id]["amount"].clone();
                let mut dispute = fixture("dispute");
                dispute["id"] = json!(id);
                dispute["charge"] = json!(charge_id);
                dispute["amount"] = amount;
                dispute["currency"] = json!("eur");
                dispute["created"] = json!(now());
                state.disputes.insert(id.clone(), dispute);
                if let Some(charge) = state.charges.get_mut(charge_id) {
                    charge["disputed"] = json!(true);
                }
                id
            }
        };
        let dispute = state.disputes.get_mut(&id).unwrap();
        dispute["status"] = json!(status);
        dispute.clone()
    }

    /// Stripe keeps an idempotency key for 24 hours: after that, the same key makes a new
    /// object. This forgets every key, as if a day had passed.
    pub fn forget_idempotency_keys(&self) {
        self.lock().replays.clear();
    }

    /// The developer finishes onboarding: payouts are enabled. Returns the account.
    pub fn enable_payouts(&self, account_id: &str) -> Value {
        let mut state = self.lock();
        let account = state.accounts.get_mut(account_id).expect("no such account");
        account["payouts_enabled"] = json!(true);
        account["details_submitted"] = json!(true);
        account["charges_enabled"] = json!(true);
        account.clone()
    }

    /// A Stripe event of `kind` about `object`, and its `Stripe-Signature` made at `at`
    /// (unix seconds) with `secret`.
    pub fn event(&self, kind: &str, object: &Value) -> Value {
        let mut state = self.lock();
        state.next += 1;
        let mut event = fixture("event");
        event["id"] = json!(format!("evt_fake{:05}", state.next));
        event["type"] = json!(kind);
        event["created"] = json!(now());
        event["data"] = json!({"object": object});
        event
    }

    /// Delivers `payload` to the app's webhook, signed now with the webhook secret.
    pub async fn deliver_raw(
        app: &TestApp,
        payload: &str,
        signature: Option<String>,
    ) -> reqwest::Response {
        let mut request = app
            .request(reqwest::Method::POST, "/api/v1/billing/webhook")
            .header("content-type", "application/json")
            .body(payload.to_owned());
        if let Some(signature) = signature {
            request = request.header("stripe-signature", signature);
        }
        request.send().await.unwrap()
    }

    /// Delivers an event, correctly signed.
    pub async fn deliver(app: &TestApp, event: &Value) -> reqwest::Response {
        let payload = event.to_string();
        Self::deliver_raw(
            app,
            &payload,
            Some(signature(WEBHOOK_SECRET, &payload, now())),
        )
        .await
    }
}

/// `t=<at>,v1=<hex HMAC-SHA256 of "{at}.{payload}">`, Stripe's scheme.
pub fn signature(secret: &str, payload: &str, at: i64) -> String {
    let mac =
        adiuva_checksum::hmac_sha256_hex(secret.as_bytes(), format!("{at}.{payload}").as_bytes());
    format!("t={at},v1={mac}")
}

pub fn now_secs() -> i64 {
    now()
}

/// A stored object without the fake's own bookkeeping fields (`__...`).
fn public(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(fields) = object.as_object_mut() {
        fields.retain(|key, _| !key.starts_with("__"));
    }
    object
}

/// Stripe's 400 for a parameter it refuses.
fn invalid(message: &str) -> (u16, Value) {
    (
        400,
        json!({"error": {"type": "invalid_request_error", "message": message}}),
    )
}

/// A quantity Stripe takes: a positive integer.
fn positive(quantity: &str) -> bool {
    quantity.parse::<u64>().is_ok_and(|quantity| quantity > 0)
}

fn missing(what: &str) -> (u16, Value) {
    (
        404,
        json!({"error": {"type": "invalid_request_error", "code": "resource_missing", "message": format!("No such {what}")}}),
    )
}

/// Stripe's hosted checkout page: the user pays, and Stripe tells the webhook.
async fn hosted_checkout(
    State((stripe, webhook_url)): State<(FakeStripe, String)>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    let mode = stripe
        .lock()
        .sessions
        .get(&id)
        .map(|(session, _)| session["mode"].clone());
    let session = match mode {
        None => return (StatusCode::NOT_FOUND, "no such checkout session").into_response(),
        Some(mode) if mode == "payment" => stripe.complete_payment(&id).0,
        Some(_) => stripe.complete_checkout(&id).0,
    };
    let payload = stripe
        .event("checkout.session.completed", &session)
        .to_string();
    let delivery = reqwest::Client::new()
        .post(&webhook_url)
        .header("content-type", "application/json")
        .header(
            "stripe-signature",
            signature(WEBHOOK_SECRET, &payload, now()),
        )
        .body(payload)
        .send()
        .await;
    match delivery {
        Ok(answer) if answer.status().is_success() => "paid".into_response(),
        Ok(answer) => (
            StatusCode::BAD_GATEWAY,
            format!("the webhook answered {}", answer.status()),
        )
            .into_response(),
        Err(err) => (
            StatusCode::BAD_GATEWAY,
            format!("the webhook is unreachable: {err}"),
        )
            .into_response(),
    }
}

async fn handle(
    State(state): State<Arc<Mutex<Ledger>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: Vec<(String, String)> = form_urlencoded::parse(&body)
        .chain(form_urlencoded::parse(
            uri.query().unwrap_or_default().as_bytes(),
        ))
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect();
    let key = headers
        .get("idempotency-key")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let mut state = state.lock().unwrap();
    state.requests.push(Recorded {
        method: method.to_string(),
        path: uri.path().to_owned(),
        form: form.clone(),
        idempotency_key: key.clone(),
    });
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {SECRET_KEY}"))
    {
        return stripe_error(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "Invalid API Key provided",
        );
    }
    if state.down {
        return stripe_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            "the fake is down",
        );
    }
    if let Some(key) = &key
        && let Some((sent, status, answer)) = state.replays.get(key)
    {
        if *sent != form {
            return stripe_error(
                StatusCode::BAD_REQUEST,
                "idempotency_error",
                "Keys for idempotent requests can only be used with the same parameters they were first used with.",
            );
        }
        return (
            StatusCode::from_u16(*status).unwrap(),
            axum::Json(answer.clone()),
        )
            .into_response();
    }
    let field = |name: &str| {
        form.iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };
    let metadata = |prefix: &str| -> Value {
        Value::Object(
            form.iter()
                .filter_map(|(key, value)| {
                    key.strip_prefix(prefix)
                        .and_then(|key| key.strip_suffix(']'))
                        .map(|key| (key.to_owned(), json!(value)))
                })
                .collect(),
        )
    };
    let path: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    let (status, answer) = match (method.as_str(), path.as_slice()) {
        ("POST", ["v1", "customers"]) => {
            state.next += 1;
            let id = format!("cus_fake{:05}", state.next);
            let mut customer = fixture("customer");
            customer["id"] = json!(id);
            customer["email"] = json!(field("email"));
            customer["metadata"] = metadata("metadata[");
            customer["created"] = json!(now());
            state.customers.insert(id, customer.clone());
            (200, customer)
        }
        ("POST", ["v1", "checkout", "sessions"])
            if field("mode").as_deref() == Some("subscription")
                && (field("line_items[0][price]").is_none()
                    || !field("line_items[0][quantity]").is_none_or(|q| positive(&q))) =>
        {
            invalid("line_items[0]: a subscription needs a price and a positive integer quantity")
        }
        ("POST", ["v1", "checkout", "sessions"]) => {
            state.next += 1;
            let id = format!("cs_test_fake{:05}", state.next);
            let mut session = fixture("checkout.session");
            session["id"] = json!(id);
            session["mode"] = json!(field("mode"));
            session["customer"] = json!(field("customer"));
            session["client_reference_id"] = json!(field("client_reference_id"));
            session["metadata"] = metadata("metadata[");
            session["success_url"] = json!(field("success_url"));
            session["cancel_url"] = json!(field("cancel_url"));
            session["status"] = json!("open");
            session["payment_status"] = json!("unpaid");
            session["subscription"] = Value::Null;
            session["payment_intent"] = Value::Null;
            session["url"] = json!(format!("{}/c/pay/{id}", state.base_url));
            if field("mode").as_deref() == Some("payment") {
                let unit: i64 = field("line_items[0][price_data][unit_amount]")
                    .and_then(|amount| amount.parse().ok())
                    .unwrap_or_default();
                let quantity: i64 = field("line_items[0][quantity]")
                    .and_then(|quantity| quantity.parse().ok())
                    .unwrap_or(1);
                session["amount_total"] = json!(unit * quantity);
                session["amount_subtotal"] = json!(unit * quantity);
                session["currency"] = json!(field("line_items[0][price_data][currency]"));
                session["__intent_metadata"] = metadata("payment_intent_data[metadata][");
                session["__transfer_group"] = json!(field("payment_intent_data[transfer_group]"));
            }
            state.sessions.insert(id, (session.clone(), form.clone()));
            (200, public(&session))
        }
        ("GET", ["v1", "checkout", "sessions", id]) => match state.sessions.get(*id) {
            Some((session, _)) => (200, public(session)),
            None => missing("checkout session"),
        },
        ("GET", ["v1", "payment_intents", id]) => match state.payment_intents.get(*id) {
            Some(intent) => (200, intent.clone()),
            None => missing("payment intent"),
        },
        ("GET", ["v1", "charges", id]) => match state.charges.get(*id) {
            Some(charge) => (200, charge.clone()),
            None => missing("charge"),
        },
        ("POST", ["v1", "transfers"]) => {
            let source = field("source_transaction");
            if source
                .as_ref()
                .is_some_and(|charge| !state.charges.contains_key(charge))
            {
                missing("charge")
            } else if !field("destination")
                .is_some_and(|account| state.accounts.contains_key(&account))
            {
                missing("destination account")
            } else {
                state.next += 1;
                let id = format!("tr_fake{:05}", state.next);
                let mut transfer = fixture("transfer");
                transfer["id"] = json!(id);
                transfer["amount"] = json!(field("amount").and_then(|a| a.parse::<i64>().ok()));
                transfer["currency"] = json!(field("currency"));
                transfer["destination"] = json!(field("destination"));
                transfer["source_transaction"] = json!(source);
                transfer["transfer_group"] = json!(field("transfer_group"));
                transfer["metadata"] = metadata("metadata[");
                transfer["amount_reversed"] = json!(0);
                transfer["reversed"] = json!(false);
                transfer["reversals"]["url"] = json!(format!("/v1/transfers/{id}/reversals"));
                state.transfers.insert(id, transfer.clone());
                (200, transfer)
            }
        }
        ("GET", ["v1", "transfers"]) => {
            let group = field("transfer_group");
            let mut data: Vec<Value> = state
                .transfers
                .values()
                .filter(|transfer| group.is_none() || transfer["transfer_group"] == json!(group))
                .cloned()
                .collect();
            data.sort_by_key(|transfer| transfer["id"].as_str().unwrap().to_owned());
            (
                200,
                json!({"object": "list", "data": data, "has_more": false, "url": "/v1/transfers"}),
            )
        }
        ("GET", ["v1", "transfers", id]) => match state.transfers.get(*id) {
            Some(transfer) => (200, transfer.clone()),
            None => missing("transfer"),
        },
        ("GET", ["v1", "disputes", id]) => match state.disputes.get(*id) {
            Some(dispute) => (200, dispute.clone()),
            None => missing("dispute"),
        },
        ("POST", ["v1", "checkout", "sessions", id, "expire"]) => {
            match state.sessions.get_mut(*id) {
                Some((session, _)) if session["status"] == "open" => {
                    session["status"] = json!("expired");
                    (200, public(session))
                }
                Some(_) => (
                    400,
                    json!({"error": {"type": "invalid_request_error", "message": "Only Checkout Sessions with a status in [\"open\"] can be expired."}}),
                ),
                None => missing("checkout session"),
            }
        }
        ("POST", ["v1", "transfers", id, "reversals"]) => {
            let id = (*id).to_owned();
            let amount: i64 = field("amount")
                .and_then(|a| a.parse().ok())
                .unwrap_or_default();
            state.next += 1;
            let reversal_id = format!("trr_fake{:05}", state.next);
            match state.transfers.get_mut(&id) {
                Some(transfer) => {
                    let mut reversal = fixture("transfer_reversal");
                    reversal["id"] = json!(reversal_id);
                    reversal["amount"] = json!(amount);
                    reversal["currency"] = transfer["currency"].clone();
                    reversal["transfer"] = json!(id);
                    reversal["metadata"] = metadata("metadata[");
                    let reversed = transfer["amount_reversed"].as_i64().unwrap_or(0) + amount;
                    if reversed > transfer["amount"].as_i64().unwrap() {
                        return stripe_error(
                            StatusCode::BAD_REQUEST,
                            "invalid_request_error",
                            "Amount must be no more than the transfer's amount not reversed yet",
                        );
                    }
                    transfer["amount_reversed"] = json!(reversed);
                    transfer["reversed"] = json!(reversed == transfer["amount"].as_i64().unwrap());
                    (200, reversal)
                }
                None => missing("transfer"),
            }
        }
        ("POST", ["v1", "accounts"]) => {
            state.next += 1;
            let id = format!("acct_fake{:05}", state.next);
            let mut account = fixture("account");
            account["id"] = json!(id);
            account["type"] = json!(field("type"));
            account["email"] = json!(field("email"));
            account["metadata"] = metadata("metadata[");
            account["payouts_enabled"] = json!(false);
            account["details_submitted"] = json!(false);
            account["charges_enabled"] = json!(false);
            state.accounts.insert(id, account.clone());
            (200, account)
        }
        ("GET", ["v1", "accounts", id]) => match state.accounts.get(*id) {
            Some(account) => (200, account.clone()),
            None => missing("account"),
        },
        ("POST", ["v1", "account_links"]) => {
            let account = field("account").unwrap_or_default();
            let mut link = fixture("account_link");
            state.next += 1;
            link["url"] = json!(format!(
                "https://connect.stripe.test/setup/e/{account}/link{:05}",
                state.next
            ));
            link["created"] = json!(now());
            link["expires_at"] = json!(now() + 300);
            (200, link)
        }
        ("GET", ["v1", "subscriptions", id]) => match state.subscriptions.get(*id) {
            Some(subscription) => (200, subscription.clone()),
            None => (
                404,
                json!({"error": {"type": "invalid_request_error", "code": "resource_missing", "message": "No such subscription"}}),
            ),
        },
        ("POST", ["v1", "subscriptions", id]) => match state.subscriptions.get_mut(*id) {
            Some(subscription) => {
                let item_id = subscription["items"]["data"][0]["id"].clone();
                let proration = field("proration_behavior");
                let quantity = field("items[0][quantity]");
                if proration.as_deref().is_some_and(|behavior| {
                    !["create_prorations", "none", "always_invoice"].contains(&behavior)
                }) {
                    invalid("proration_behavior: Invalid value")
                } else if quantity.is_some() && field("items[0][id]").as_deref() != item_id.as_str()
                {
                    // Without the item's id Stripe adds a second item: never what we mean.
                    invalid("items[0][id]: the fake updates the subscription's one item only")
                } else if quantity.as_deref().is_some_and(|q| !positive(q)) {
                    invalid("items[0][quantity]: Invalid integer")
                } else {
                    if let Some(flag) = field("cancel_at_period_end") {
                        subscription["cancel_at_period_end"] = json!(flag == "true");
                    }
                    if let Some(quantity) = quantity {
                        subscription["items"]["data"][0]["quantity"] =
                            json!(quantity.parse::<u64>().unwrap());
                    }
                    (200, subscription.clone())
                }
            }
            None => (
                404,
                json!({"error": {"type": "invalid_request_error", "code": "resource_missing", "message": "No such subscription"}}),
            ),
        },
        ("DELETE", ["v1", "subscriptions", id]) => match state.subscriptions.get_mut(*id) {
            Some(subscription) => {
                subscription["status"] = json!("canceled");
                subscription["canceled_at"] = json!(now());
                subscription["ended_at"] = json!(now());
                (200, subscription.clone())
            }
            None => (
                404,
                json!({"error": {"type": "invalid_request_error", "code": "resource_missing", "message": "No such subscription"}}),
            ),
        },
        ("POST", ["v1", "billing_portal", "sessions"]) => {
            state.next += 1;
            let id = format!("bps_fake{:05}", state.next);
            let mut session = fixture("billing_portal.session");
            session["id"] = json!(id);
            session["customer"] = json!(field("customer"));
            session["return_url"] = json!(field("return_url"));
            session["url"] = json!(format!("https://billing.stripe.test/p/session/{id}"));
            (200, session)
        }
        _ => (
            404,
            json!({"error": {"type": "invalid_request_error", "message": format!("Unrecognized request URL ({method}: {})", uri.path())}}),
        ),
    };
    if let Some(key) = key
        && method == Method::POST
    {
        state.replays.insert(key, (form, status, answer.clone()));
    }
    (StatusCode::from_u16(status).unwrap(), axum::Json(answer)).into_response()
}
