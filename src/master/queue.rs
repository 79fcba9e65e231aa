//! The chunk queue: which items are waiting, which worker holds which, and who
//! waits for an answer. Pure bookkeeping, no I/O: the drive loop sends what
//! it decides.
//!
//! A `Want` that arrives while the queue is empty but other workers still hold
//! unfinished items is parked rather than answered with `Done`: if one of
//! those workers dies, its items go back to the queue and the parked workers
//! pick them up. No more `Want`s are parked than there are unfinished items,
//! since no more could ever come back; the others are answered `Done` at once.

use std::collections::{BTreeMap, VecDeque};

use flagmaster_worker::protocol::{Command, Item};

use crate::plan::Chunking;

pub struct Queue {
    waiting: VecDeque<Item>,
    chunking: Chunking,
    /// Items handed out and not yet reported, by worker, then by index.
    held: BTreeMap<u32, BTreeMap<u32, Item>>,
    /// The sum of `held`: every event asks for it, and a walk over 1000
    /// workers per event showed in profiles.
    outstanding: usize,
    /// Workers waiting for an answer to a `Want`, once per `Want`.
    parked: VecDeque<u32>,
    /// Set by an interrupt: every `Want` is answered with `Done`.
    stopping: bool,
    /// Set when the disk is full: no more work is handed out either, but the
    /// run is not interrupted.
    closed: bool,
}

impl Queue {
    pub fn new(items: Vec<Item>, chunking: Chunking) -> Queue {
        Queue {
            waiting: items.into(),
            chunking,
            held: BTreeMap::new(),
            outstanding: 0,
            parked: VecDeque::new(),
            stopping: false,
            closed: false,
        }
    }

    /// The next chunk for `worker`, remembered as held by it.
    pub fn take_chunk(&mut self, worker: u32) -> Option<Vec<Item>> {
        if self.stopping || self.closed || self.waiting.is_empty() {
            return None;
        }
        let size = self
            .chunking
            .next(self.waiting.len())
            .min(self.waiting.len());
        let chunk: Vec<Item> = self.waiting.drain(..size).collect();
        self.held
            .entry(worker)
            .or_default()
            .extend(chunk.iter().map(|item| (item.index, item.clone())));
        self.outstanding += chunk.len();
        Some(chunk)
    }

    /// Item `index` of `worker` is finished; false if `worker` did not hold
    /// it (a stale or duplicate report, not to be counted).
    pub fn finish(&mut self, worker: u32, index: u32) -> bool {
        let held = self
            .held
            .get_mut(&worker)
            .is_some_and(|held| held.remove(&index).is_some());
        if held {
            self.outstanding -= 1;
        }
        held
    }

    /// Items `worker` holds.
    pub fn held_by(&self, worker: u32) -> usize {
        self.held.get(&worker).map_or(0, BTreeMap::len)
    }

    /// `worker` wants a chunk; answered by [`Queue::next_answer`].
    pub fn park(&mut self, worker: u32) {
        self.parked.push_back(worker);
    }

    /// Puts back, at the front of the queue and in list order, what `worker`
    /// held, and forgets its `Want`s; returns the items put back.
    pub fn release(&mut self, worker: u32) -> Vec<Item> {
        self.parked.retain(|&p| p != worker);
        let items: Vec<Item> = self
            .held
            .remove(&worker)
            .unwrap_or_default()
            .into_values()
            .collect();
        self.outstanding -= items.len();
        // Held by index, so already in list order.
        for item in items.iter().rev() {
            self.waiting.push_front(item.clone());
        }
        items
    }

    /// The next parked `Want` that can be answered, and its answer: a chunk
    /// while there are any, and `Done` for those beyond the number of items
    /// still outstanding (all of them once nothing is, or the run is
    /// stopping). Keeping all of them until the last item ended meant waking
    /// every idle worker at that moment: 255 of them at the end of a run with
    /// 256 threads.
    pub fn next_answer(&mut self) -> Option<(u32, Command)> {
        if self.parked.is_empty()
            || (!self.stopping
                && !self.closed
                && self.waiting.is_empty()
                && self.parked.len() <= self.outstanding)
        {
            return None;
        }
        let worker = self.parked.pop_front()?;
        let command = match self.take_chunk(worker) {
            Some(chunk) => Command::Chunk(chunk),
            None => Command::Done,
        };
        Some((worker, command))
    }

