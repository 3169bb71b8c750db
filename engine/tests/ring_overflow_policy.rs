//! The priority ring's overflow policy, checked against a plain model on random pushes/pops.

use std::sync::Arc;

use agentcast_engine::Priority;
use agentcast_engine::ring::{PriorityRing, PushOutcome, Queued};
use bytes::Bytes;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Push {
        priority: Priority,
        thinking_run: Option<u8>,
    },
    Pop,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..3, proptest::option::of(0u8..3)).prop_map(|(p, run)| {
            let priority = Priority::ALL[p as usize];
            Op::Push { priority, thinking_run: if priority == Priority::Low { run } else { None } }
        }),
        1 => Just(Op::Pop),
    ]
}

/// The model: a Vec of (id, priority, run), the policy written as plainly as possible.
#[derive(Default)]
struct Model {
    items: Vec<(u64, Priority, Option<u8>)>,
}

impl Model {
    fn push(&mut self, cap: usize, id: u64, p: Priority, run: Option<u8>) -> PushOutcome {
        if self.items.len() < cap {
            self.items.push((id, p, run));
            return PushOutcome::Queued;
        }
        if run.is_some() {
            if let Some(i) = self
                .items
                .iter()
                .position(|x| x.1 == Priority::Low && x.2 == run)
            {
                self.items.remove(i);
                self.items.push((id, p, run));
                return PushOutcome::Coalesced;
            }
        }
        for lower in Priority::ALL.iter().filter(|&&q| q < p) {
            if let Some(i) = self.items.iter().position(|x| x.1 == *lower) {
                self.items.remove(i);
                self.items.push((id, p, run));
                return PushOutcome::Evicted(*lower);
            }
        }
        if p == Priority::Critical {
            PushOutcome::Overflow
        } else {
            PushOutcome::Dropped(p)
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn ring_matches_model(cap in 1usize..8, ops in proptest::collection::vec(op(), 0..200)) {
        let runs: Vec<Arc<str>> = (0..3).map(|i| Arc::from(format!("run-{i}"))).collect();
        let mut ring = PriorityRing::new(cap);
        let mut model = Model::default();
        let mut next_id = 0u64;
        let mut last_popped = None;
        for op in ops {
            match op {
                Op::Push { priority, thinking_run } => {
                    next_id += 1;
                    let got = ring.push(
                        Queued::new(Bytes::from(next_id.to_be_bytes().to_vec()), priority)
                            .coalescing(thinking_run.map(|r| Arc::clone(&runs[r as usize]))),
                    );
                    let want = model.push(cap, next_id, priority, thinking_run);
                    prop_assert_eq!(got, want);
                }
                Op::Pop => {
                    let got = ring.pop().map(|q| u64::from_be_bytes(q.frame[..].try_into().unwrap()));
                    let want = if model.items.is_empty() { None } else { Some(model.items.remove(0).0) };
                    prop_assert_eq!(got, want);
                    // FIFO: survivors leave in the order they entered.
                    if let Some(id) = got {
                        prop_assert!(last_popped.is_none_or(|l| l < id));
                        last_popped = Some(id);
                    }
                }
            }
            prop_assert!(ring.len() <= cap);
            prop_assert_eq!(ring.len(), model.items.len());
        }
    }
}

#[test]
fn critical_is_never_dropped_silently() {
    let mut ring = PriorityRing::new(2);
    let crit = || Queued::new(Bytes::new(), Priority::Critical);
    assert_eq!(ring.push(crit()), PushOutcome::Queued);
    assert_eq!(ring.push(crit()), PushOutcome::Queued);
    assert_eq!(ring.push(crit()), PushOutcome::Overflow);
    assert_eq!(ring.len(), 2);
}

#[test]
fn newer_thinking_replaces_older_of_same_run_keeping_order() {
    let run: Arc<str> = Arc::from("r");
    let q = |b: &'static [u8], p, run: Option<Arc<str>>| {
        Queued::new(Bytes::from_static(b), p).coalescing(run)
    };
    let mut ring = PriorityRing::new(2);
    ring.push(q(b"think-1", Priority::Low, Some(run.clone())));
    ring.push(q(b"tool", Priority::Normal, None));
    assert_eq!(
        ring.push(q(b"think-2", Priority::Low, Some(run))),
        PushOutcome::Coalesced
    );
    let order: Vec<Bytes> = std::iter::from_fn(|| ring.pop().map(|q| q.frame)).collect();
    assert_eq!(
        order,
        [Bytes::from_static(b"tool"), Bytes::from_static(b"think-2")]
    );
}
