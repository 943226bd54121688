//! Chat over API Gateway's WebSocket API (the deployed counterpart of the local server's
//! `/api/v1/chat/stream`). API Gateway keeps the sockets; this function sees one event per
//! route:
//!
//! - `$connect`: the access token from `?token=` is verified before anything is stored; a bad
//!   or missing one is 401 and API Gateway refuses the connection. A good one stores the
//!   connection (its user, token version and token expiry) in the shared short-lived store,
//!   with a TTL of API Gateway's maximum connection duration (2 h).
//! - `$default`: a message, the `ChatRequest`. Before any model call, the user and token
//!   version are checked again (so logout, token expiry and account deletion end a connected
//!   stream) and the message counts against the tier's rate limit: the same admission as an
//!   HTTP request's (`adiuva_auth::admit`). A `{"action":"resume"}` or `{"action":"cancel"}`
//!   message, or a request with `"resumable": true`, is a resumable stream's
//!   ([`adiuva_chat::streams`]): numbered frames stored before they are sent. Otherwise
//!   the shared streaming loop ([`adiuva_chat::Chat::stream`]) sends text chunks through the
//!   API Gateway Management API as the model produces them (sanitized), then the final frame
//!   `{"done": true, "response", "actions"}` or `{"done": true, "error"}`, the same frames as
//!   the local server. Every frame stays within the API's 32 KB frame limit: a long chunk is
//!   split, and an oversized final frame is sent as parts (see [`frames`]). A connection that
//!   is gone (410) ends the generation.
//! - `$disconnect`: the connection is removed.
//!
//! API Gateway itself keeps idle connections for 10 minutes, so there is no heartbeat here.

use std::time::Duration;

use adiuva_auth::{Accounts, Credential};
use adiuva_aws::AwsSettings;
use adiuva_chat::streams::Poster;
use adiuva_chat::{Chat, Gone, Outlet};
use adiuva_config::{ConfigError, Context};
use adiuva_error::Public;
use adiuva_kv::KvStore;
use adiuva_limits::Limits;
use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_sdk_apigatewaymanagement::Client;
use aws_sdk_apigatewaymanagement::config::BehaviorVersion;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use serde_json::json;
use tracing::Instrument as _;

/// Namespace of the connections in the shared short-lived store.
pub const CONNECTIONS: &str = "ws-connections";
/// API Gateway closes a WebSocket after 2 hours whatever happens.
pub const CONNECTION_TTL: Duration = Duration::from_secs(2 * 60 * 60);
/// API Gateway's WebSocket frame limit.
pub const MAX_FRAME_BYTES: usize = 32 * 1024;

/// The chat-ws function: built once per process from the context, as every function is.
#[derive(Debug, Clone)]
pub struct ChatWs {
    chat: Chat,
    accounts: Accounts,
    limits: Limits,
    connections: KvStore,
    sdk: aws_sdk_apigatewaymanagement::Config,
    /// `WS_MANAGEMENT_ENDPOINT_URL`: a Management API endpoint override (tests); else the
    /// event's domain and stage.
    endpoint: Option<String>,
}

impl ChatWs {
    /// No network I/O: clients connect on first use.
    pub fn new(context: &Context) -> Result<Self, ConfigError> {
        let aws = AwsSettings::from_source(context.source());
        let sdk = adiuva_aws::sdk_config(&aws, &aws.region).map_err(|reason| {
            ConfigError::unusable("the API Gateway Management API client", reason)
        })?;
        Ok(Self {
            chat: context.get()?,
            accounts: context.get()?,
            limits: context.get()?,
            connections: context.get()?,
            sdk: aws_sdk_apigatewaymanagement::config::Builder::from(&sdk)
                .behavior_version(BehaviorVersion::latest())
                .build(),
            endpoint: context.source().url("WS_MANAGEMENT_ENDPOINT_URL"),
        })
    }

    /// Handles one WebSocket API event; the answer's status is what API Gateway acts on
    /// (`$connect`: anything but 200 refuses the connection).
    pub async fn handle(&self, event: ApiGatewayWebsocketProxyRequest) -> ApiGatewayProxyResponse {
        let context = &event.request_context;
        let span = tracing::info_span!(
            "event",
            request_id = context.request_id.as_deref().unwrap_or("unknown"),
            route = context.route_key.as_deref().unwrap_or_default(),
            user_id = tracing::field::Empty,
        );
        let status = self.dispatch(&event).instrument(span).await;
        let mut response = ApiGatewayProxyResponse::default();
        response.status_code = i64::from(status);
        response
    }