    /// No more work is handed out.
    pub fn stop(&mut self) {
        self.stopping = true;
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping
    }

    /// No more work is handed out (the disk is full); what is waiting stays
    /// unfinished.
    pub fn close(&mut self) {
        self.closed = true;
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Every item not finished: waiting, or held by anyone.
    pub fn take_unfinished(&mut self) -> Vec<Item> {
        let mut items: Vec<Item> = self.waiting.drain(..).collect();
        for held in std::mem::take(&mut self.held).into_values() {
            items.extend(held.into_values());
        }
        self.outstanding = 0;
        items.sort_by_key(|i| i.index);
        items
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(index: u32) -> Item {
        Item {
            index,
            name: format!("N{index}"),
            url: format!("http://127.0.0.1:1/N{index}.jpg"),
            file: format!("N{index}.jpg"),
            ext_from_type: false,
            validators: None,
            sha256: None,
        }
    }

    /// The answers ready now, as text.
    fn answers(q: &mut Queue) -> Vec<String> {
        std::iter::from_fn(|| q.next_answer())
            .map(|(w, c)| match c {
                Command::Chunk(items) => format!(
                    "{w}: chunk {:?}",
                    items.iter().map(|i| i.index).collect::<Vec<_>>()
                ),
                other => format!("{w}: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn parks_no_more_wants_than_items_that_could_come_back() {
        let mut q = Queue::new(vec![item(0), item(1)], Chunking::Fixed(1));
        q.park(1);
        q.park(2);
        assert_eq!(answers(&mut q), ["1: chunk [0]", "2: chunk [1]"]);
        // Two items out, one idle worker: it waits, as either item may come back.
        q.park(3);
        assert!(answers(&mut q).is_empty());
        // Worker 2 is done with its item: one item is out, two workers idle,
        // and the longest parked goes.
        assert!(q.finish(2, 1));
        q.park(2);
        assert_eq!(answers(&mut q), ["3: Done"]);
        // Worker 1 dies holding item 0: the worker still parked takes it.
        assert_eq!(q.release(1).len(), 1);
        assert_eq!(answers(&mut q), ["2: chunk [0]"]);
        assert!(q.finish(2, 0));
        q.park(2);
        assert_eq!(answers(&mut q), ["2: Done"]);
    }

    #[test]
    fn stale_reports_are_not_counted_and_unfinished_items_are_found() {
        let mut q = Queue::new((0..4).map(item).collect(), Chunking::Fixed(2));
        assert_eq!(q.take_chunk(1).map(|c| c.len()), Some(2));
        assert!(!q.finish(2, 0), "worker 2 never held item 0");
        assert!(q.finish(1, 0));
        assert!(!q.finish(1, 0), "a duplicate report");
        assert_eq!(q.held_by(1), 1);
        q.stop();
        assert_eq!(q.take_chunk(2), None, "nothing is handed out once stopping");
        let left: Vec<u32> = q.take_unfinished().iter().map(|i| i.index).collect();
        assert_eq!(left, [1, 2, 3]);
    }

    #[test]
    fn a_closed_queue_hands_out_nothing_and_answers_every_want_done() {
        let mut q = Queue::new((0..6).map(item).collect(), Chunking::Fixed(2));
        q.park(1);
        q.park(2);
        assert_eq!(answers(&mut q), ["1: chunk [0, 1]", "2: chunk [2, 3]"]);
        // The disk is full: worker 1's Want is answered Done at once, though
        // items are waiting and worker 2 still holds some.
        q.close();
        assert!(q.is_closed() && !q.is_stopping());
        assert!(q.finish(1, 0) && q.finish(1, 1));
        q.park(1);
        assert_eq!(answers(&mut q), ["1: Done"]);
        assert_eq!(q.take_chunk(3), None);
        let left: Vec<u32> = q.take_unfinished().iter().map(|i| i.index).collect();
        assert_eq!(left, [2, 3, 4, 5]);
    }
}
