//! The end of a leadership term, as a driver sees it. A controller that
//! lost its Lease must stop writing at once: another instance may already
//! be writing the same router. A driver checks the fence before a batch and
//! between the steps of one, and sends nothing further once it is raised.

use tokio::sync::watch;

/// Raised when the term that started a batch has ended.
#[derive(Clone, Debug)]
pub struct Fence(Option<watch::Receiver<bool>>);

impl Fence {
    /// A fence that is raised when `term_ended` turns true.
    pub fn new(term_ended: watch::Receiver<bool>) -> Self {
        Fence(Some(term_ended))
    }

    /// A fence that is never raised: for `plan`, `check`, tests and
    /// benchmarks, which write outside any leadership term.
    pub fn never() -> Self {
        Fence(None)
    }

    pub fn is_raised(&self) -> bool {
        self.0.as_ref().is_some_and(|term| *term.borrow())
    }

    /// Resolves once the fence is raised; never, for [`Fence::never`] or
    /// when the term's sender is gone without raising it.
    pub async fn raised(&self) {
        let Some(term) = &self.0 else {
            return std::future::pending().await;
        };
        let mut term = term.clone();
        if term.wait_for(|ended| *ended).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Every change as not sent, for a batch the fence stopped before it began.
pub(crate) fn all_fenced(changes: &[crate::Change]) -> Vec<crate::ChangeOutcome> {
    changes
        .iter()
        .map(|change| {
            Err(crate::ChangeError::Fenced {
                dst: change.route().dst,
            })
        })
        .collect()
}
