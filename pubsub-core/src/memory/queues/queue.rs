//! One in-memory queue: ready messages, unacked deliveries per consumer, dead letters.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::headers::{HEADER_ATTEMPTS, HEADER_DEATH_REASON, HEADER_FAILED_HANDLERS};
use crate::memory::signal::BrokerSignal;
use crate::metadata::Message;
use crate::transport::{DeadLetteredMessage, LIVE_QUEUE_MAX_LENGTH, Retry, Settlement};

/// A message waiting for a consumer.
#[derive(Debug)]
pub(crate) struct Ready {
    message: Arc<Message>,
    redelivered: bool,
    /// How often it was delivered before.
    deliveries: u32,
}

/// A message delivered and not yet settled.
#[derive(Debug)]
pub(crate) struct Unacked {
    message: Arc<Message>,
    consumer: u64,
    deliveries: u32,
}

#[derive(Debug, Default)]
pub(crate) struct QueueState {
    pub(crate) ready: VecDeque<Ready>,
    pub(crate) unacked: HashMap<u64, Unacked>,
    /// Messages waiting out a retry delay before they come back.
    pub(crate) delayed: usize,
    /// Most ready messages the queue holds; publishing past it is refused (RabbitMQ's
    /// `x-max-length` with `x-overflow: reject-publish`).
    pub(crate) max_length: Option<usize>,
    /// A consumer found nothing to take and waits for a change.
    pub(crate) consumer_waiting: bool,
    pub(crate) consumers: HashMap<u64, ConsumerSlot>,
    /// Consumers in round-robin order: the next message goes to the first with credit.
    rotation: VecDeque<u64>,
    next_tag: u64,
}

#[derive(Debug)]
pub(crate) struct ConsumerSlot {
    pub(crate) prefetch: usize,
    pub(crate) in_flight: usize,
    /// Messages pushed to this consumer (as the broker pushes up to the prefetch) and not
    /// taken yet.
    assigned: VecDeque<Ready>,
    pub(crate) cancelled: bool,
}

impl QueueState {
    /// Pushes a new message to the next consumer in round-robin order that has credit, as
    /// the broker does; with none, or behind older waiting messages (order is kept), it
    /// waits in the queue.
    fn enqueue(&mut self, ready: Ready) {
        if !self.ready.is_empty() {
            self.ready.push_back(ready);
            return;
        }
        let turn = self.rotation.iter().position(|id| {
            self.consumers
                .get(id)
                .is_some_and(|c| !c.cancelled && c.in_flight + c.assigned.len() < c.prefetch)
        });
        let Some(turn) = turn else {
            self.ready.push_back(ready);
            return;
        };
        let Some(id) = self.rotation.remove(turn) else {
            self.ready.push_back(ready);
            return;
        };
        self.rotation.push_back(id);
        match self.consumers.get_mut(&id) {
            Some(slot) => slot.assigned.push_back(ready),
            None => self.ready.push_back(ready),
        }
    }

    /// Messages pushed to a consumer that will not take them go back to the head of the
    /// queue, in order.
    fn give_back(&mut self, assigned: VecDeque<Ready>) {
        for ready in assigned.into_iter().rev() {
            self.ready.push_front(ready);
        }
    }

    /// Messages pushed to consumers and not taken yet.
    pub(crate) fn assigned(&self) -> usize {
        self.consumers.values().map(|c| c.assigned.len()).sum()
    }
}

/// A queue shared by the broker and its consumers.
#[derive(Debug)]
pub(crate) struct Queue {
    pub(crate) name: String,
    /// The dead-letter queue of a service queue (`None` for a dead-letter queue itself).
    pub(crate) dead_letters: Option<Arc<Queue>>,
    /// A live subscription's private queue: what waits there is a reader's, not work the
    /// broker's idleness waits for.
    pub(crate) live: bool,
    state: Mutex<QueueState>,
    /// Woken on every change a consumer may be waiting for.
    pub(crate) changed: Notify,
    pub(crate) signal: Arc<BrokerSignal>,
}

/// What a consumer gets from [`Queue::take`].
pub(crate) enum Take {
    Message {
        message: Arc<Message>,
        redelivered: bool,
        /// How often it was delivered, this time included.
        deliveries: u32,
        tag: u64,
    },
    Wait,
    Cancelled,
}

impl Queue {
    /// A service queue with its dead-letter queue.
    pub(crate) fn service(
        name: String,
        signal: Arc<BrokerSignal>,
        max_length: Option<usize>,
    ) -> Self {
        let dlq = Self::new(
            format!("{name}.dead-letters"),
            Arc::clone(&signal),
            None,
            None,
        );
        Self::new(name, signal, max_length, Some(Arc::new(dlq)))
    }

    /// A live subscription's private queue: no dead letters, at most
    /// [`LIVE_QUEUE_MAX_LENGTH`] ready messages (dropping the oldest).
    pub(crate) fn live(name: String, signal: Arc<BrokerSignal>) -> Self {
        Self {
            live: true,
            ..Self::new(name, signal, None, None)
        }
    }

