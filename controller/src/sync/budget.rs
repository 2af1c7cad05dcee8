//! The removal budget of one router: how many of its routes may be
//! withdrawn or re-pointed within a sliding window. Judged against the most
//! routes the router held within the window, so that a slow bleed (half,
//! then half of the rest, …) is held as surely as one large batch.

use std::collections::{HashSet, VecDeque};

use nativeroute_router_drivers::Change;
use tokio::time::Instant;

use super::diff::{Budget, share_of};
use crate::config::RemovalGuard;

pub struct RemovalBudget {
    guard: RemovalGuard,
    /// Withdrawals sent, by when, within the window.
    spent: VecDeque<(Instant, usize)>,
    /// Route counts seen within the window, each smaller than the one
    /// before it: the front is the window's largest.
    peaks: VecDeque<(Instant, usize)>,
}

impl RemovalBudget {
    pub fn new(guard: RemovalGuard) -> Self {
        RemovalBudget {
            guard,
            spent: VecDeque::new(),
            peaks: VecDeque::new(),
        }
    }

    /// The budget of a sync at `now`, with the router holding `held`
    /// owned routes.
    pub fn for_sync(&mut self, now: Instant, held: usize, released: HashSet<Change>) -> Budget {
        self.forget_before(now);
        while self.peaks.back().is_some_and(|(_, count)| *count <= held) {
            self.peaks.pop_back();
        }
        self.peaks.push_back((now, held));
        let peak = self.peaks.front().map_or(held, |(_, count)| *count);
        let spent: usize = self.spent.iter().map(|(_, n)| n).sum();
        Budget {
            allowed: (peak >= self.guard.min_routes)
                .then(|| share_of(self.guard.max_share, peak).saturating_sub(spent)),
            released,
        }
    }

    /// Records `withdrawals` sent at `now`.
    pub fn spend(&mut self, now: Instant, withdrawals: usize) {
        if withdrawals > 0 {
            self.spent.push_back((now, withdrawals));
        }
    }

    /// After an operator's release: the window starts afresh.
    pub fn restart(&mut self) {
        self.spent.clear();
        self.peaks.clear();
    }

    fn forget_before(&mut self, now: Instant) {
        let Some(start) = now.checked_sub(self.guard.window) else {
            return;
        };
        while self.spent.front().is_some_and(|(at, _)| *at < start) {
            self.spent.pop_front();
        }
        while self.peaks.front().is_some_and(|(at, _)| *at < start) {
            self.peaks.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const GUARD: RemovalGuard = RemovalGuard {
        max_share: 0.5,
        min_routes: 10,
        window: Duration::from_secs(600),
    };

    fn allowed(budget: &mut RemovalBudget, at: Instant, held: usize) -> Option<usize> {
        budget.for_sync(at, held, HashSet::new()).allowed
    }

    #[test]
    fn half_of_the_routes_may_go_at_once() {
        let mut budget = RemovalBudget::new(GUARD);
        assert_eq!(allowed(&mut budget, Instant::now(), 100), Some(50));
    }

    #[test]
    fn a_slow_bleed_is_judged_against_the_largest_count_in_the_window() {
        let mut budget = RemovalBudget::new(GUARD);
        let start = Instant::now();
        assert_eq!(allowed(&mut budget, start, 100), Some(50));
        budget.spend(start, 50);
        // 50 left: half of them would pass a per-sync guard; not this one.
        let later = start + Duration::from_secs(60);
        assert_eq!(allowed(&mut budget, later, 50), Some(0));
        budget.spend(later, 0);
        let much_later = start + Duration::from_secs(601);
        assert_eq!(
            allowed(&mut budget, much_later, 50),
            Some(25),
            "once the window has passed, the budget is half of what is held now"
        );
    }

    #[test]
    fn routers_with_few_routes_are_not_guarded_but_a_large_past_counts() {
        let mut budget = RemovalBudget::new(GUARD);
        let start = Instant::now();
        assert_eq!(allowed(&mut budget, start, 9), None);
        let mut budget = RemovalBudget::new(GUARD);
        assert_eq!(allowed(&mut budget, start, 12), Some(6));
        budget.spend(start, 6);
        assert_eq!(
            allowed(&mut budget, start + Duration::from_secs(1), 6),
            Some(0),
            "shrinking below minRoutes does not lift the guard within the window"
        );
    }

    #[test]
    fn a_release_starts_the_window_afresh() {
        let mut budget = RemovalBudget::new(GUARD);
        let start = Instant::now();
        allowed(&mut budget, start, 100);
        budget.spend(start, 50);
        budget.restart();
        assert_eq!(
            allowed(&mut budget, start + Duration::from_secs(1), 50),
            Some(25)
        );
    }
}
