//! In-order acknowledgement (`cloud.md` §4.4): messages are applied concurrently but PUBACKed
//! in arrival order, each only after its effects are committed.
//!
//! A pure state machine (rumqttc's `state.rs` habit): [`AckQueue::push`] on arrival,
//! [`AckQueue::complete`] when a worker committed; `complete` returns the messages whose
//! PUBACK may go now, in order. A reconnect starts a new generation: acks for messages of an
//! older connection are never sent (their packet ids belong to a dead session state; the
//! broker redelivers them and the ledger makes the redelivery a no-op).

use std::collections::VecDeque;

/// Position of a message in the arrival order of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ticket {
    generation: u64,
    seq: u64,
}

struct Slot<T> {
    seq: u64,
    item: T,
    done: bool,
}

/// The queue of messages not yet acknowledged, in arrival order.
pub struct AckQueue<T> {
    generation: u64,
    next_seq: u64,
    slots: VecDeque<Slot<T>>,
}

impl<T> Default for AckQueue<T> {
    fn default() -> Self {
        AckQueue {
            generation: 0,
            next_seq: 0,
            slots: VecDeque::new(),
        }
    }
}

impl<T> AckQueue<T> {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// A new connection: forget every pending message (none of them will be acknowledged).
    pub fn reconnected(&mut self) {
        self.generation += 1;
        self.slots.clear();
    }

    /// Records an arriving message; its ticket goes with the work.
    pub fn push(&mut self, item: T) -> Ticket {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.slots.push_back(Slot {
            seq,
            item,
            done: false,
        });
        Ticket {
            generation: self.generation,
            seq,
        }
    }

    /// Marks a message done and returns those now acknowledgeable, in arrival order. A ticket
    /// of an older generation, or unknown, returns nothing.
    pub fn complete(&mut self, ticket: Ticket) -> Vec<T> {
        if ticket.generation != self.generation {
            return Vec::new();
        }
        let Some(front) = self.slots.front() else {
            return Vec::new();
        };
        let Some(index) = ticket.seq.checked_sub(front.seq) else {
            return Vec::new();
        };
        match usize::try_from(index)
            .ok()
            .and_then(|i| self.slots.get_mut(i))
        {
            Some(slot) => slot.done = true,
            None => return Vec::new(),
        }
        let mut ready = Vec::new();
        while self.slots.front().is_some_and(|s| s.done) {
            if let Some(slot) = self.slots.pop_front() {
                ready.push(slot.item);
            }
        }
        ready
    }

    /// Messages received and not yet acknowledgeable.
    pub fn pending(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completions_out_of_order_are_acknowledged_in_arrival_order() {
        let mut q = AckQueue::new();
        let a = q.push("a");
        let b = q.push("b");
        let c = q.push("c");
        assert_eq!(q.complete(c), Vec::<&str>::new());
        assert_eq!(q.complete(b), Vec::<&str>::new());
        assert_eq!(q.complete(a), vec!["a", "b", "c"]);
        assert_eq!(q.pending(), 0);
    }

    #[test]
    fn a_head_completion_releases_only_the_done_prefix() {
        let mut q = AckQueue::new();
        let a = q.push(1);
        let _b = q.push(2);
        let c = q.push(3);
        assert_eq!(q.complete(c), Vec::<i32>::new());
        assert_eq!(q.complete(a), vec![1]);
        assert_eq!(q.pending(), 2);
    }

    #[test]
    fn tickets_of_a_previous_connection_are_never_acknowledged() {
        let mut q = AckQueue::new();
        let old = q.push("old");
        q.reconnected();
        let new = q.push("new");
        assert_eq!(q.complete(old), Vec::<&str>::new());
        assert_eq!(q.complete(new), vec!["new"]);
    }

    #[test]
    fn completing_twice_or_unknown_tickets_is_harmless() {
        let mut q = AckQueue::new();
        let a = q.push("a");
        assert_eq!(q.complete(a), vec!["a"]);
        assert_eq!(q.complete(a), Vec::<&str>::new());
    }
}
