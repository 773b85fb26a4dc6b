//! Integration tests: the real server on a random port against a fresh database per test, each
//! test on SQLite and on PostgreSQL (`on_both_backends!`).

#[macro_use]
mod helpers;
mod audit;
mod auth;
mod backup;
mod balance;
mod cblink;
mod discount_card;
mod expiry;
mod finance;
mod fuzz;
mod history;
mod identities;
mod instances;
mod logging;
mod metrics;
mod openapi;
mod rate_limit;
mod refund;
mod refund_order;
mod report;
mod rules;
mod service;
mod shutdown;
mod startup;
mod trade_create;
mod transaction_sync;
mod validation;
mod writer;