    fn new(
        name: String,
        signal: Arc<BrokerSignal>,
        max_length: Option<usize>,
        dead_letters: Option<Arc<Queue>>,
    ) -> Self {
        Self {
            name,
            dead_letters,
            live: false,
            state: Mutex::new(QueueState {
                max_length,
                ..QueueState::default()
            }),
            changed: Notify::new(),
            signal,
        }
    }

    /// The state; a poisoned lock is recovered since every update leaves it consistent.
    pub(crate) fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Wakes consumers (if one waits) and idle waiters after a change; called with the
    /// state lock released.
    fn changed(&self, wake_consumers: bool) {
        if wake_consumers {
            self.changed.notify_waiters();
        }
        self.signal.bump();
    }

    /// Takes the "a consumer waits" flag: whoever changes the state wakes it.
    fn take_waiting(state: &mut QueueState) -> bool {
        std::mem::take(&mut state.consumer_waiting)
    }

    /// Appends a published message; `false` if the queue is full (reject-publish). A live
    /// queue that is full drops its oldest ready message instead (drop-head).
    pub(crate) fn push(&self, message: Arc<Message>) -> bool {
        let live = self.live;
        self.append(message, |state| {
            if live {
                if state.ready.len() >= LIVE_QUEUE_MAX_LENGTH {
                    state.ready.pop_front();
                }
                return true;
            }
            state.max_length.is_none_or(|max| state.ready.len() < max)
        })
    }

    /// Appends a new message if `admit` lets it in (it may update the state first), and
    /// wakes whoever waits for it.
    fn append(&self, message: Arc<Message>, admit: impl FnOnce(&mut QueueState) -> bool) -> bool {
        let wake = {
            let mut state = self.lock();
            if !admit(&mut state) {
                return false;
            }
            state.enqueue(Ready {
                message,
                redelivered: false,
                deliveries: 0,
            });
            Self::take_waiting(&mut state)
        };
        self.changed(wake);
        true
    }

    pub(crate) fn add_consumer(&self, id: u64, prefetch: usize) {
        let mut state = self.lock();
        state.consumers.insert(
            id,
            ConsumerSlot {
                prefetch: prefetch.max(1),
                in_flight: 0,
                assigned: VecDeque::new(),
                cancelled: false,
            },
        );
        state.rotation.push_back(id);
        drop(state);
        self.signal.bump();
    }

    pub(crate) fn take(&self, consumer: u64) -> Take {
        let mut state = self.lock();
        let state = &mut *state;
        let Some(slot) = state.consumers.get_mut(&consumer) else {
            return Take::Cancelled;
        };
        if slot.cancelled {
            return Take::Cancelled;
        }
        let next = match slot.assigned.pop_front() {
            Some(ready) => Some(ready),
            None if slot.in_flight < slot.prefetch => state.ready.pop_front(),
            None => None,
        };
        let Some(ready) = next else {
            state.consumer_waiting = true;
            return Take::Wait;
        };
        slot.in_flight += 1;
        state.next_tag += 1;
        let tag = state.next_tag;
        let deliveries = ready.deliveries + 1;
        state.unacked.insert(
            tag,
            Unacked {
                message: Arc::clone(&ready.message),
                consumer,
                deliveries,
            },
        );
        Take::Message {
            message: ready.message,
            redelivered: ready.redelivered,
            deliveries,
            tag,
        }
    }

    /// Settles a delivery; `false` if the tag is unknown (its consumer went away and the
    /// message was requeued).
    pub(crate) fn settle(self: &Arc<Self>, tag: u64, settlement: Settlement) -> bool {
        let mut state = self.lock();
        let Some(Unacked {
            message,
            consumer,
            deliveries,
        }) = state.unacked.remove(&tag)
        else {
            return false;
        };
        let mut dead = None;
        if let Some(slot) = state.consumers.get_mut(&consumer) {
            slot.in_flight = slot.in_flight.saturating_sub(1);
        }
        match settlement {
            Settlement::Ack => {}
            Settlement::Requeue => state.ready.push_front(Ready {
                message,
                redelivered: true,
                deliveries,
            }),
            Settlement::Retry(retry) => {
                state.delayed += 1;
                self.redeliver_later(message, retry);
            }
            Settlement::DeadLetter(reason) => {
                let mut message = Arc::unwrap_or_clone(message);
                reason.mark(&mut message);
                dead = Some(message);
            }
        }
        let wake = Self::take_waiting(&mut state);
        drop(state);
        if let Some(message) = dead {
            // to the dead-letter queue; a dead-letter queue has none of its own and keeps
            // what its consumer dead-letters, at the back
            let target = self.dead_letters.as_ref().unwrap_or(self);
            target.append(Arc::new(message), |_| true);
        }
        self.changed(wake);
        true
    }

