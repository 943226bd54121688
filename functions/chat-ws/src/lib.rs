//! Chat over API Gateway's WebSocket API (the deployed counterpart of the local server's
//! `/api/v1/chat/stream`). API Gateway keeps the sockets; this function sees one event per
//! route:
//!
//! - `$connect`: the access token from `?token=` is verified before anything is stored; a bad
//!   or missing one is 401 and API Gateway refuses the connection. A good one stores the
//!   connection (its user) in the shared short-lived store, with a TTL of API Gateway's maximum
//!   connection duration (2 h).
//! - `$default`: a message, the `ChatRequest`. Text chunks go out through the API Gateway
//!   Management API as the model produces them (sanitized), then the final frame
//!   `{"done": true, "response", "actions"}` or `{"done": true, "error"}`, the same frames as
//!   the local server. Every frame stays within the API's 32 KB frame limit: a long chunk is
//!   split, and an oversized final frame is sent as parts (see [`frames`]). A connection that
//!   is gone (410) ends the generation.
//! - `$disconnect`: the connection is removed.
//!
//! API Gateway itself keeps idle connections for 10 minutes, so there is no heartbeat here.

use std::time::Duration;

use adiuva_config::Config;
use adiuva_http::ApiError;
use adiuva_kv::KvStore;
use aws_sdk_apigatewaymanagement::Client;
use aws_sdk_apigatewaymanagement::config::BehaviorVersion;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// Namespace of the connections in the shared short-lived store.
pub const CONNECTIONS: &str = "ws-connections";
/// API Gateway closes a WebSocket after 2 hours whatever happens.
pub const CONNECTION_TTL: Duration = Duration::from_secs(2 * 60 * 60);
/// API Gateway's WebSocket frame limit.
pub const MAX_FRAME_BYTES: usize = 32 * 1024;

#[derive(Debug, Clone)]
pub struct State {
    chat: chat::State,
    connections: KvStore,
    sdk: aws_sdk_apigatewaymanagement::Config,
    /// Management API endpoint override (tests); else the event's domain and stage.
    endpoint: String,
}

impl State {
    /// No network I/O: clients connect on first use.
    pub fn new(
        chat: chat::State,
        connections: KvStore,
        config: &Config,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let sdk = adiuva_aws::sdk_config(config, &config.aws_region)?;
        Ok(Self {
            chat,
            connections,
            sdk: aws_sdk_apigatewaymanagement::config::Builder::from(&sdk)
                .behavior_version(BehaviorVersion::latest())
                .build(),
            endpoint: config.ws_management_endpoint_url.clone(),
        })
    }

    /// Handles one WebSocket API event; the answer is what API Gateway expects
    /// (`{"statusCode": ...}`).
    pub async fn handle(&self, event: Value) -> Value {
        let context = &event["requestContext"];
        let connection_id = context["connectionId"].as_str().unwrap_or_default();
        let route = context["routeKey"].as_str().unwrap_or_default();
        if connection_id.is_empty() {
            tracing::warn!(route, "WebSocket event without a connection id");
            return status(400);
        }
        match route {
            "$connect" => self.connect(connection_id, &event).await,
            "$disconnect" => {
                if let Err(err) = self.connections.delete(CONNECTIONS, connection_id).await {
                    tracing::warn!(error = %err, "could not remove a closed connection; its TTL will");
                }
                status(200)
            }
            _ => self.message(connection_id, &event).await,
        }
    }

    async fn connect(&self, connection_id: &str, event: &Value) -> Value {
        let token = event["queryStringParameters"]["token"]
            .as_str()
            .unwrap_or_default();
        if token.is_empty() {
            return status(401);
        }
        let user = match self.chat.accounts().authenticate(token).await {
            Ok(user) => user,
            Err(err) => {
                let err = ApiError::from(err);
                tracing::info!(code = err.code(), "WebSocket connection refused");
                return status(err.status().as_u16());
            }
        };
        let record = json!({"user_id": user.id});
        match self
            .connections
            .put(CONNECTIONS, connection_id, &record, Some(CONNECTION_TTL))
            .await
        {
            Ok(()) => {
                tracing::info!(user_id = %user.id, "WebSocket connected");
                status(200)
            }
            Err(err) => {
                tracing::error!(error = %err, "could not store the connection");
                status(503)
            }
        }
    }

