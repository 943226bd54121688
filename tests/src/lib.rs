//! Whole-API tests. The library part is the harness (`harness::spawn_app`): the merged app of
//! `adiuva-local` on 127.0.0.1:0 with a fresh PostgreSQL or SQLite database per test. The test
//! modules below run against both backends through `backend_tests!`.

pub mod harness;
pub mod llm;
pub mod oidc;
pub mod stripe;

#[cfg(test)]
mod account;
#[cfg(test)]
mod admin;
#[cfg(test)]
mod agents;
#[cfg(test)]
mod architecture;
#[cfg(test)]
mod auth;
#[cfg(test)]
mod backup;
#[cfg(test)]
pub(crate) mod billing;
#[cfg(test)]
mod budgets;
#[cfg(test)]
mod chat;
#[cfg(test)]
mod chat_streams;
#[cfg(test)]
mod chat_ws;
#[cfg(test)]
mod commits;
#[cfg(test)]
mod contract;
#[cfg(test)]
mod docs;
#[cfg(test)]
mod entitlements;
#[cfg(test)]
mod faults;
#[cfg(test)]
mod headers;
#[cfg(test)]
mod health;
#[cfg(test)]
mod http;
#[cfg(test)]
mod idempotency;
#[cfg(test)]
mod infra_docs;
#[cfg(test)]
mod isolation;
#[cfg(test)]
mod jobs;
#[cfg(test)]
mod lambda;
#[cfg(test)]
mod limits;
#[cfg(test)]
pub(crate) mod marketplace;
#[cfg(test)]
mod measure;
#[cfg(test)]
mod money;
#[cfg(test)]
mod paging;
#[cfg(test)]
mod pipeline;
#[cfg(test)]
mod plans;
#[cfg(test)]
mod quota;
#[cfg(test)]
mod storage;
#[cfg(test)]
mod sync;
#[cfg(test)]
mod team_billing;
#[cfg(test)]
pub(crate) mod team_space;
#[cfg(test)]
pub(crate) mod teams;
#[cfg(test)]
mod vectors;
