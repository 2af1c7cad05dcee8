//! Keeping routers in step: one worker per router diffs what the router
//! should hold against what it holds and applies the difference as one batch.

pub mod plan;
pub mod worker;

pub use plan::{SyncPlan, plan};
pub use worker::{Observers, WorkerSettings, run_worker};

#[cfg(test)]
mod tests;
