//! The chat agents and the orchestrator (SPEC §3: agents live in the shared core so every
//! function that chats uses the same ones).
//!
//! - [`schema`]: the chat contract (`ChatRequest`, `ChatResponse`, `PlanAction`) and its limits;
//! - [`tools`]: the reference's tools, with schemas and argument validation;
//! - [`agents`]: the registry of the four agents;
//! - [`meter`]: what every model call is charged to (the caller's AI budget);
//! - [`orchestrator`]: intent routing, tool loops, pipelines with synthesis, plan mode,
//!   streaming, and the sanitizer on everything that leaves.

pub mod agents;
pub mod meter;
pub mod orchestrator;
pub mod schema;
pub mod tools;

pub use meter::{Meter, MeterError, MeterFuture, Reservation, Spent};
pub use orchestrator::{Answer, ChatError, Orchestrator};
pub use schema::{ActionType, ChatContext, ChatRequest, ChatResponse, ExecutionMode, PlanAction};
