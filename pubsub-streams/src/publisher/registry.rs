//! The producers of a transport, one per service and stream, built on first use: found
//! without waiting by a publish, and listed for health and at close.

use std::collections::HashMap;
use std::sync::Arc;

use pubsub_core::health::ConnectionHealth;
use tokio::sync::Mutex;

use super::NamedProducer;
use crate::error::StreamsError;
use crate::sync::{read, write};

/// The producers of a transport, by service and stream, built on first use.
#[derive(Default)]
pub(crate) struct Producers {
    /// By service, then stream: a publish finds its producer without allocating or
    /// waiting, and health lists them without waiting for a build (the lock is never
    /// held across an await).
    by_service: std::sync::RwLock<HashMap<String, HashMap<String, Arc<NamedProducer>>>>,
    /// Held while building, so that one service and stream get one producer.
    building: Mutex<()>,
}

impl Producers {
    /// The producer of `service` on `stream`, if built.
    pub(crate) fn get(&self, service: &str, stream: &str) -> Option<Arc<NamedProducer>> {
        read(&self.by_service)
            .get(service)
            .and_then(|streams| streams.get(stream))
            .map(Arc::clone)
    }

    /// The producer of `service` on `stream`, built with `build` if there is none.
    pub(crate) async fn get_or_build<F, Fut>(
        &self,
        service: &str,
        stream: &str,
        build: F,
    ) -> Result<Arc<NamedProducer>, StreamsError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<NamedProducer, StreamsError>>,
    {
        if let Some(producer) = self.get(service, stream) {
            return Ok(producer);
        }
        let _building = self.building.lock().await;
        if let Some(producer) = self.get(service, stream) {
            return Ok(producer);
        }
        let producer = Arc::new(build().await?);
        write(&self.by_service)
            .entry(service.to_owned())
            .or_default()
            .insert(stream.to_owned(), Arc::clone(&producer));
        Ok(producer)
    }

    /// Messages every producer sent again after a recovery.
    pub(crate) fn resent(&self) -> u64 {
        read(&self.by_service)
            .values()
            .flat_map(HashMap::values)
            .map(|p| p.resent())
            .sum()
    }

    /// The health of every producer, by name.
    pub(crate) fn health(&self) -> Vec<ConnectionHealth> {
        let mut health: Vec<ConnectionHealth> = read(&self.by_service)
            .values()
            .flat_map(HashMap::values)
            .map(|p| p.health())
            .collect();
        health.sort_by(|a, b| a.name.cmp(&b.name));
        health
    }

    /// Closes every producer.
    pub(crate) async fn close(&self) {
        let producers = {
            let _building = self.building.lock().await;
            std::mem::take(&mut *write(&self.by_service))
        };
        for producer in producers.into_values().flat_map(HashMap::into_values) {
            producer.close().await;
        }
    }
}