    /// The messages in this (dead-letter) queue, waiting or being handled, oldest first.
    pub(crate) fn dead_lettered(&self, service: &str) -> Vec<DeadLetteredMessage> {
        let state = self.lock();
        let mut unacked: Vec<(&u64, &Unacked)> = state.unacked.iter().collect();
        unacked.sort_by_key(|(tag, _)| **tag);
        let assigned = state.consumers.values().flat_map(|c| c.assigned.iter());
        unacked
            .into_iter()
            .map(|(_, u)| &u.message)
            .chain(assigned.map(|r| &r.message))
            .chain(state.ready.iter().map(|r| &r.message))
            .map(|message| DeadLetteredMessage::new(Message::clone(message), service))
            .collect()
    }

    /// Messages in this queue: ready, pushed to consumers or unsettled.
    pub(crate) fn len(&self) -> usize {
        let state = self.lock();
        state.ready.len() + state.unacked.len() + state.assigned()
    }

    /// A delayed retry: after the delay the message comes back as a new one, carrying the
    /// attempts spent and the handlers to run (as a TTL wait queue dead-lettering back).
    fn redeliver_later(self: &Arc<Self>, message: Arc<Message>, retry: Retry) {
        let mut message = Arc::unwrap_or_clone(message);
        retry.mark(&mut message);
        let queue = Arc::clone(self);
        tokio::spawn(async move {
            tokio::time::sleep(retry.delay).await;
            // as a new message, whatever the length limit, as a TTL queue dead-letters it
            queue.append(Arc::new(message), |state| {
                state.delayed = state.delayed.saturating_sub(1);
                true
            });
        });
    }

    /// Stops deliveries to a consumer; what was pushed to it and not taken goes to others.
    pub(crate) fn cancel(&self, consumer: u64) {
        let mut state = self.lock();
        if let Some(slot) = state.consumers.get_mut(&consumer) {
            slot.cancelled = true;
            let assigned = std::mem::take(&mut slot.assigned);
            state.give_back(assigned);
        }
        drop(state);
        self.changed(true);
    }

    /// Removes a consumer; its unsettled deliveries go back to the head of the queue,
    /// marked redelivered.
    pub(crate) fn remove_consumer(&self, consumer: u64) {
        let mut state = self.lock();
        state.rotation.retain(|c| *c != consumer);
        if let Some(slot) = state.consumers.remove(&consumer) {
            state.give_back(slot.assigned);
        }
        let mut tags: Vec<u64> = state
            .unacked
            .iter()
            .filter(|(_, unacked)| unacked.consumer == consumer)
            .map(|(tag, _)| *tag)
            .collect();
        tags.sort_unstable();
        for tag in tags.into_iter().rev() {
            if let Some(unacked) = state.unacked.remove(&tag) {
                state.ready.push_front(Ready {
                    message: unacked.message,
                    redelivered: true,
                    deliveries: unacked.deliveries,
                });
            }
        }
        drop(state);
        self.changed(true);
    }

    /// Moves the waiting dead letters back into the queue, without their reason and
    /// attempts. With `only_failed`, each keeps the names of its failed handlers, so that
    /// only those run.
    pub(crate) fn replay_dead_letters(&self, only_failed: bool) -> usize {
        let Some(dlq) = &self.dead_letters else {
            return 0;
        };
        let dead: Vec<Ready> = {
            let mut dlq = dlq.lock();
            let mut dead: Vec<Ready> = dlq.ready.drain(..).collect();
            for slot in dlq.consumers.values_mut() {
                dead.extend(slot.assigned.drain(..));
            }
            dead
        };
        let count = dead.len();
        let mut state = self.lock();
        for ready in dead {
            let mut message = Arc::unwrap_or_clone(ready.message);
            let headers = &mut message.metadata.headers;
            headers.remove(HEADER_DEATH_REASON);
            headers.remove(HEADER_ATTEMPTS);
            let named = headers
                .get(HEADER_FAILED_HANDLERS)
                .is_some_and(|names| !names.is_empty());
            if !only_failed || !named {
                headers.remove(HEADER_FAILED_HANDLERS);
            }
            state.ready.push_back(Ready {
                message: Arc::new(message),
                redelivered: true,
                deliveries: 0,
            });
        }
        drop(state);
        dlq.changed(true);
        self.changed(true);
        count
    }

    /// Whether consumer `id` is still attached.
    pub(crate) fn has_consumer(&self, id: u64) -> bool {
        self.lock().consumers.contains_key(&id)
    }

    /// Busy: unsettled deliveries, or ready messages that a consumer will take.
    pub(crate) fn is_busy(&self) -> bool {
        let state = self.lock();
        let consuming = state.consumers.values().any(|c| !c.cancelled);
        let assigned = state.consumers.values().any(|c| !c.assigned.is_empty());
        !state.unacked.is_empty()
            || assigned
            || state.delayed > 0
            || (!state.ready.is_empty() && consuming)
    }
}