    fn client(&self, event: &Value) -> Client {
        let endpoint = if self.endpoint.is_empty() {
            let context = &event["requestContext"];
            format!(
                "https://{}/{}",
                context["domainName"].as_str().unwrap_or_default(),
                context["stage"].as_str().unwrap_or_default()
            )
        } else {
            self.endpoint.clone()
        };
        Client::from_conf(self.sdk.to_builder().endpoint_url(endpoint).build())
    }

    async fn message(&self, connection_id: &str, event: &Value) -> Value {
        let user_id = match self.connections.get(CONNECTIONS, connection_id).await {
            Ok(Some(record)) => record["user_id"].as_str().unwrap_or_default().to_owned(),
            Ok(None) => {
                tracing::warn!("message on a connection that is not registered");
                return status(403);
            }
            Err(err) => {
                tracing::error!(error = %err, "could not read the connection");
                return status(503);
            }
        };
        let out = Outbox {
            client: self.client(event),
            connection_id,
        };
        let body = event["body"].as_str().unwrap_or_default();
        let request = match chat::parse_request(body) {
            Ok(request) => request,
            Err(err) => return out.finish(&chat::frames::error(&err)).await,
        };
        let orchestrator = match chat::validate(&request).and_then(|()| self.chat.orchestrator()) {
            Ok(orchestrator) => orchestrator,
            Err(err) => return out.finish(&chat::frames::error(&err)).await,
        };
        tracing::info!(user_id, "chat stream request");

        let (tx, mut rx) = mpsc::channel::<String>(64);
        let work = orchestrator.orchestrate(&request, Some(&tx), &user_id);
        tokio::pin!(work);
        let result = loop {
            tokio::select! {
                biased;
                Some(chunk) = rx.recv() => {
                    if out.text(&chunk).await.is_err() {
                        return status(200);
                    }
                }
                result = &mut work => break result,
            }
        };
        while let Ok(chunk) = rx.try_recv() {
            if out.text(&chunk).await.is_err() {
                return status(200);
            }
        }
        let frame = match result {
            Ok(answer) => chat::frames::done(&answer),
            Err(err) => chat::frames::error(&chat::chat_error(err)),
        };
        out.finish(&frame).await
    }
}

fn status(code: u16) -> Value {
    json!({"statusCode": code})
}

/// The connection gave up (410) or the Management API failed: stop generating.
#[derive(Debug)]
struct Gone;

struct Outbox<'a> {
    client: Client,
    connection_id: &'a str,
}

impl Outbox<'_> {
    async fn post(&self, frame: &str) -> Result<(), Gone> {
        let result = self
            .client
            .post_to_connection()
            .connection_id(self.connection_id)
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
                if gone {
                    tracing::info!("chat stream client gone; generation stopped");
                } else {
                    tracing::error!(error = %aws_sdk_apigatewaymanagement::error::DisplayErrorContext(&err), "could not send a frame; generation stopped");
                }
                Err(Gone)
            }
        }
    }

    /// A text chunk, split into frames within the limit.
    async fn text(&self, chunk: &str) -> Result<(), Gone> {
        for piece in frames::split(chunk, MAX_FRAME_BYTES) {
            self.post(piece).await?;
        }
        Ok(())
    }

    /// The final frame (in parts when it is too large); the invocation's answer.
    async fn finish(&self, frame: &str) -> Value {
        for part in frames::final_parts(frame, MAX_FRAME_BYTES) {
            if self.post(&part).await.is_err() {
                break;
            }
        }
        status(200)
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
