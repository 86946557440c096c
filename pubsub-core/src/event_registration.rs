//! The event types linked into the binary, as `#[derive(Event)]` registered them.
//!
//! A stream-backed bus whose handler patterns start with a wildcard (`#`, `*.created`)
//! reads the stream of every domain it knows of; each event type derived in the binary
//! makes its domain known, whether or not a handler names it.

/// One event type, registered by `#[derive(Event)]`. Generated code builds it; read the
/// registered ones with [`registered_events`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct EventRegistration {
    /// The event's domain (`order`).
    pub domain: &'static str,
    /// The event's action: the rest of its key after the domain (`created`, or
    /// `{session_id}.code_updated` for a key with parameters).
    pub action: &'static str,
    /// The event's schema version.
    pub version: u32,
}

impl EventRegistration {
    /// What `#[derive(Event)]` registers.
    #[doc(hidden)]
    pub const fn new(domain: &'static str, action: &'static str, version: u32) -> Self {
        Self {
            domain,
            action,
            version,
        }
    }
}

inventory::collect!(EventRegistration);

/// Every event type derived in the binary, sorted by domain, action and version.
///
/// ```
/// use pubsub::prelude::*;
///
/// #[derive(Debug, Clone, Serialize, Deserialize, Event)]
/// #[event(domain = "invoice", action = "sent", version = 2)]
/// struct InvoiceSent { number: u64 }
///
/// let events = pubsub::registry::registered_events();
/// assert!(events.iter().any(|e| e.domain == "invoice" && e.action == "sent" && e.version == 2));
/// ```
pub fn registered_events() -> Vec<EventRegistration> {
    let mut events: Vec<EventRegistration> = inventory::iter::<EventRegistration>
        .into_iter()
        .copied()
        .collect();
    events.sort_by_key(|e| (e.domain, e.action, e.version));
    events.dedup();
    events
}
