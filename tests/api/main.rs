//! Integration tests: the real server on a random port against a fresh SQLite file per test.

mod audit;
mod balance;
mod expiry;
mod helpers;
mod history;
mod refund;
mod report;
mod service;
mod startup;
mod trade_create;
mod validation;