    async fn dispatch(&self, event: &ApiGatewayWebsocketProxyRequest) -> u16 {
        let context = &event.request_context;
        let Some(connection_id) = context.connection_id.as_deref().filter(|id| !id.is_empty())
        else {
            tracing::warn!("WebSocket event without a connection id");
            return 400;
        };
        match context.route_key.as_deref().unwrap_or_default() {
            "$connect" => self.connect(connection_id, event).await,
            "$disconnect" => {
                if let Err(err) = self.connections.delete(CONNECTIONS, connection_id).await {
                    tracing::warn!(error = %adiuva_error::cause_chain(&err), "could not remove a closed connection; its TTL will");
                }
                200
            }
            _ => self.message(connection_id, event).await,
        }
    }

    async fn connect(&self, connection_id: &str, event: &ApiGatewayWebsocketProxyRequest) -> u16 {
        let token = event
            .query_string_parameters
            .first("token")
            .unwrap_or_default();
        if token.is_empty() {
            return 401;
        }
        let claims = match self.accounts.verify_token(token) {
            Ok(claims) => claims,
            Err(err) => return refused(&err),
        };
        // The account must exist and the token must not be revoked already.
        let caller = match self
            .accounts
            .caller(&claims.sub, claims.ver, claims.sid.as_deref())
            .await
        {
            Ok(caller) => caller,
            Err(err) => return refused(&err),
        };
        // The session too, so that ending it (logout, `DELETE /auth/sessions/{id}`) ends the
        // stream at its next message.
        let record = json!({
            "user_id": caller.id,
            "token_version": claims.ver,
            "session_id": claims.sid,
            "expires_at": claims.exp,
        });
        match self
            .connections
            .put(CONNECTIONS, connection_id, &record, Some(CONNECTION_TTL))
            .await
        {
            Ok(()) => {
                tracing::info!(user_id = %caller.id, "WebSocket connected");
                200
            }
            Err(err) => {
                tracing::error!(error = %adiuva_error::cause_chain(&err), "could not store the connection");
                503
            }
        }
    }

    fn client(&self, event: &ApiGatewayWebsocketProxyRequest) -> Client {
        let endpoint = self.endpoint.clone().unwrap_or_else(|| {
            let context = &event.request_context;
            format!(
                "https://{}/{}",
                context.domain_name.as_deref().unwrap_or_default(),
                context.stage.as_deref().unwrap_or_default()
            )
        });
        Client::from_conf(self.sdk.to_builder().endpoint_url(endpoint).build())
    }

    async fn message(&self, connection_id: &str, event: &ApiGatewayWebsocketProxyRequest) -> u16 {
        let record = match self.connections.get(CONNECTIONS, connection_id).await {
            Ok(Some(record)) => record,
            Ok(None) => {
                tracing::warn!("message on a connection that is not registered");
                return 403;
            }
            Err(err) => {
                tracing::error!(error = %adiuva_error::cause_chain(&err), "could not read the connection");
                return 503;
            }
        };
        let mut out = Outbox {
            poster: Management {
                client: self.client(event),
            },
            connection_id,
        };
        // Admitted as an HTTP request is (`adiuva_auth::admit`): the session as it is now
        // (logout, expiry and account deletion end it here, before any model call), then one
        // unit of the tier's rate limit.
        let credential = Credential::Verified {
            user_id: record["user_id"].as_str().unwrap_or_default(),
            token_version: record["token_version"].as_i64().unwrap_or(i64::MIN),
            session_id: record["session_id"].as_str(),
            expires_at: record["expires_at"].as_u64().unwrap_or(0),
        };
        let caller = match adiuva_auth::admit(&self.accounts, &self.limits, credential).await {
            Ok(admitted) => admitted.caller,
            Err(refusal) => {
                let public = match refusal.error() {
                    Ok(auth) => Public::of(auth),
                    Err(limited) => Public::of(&limited),
                };
                out.finish(&adiuva_chat::frames::error(&public)).await;
                return 200;
            }
        };
        let body = event.body.as_deref().unwrap_or_default();
        let poster = out.poster.clone();
        self.chat
            .message(&caller, body, &mut out, &poster, connection_id)
            .await;
        200
    }
}

/// The status a refused `$connect` answers with (API Gateway refuses the connection).
fn refused(err: &adiuva_auth::AuthError) -> u16 {
    let public = Public::of(err);
    tracing::info!(code = public.code, "WebSocket connection refused");
    public.status()
}

/// Posts frames to any connection of the API through the Management API: the poster of
/// resumable streams, whose connection changes when the client resumes elsewhere.
#[derive(Clone)]
struct Management {
    client: Client,
}

