//! Which service runs the `#[handler]`s that name none: one service per process.
//!
//! A handler without `service = ".."` belongs to the binary's service. A binary that runs
//! one service (the common case, and every doc example) needs no annotation; one that runs
//! several in a process — a gateway and a processor, the e-commerce example's four — must
//! say which handler is whose, or the handlers of one would run, and fail, on the bus of
//! another. So the first service whose bus selects them by default holds them while that
//! bus lives (several buses of that service may: they share its queue), and a bus of
//! another service that would select them too fails to build, naming them and the fixes.

use std::sync::{Mutex, MutexGuard};

use crate::error::Error;
use crate::registration::{HandlerInfo, registered_handlers};

/// The service that runs the unassigned handlers in this process, and how many of its
/// buses hold them.
static OWNER: Mutex<Option<(String, usize)>> = Mutex::new(None);

fn owner() -> MutexGuard<'static, Option<(String, usize)>> {
    OWNER
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A bus's hold on the handlers that name no service; released when dropped.
#[derive(Debug)]
pub(crate) struct UnassignedClaim(());

impl Drop for UnassignedClaim {
    fn drop(&mut self) {
        let mut owner = owner();
        if let Some((_, buses)) = owner.as_mut() {
            *buses -= 1;
            if *buses == 0 {
                *owner = None;
            }
        }
    }
}

/// Claims the `#[handler]`s that name no service for a bus of `service` that selects
/// handlers by default: `None` if the binary has none, an error naming them if a bus of
/// another service holds them.
pub(crate) fn claim(service: &str) -> Result<Option<UnassignedClaim>, Error> {
    let registered = registered_handlers();
    let (unassigned, reserved): (Vec<&HandlerInfo>, Vec<&HandlerInfo>) =
        registered.iter().partition(|h| h.service.is_none());
    if unassigned.is_empty() {
        return Ok(None);
    }
    let mut owner = owner();
    match owner.as_mut() {
        Some((holder, buses)) if holder == service => *buses += 1,
        Some((holder, _)) => {
            return Err(Error::UnassignedHandlersTaken {
                service: service.to_owned(),
                owner: holder.clone(),
                handlers: unassigned.iter().map(|h| describe(h)).collect(),
            });
        }
        None => {
            if !reserved.is_empty() {
                // a binary of several services: say who runs the others' unmarked handlers
                let names: Vec<&str> = unassigned.iter().map(|h| h.name.as_str()).collect();
                tracing::info!(
                    %service,
                    handlers = ?names,
                    "this bus runs the #[handler]s that name no service; a bus of another service in this process will not (#[handler(service = \"..\")] reserves one)"
                );
            }
            *owner = Some((service.to_owned(), 1));
        }
    }
    Ok(Some(UnassignedClaim(())))
}

/// `name` (file:line), for the error.
fn describe(handler: &HandlerInfo) -> String {
    format!("`{}` ({}:{})", handler.name, handler.file, handler.line)
}
