//! point-engine: a loyalty points engine. Receipts in, points out, a ledger finance can trust.
//!
//! Dependencies point inward: `http` maps wire formats to `domain` and back, `service`
//! orchestrates a use case over `rules` (pure) and `ledger` (the only SQL).

pub mod clients;
pub mod config;
pub mod domain;
pub mod error;
pub mod http;
pub mod ledger;
pub mod priority;
pub mod rules;
pub mod service;
pub mod startup;
pub mod state;
pub mod telemetry;