impl Poster for Management {
    /// A frame, as parts when it is too large (see [`frames`]).
    async fn post(&self, connection: &str, frame: &str) -> Result<(), Gone> {
        for part in frames::final_parts(frame, MAX_FRAME_BYTES) {
            self.post_one(connection, &part).await?;
        }
        Ok(())
    }
}

/// Today's frames of a chat on the connection that asked for it.
struct Outbox<'a> {
    poster: Management,
    connection_id: &'a str,
}

impl Outbox<'_> {
    async fn post(&self, frame: &str) -> Result<(), Gone> {
        self.poster.post_one(self.connection_id, frame).await
    }
}

impl Management {
    async fn post_one(&self, connection_id: &str, frame: &str) -> Result<(), Gone> {
        let result = self
            .client
            .post_to_connection()
            .connection_id(connection_id)
            .data(Blob::new(frame.as_bytes()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) => {
                let gone = err
                    .as_service_error()
                    .is_some_and(|err| err.is_gone_exception())
                    || err
                        .raw_response()
                        .is_some_and(|raw| raw.status().as_u16() == 410);
                if !gone {
                    tracing::error!(error = %aws_sdk_apigatewaymanagement::error::DisplayErrorContext(&err), "could not send a frame; generation stopped");
                }
                Err(Gone)
            }
        }
    }
}

impl Outlet for Outbox<'_> {
    /// A text chunk, split into frames within the limit.
    async fn text(&mut self, chunk: &str) -> Result<(), Gone> {
        for piece in frames::split(chunk, MAX_FRAME_BYTES) {
            self.post(piece).await?;
        }
        Ok(())
    }

    /// The final frame (in parts when it is too large).
    async fn finish(&mut self, frame: &str) {
        for part in frames::final_parts(frame, MAX_FRAME_BYTES) {
            if self.post(&part).await.is_err() {
                break;
            }
        }
    }
}

/// Frame sizing. API Gateway refuses frames over 32 KB, so a text chunk longer than that is
/// sent as several text frames, and a final frame longer than that is sent as consecutive
/// `{"final_part": i, "final_parts": n, "data": "..."}` frames (1-based) whose `data`, joined,
/// is the final frame's JSON. (A final frame is that large only when the actions carry long
/// notes.)
pub mod frames {
    use serde_json::json;

    /// `text` cut at character boundaries into pieces of at most `max` bytes.
    pub fn split(text: &str, max: usize) -> Vec<&str> {
        let mut pieces = Vec::new();
        let mut rest = text;
        while rest.len() > max {
            let mut cut = max;
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            let (piece, tail) = rest.split_at(cut);
            pieces.push(piece);
            rest = tail;
        }
        if !rest.is_empty() {
            pieces.push(rest);
        }
        pieces
    }

    /// The final frame as is, or as parts when it exceeds `max` bytes.
    pub fn final_parts(frame: &str, max: usize) -> Vec<String> {
        if frame.len() <= max {
            return vec![frame.to_owned()];
        }
        // Room for the envelope and for JSON escaping, which can double a piece's size.
        let pieces = split(frame, (max - 128) / 2);
        let total = pieces.len();
        pieces
            .into_iter()
            .enumerate()
            .map(|(index, data)| {
                json!({"final_part": index + 1, "final_parts": total, "data": data}).to_string()
            })
            .collect()
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use serde_json::Value;

        #[test]
        fn splits_at_character_boundaries() {
            let text = "aé".repeat(10);
            let pieces = split(&text, 4);
            assert!(pieces.iter().all(|piece| piece.len() <= 4));
            assert_eq!(pieces.concat(), text);
            assert!(split("", 4).is_empty());
        }

        #[test]
        fn oversized_final_frames_come_in_parts_that_join_back() {
            let frame =
                json!({"done": true, "response": "\"quoted\" ".repeat(5_000), "actions": []})
                    .to_string();
            let parts = final_parts(&frame, 32 * 1024);
            assert!(parts.len() > 1);
            let mut joined = String::new();
            for (index, part) in parts.iter().enumerate() {
                assert!(part.len() <= 32 * 1024);
                let part: Value = serde_json::from_str(part).unwrap();
                assert_eq!(part["final_part"], index + 1);
                assert_eq!(part["final_parts"], parts.len());
                joined.push_str(part["data"].as_str().unwrap());
            }
            assert_eq!(joined, frame);
            assert_eq!(
                final_parts("{\"done\":true}", 32 * 1024),
                ["{\"done\":true}"]
            );
        }
    }
}
