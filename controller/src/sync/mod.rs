//! Keeping routers in step: one worker per router diffs what the router
//! should hold against what it holds and applies the difference as one batch.

mod budget;
pub mod diff;
pub mod worker;

pub use diff::{SyncPlan, diff};
pub use worker::{Observers, WorkerInputs, WorkerSettings, run_worker};

#[cfg(test)]
mod tests;
