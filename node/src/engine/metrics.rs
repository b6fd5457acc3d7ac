//! The engine's counters and gauges, exposed on `/metrics`: one struct shared by every
//! component (each counter is a cheap shared handle), registered once at start.

/// Counters exposed on `/metrics`.
#[derive(Debug, Default, Clone)]
pub struct EngineMetrics {
    pub executions_created: prometheus_client::metrics::counter::Counter,
    pub executions_completed: prometheus_client::metrics::counter::Counter,
    pub executions_failed: prometheus_client::metrics::counter::Counter,
    pub executions_accepted_from_peers: prometheus_client::metrics::counter::Counter,
    pub peer_work_refused: prometheus_client::metrics::counter::Counter,
    pub events_emitted: prometheus_client::metrics::counter::Counter,
    pub events_received: prometheus_client::metrics::counter::Counter,
    /// Network events whose emitter does not announce the instance they claim.
    pub events_dropped_unentitled: prometheus_client::metrics::counter::Counter,
    /// Network events whose data does not match the service's event schema.
    pub events_dropped_invalid: prometheus_client::metrics::counter::Counter,
    /// Network events whose service definition could not be had to check them.
    pub events_dropped_unchecked: prometheus_client::metrics::counter::Counter,
    /// Network events seen before (a replay, also across restarts).
    pub events_dropped_replayed: prometheus_client::metrics::counter::Counter,
    /// Events received again from their emitter's catch-up log (a gap, a restart).
    pub events_caught_up: prometheus_client::metrics::counter::Counter,
    /// Events of a catch-up answer dropped: not signed by the emitter asked, not of the
    /// service asked, or not verifying.
    pub events_catch_up_dropped: prometheus_client::metrics::counter::Counter,
    /// Results the outbox gave up delivering to their requester's node.
    pub results_undelivered: prometheus_client::metrics::counter::Counter,
    /// Requests answered with the execution their idempotency key already named (from an
    /// Application here, or a peer's duplicate): nothing ran again.
    pub idempotent_replays: prometheus_client::metrics::counter::Counter,
    /// Announcements from a peer exchange that did not verify (a peer's own or one it
    /// passed on).
    pub exchange_dropped: prometheus_client::metrics::counter::Counter,
    /// Announcements with new offers learned from a peer exchange and published again on
    /// gossip (how what one side of a partition learned reaches the other side).
    pub announcements_republished: prometheus_client::metrics::counter::Counter,
    /// Reconciles sent to a random connected peer without a connection opening (see
    /// `engine/net/exchange.rs`, anti-entropy).
    pub periodic_reconciles: prometheus_client::metrics::counter::Counter,
    /// Nodes in the provider table (expired ones are evicted every second).
    pub provider_nodes: prometheus_client::metrics::gauge::Gauge,
    /// Callers blocked in `wait` right now.
    pub waiters: prometheus_client::metrics::gauge::Gauge,
    /// Event topics of the network this node is subscribed to right now.
    pub event_topics: prometheus_client::metrics::gauge::Gauge,
    /// µc of receipts this node issued as executor.
    pub micro_credits_earned: prometheus_client::metrics::counter::Counter,
    /// µc of receipts this node accepted as requester.
    pub micro_credits_spent: prometheus_client::metrics::counter::Counter,
    /// Receipts this node rejected, by reason (`ReceiptReject::code`).
    pub receipts_rejected: prometheus_client::metrics::family::Family<
        [(&'static str, String); 1],
        prometheus_client::metrics::counter::Counter,
    >,
    /// Priced calls of peers refused because of their credit limit.
    pub calls_refused_credit: prometheus_client::metrics::counter::Counter,
    /// Receipts sent apart from their results (`WorkRequest::Receipts`), and the batches
    /// that carried them: their ratio is the mean batch size.
    pub receipts_sent: prometheus_client::metrics::counter::Counter,
    pub receipt_batches_sent: prometheus_client::metrics::counter::Counter,
}

impl EngineMetrics {
    /// Register the engine's counters in a Prometheus registry.
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        let m = self;
        let r = registry.sub_registry_with_prefix("mesg");
        r.register(
            "executions_created",
            "Executions created on this node",
            m.executions_created.clone(),
        );
        r.register(
            "executions_completed",
            "Executions that ended Completed on this node",
            m.executions_completed.clone(),
        );
        r.register(
            "executions_failed",
            "Executions that ended Failed on this node",
            m.executions_failed.clone(),
        );
        r.register(
            "executions_accepted_from_peers",
            "Executions other nodes submitted that this node accepted",
            m.executions_accepted_from_peers.clone(),
        );
        r.register(
            "peer_work_refused",
            "Work requests refused because their peer exceeded its rate",
            m.peer_work_refused.clone(),
        );
        r.register(
            "events_emitted",
            "Events emitted by this node's instances",
            m.events_emitted.clone(),
        );
        r.register(
            "events_received",
            "Events received from the network",
            m.events_received.clone(),
        );
        r.register(
            "events_dropped_unentitled",
            "Network events dropped: their emitter does not announce the instance they claim",
            m.events_dropped_unentitled.clone(),
        );
        r.register(
            "events_dropped_invalid",
            "Network events dropped: their data does not match the service's event schema",
            m.events_dropped_invalid.clone(),
        );
        r.register(
            "events_dropped_unchecked",
            "Network events dropped: the service's definition could not be fetched to check them",
            m.events_dropped_unchecked.clone(),
        );
        r.register(
            "events_dropped_replayed",
            "Network events dropped: seen before (a replay)",
            m.events_dropped_replayed.clone(),
        );
        r.register(
            "events_caught_up",
            "Events received from their emitter's catch-up log after a gap or a restart",
            m.events_caught_up.clone(),
        );
        r.register(
            "events_catch_up_dropped",
            "Events of a catch-up answer dropped: not the emitter's own, not the service asked, or not verifying",
            m.events_catch_up_dropped.clone(),
        );
        r.register(
            "results_undelivered",
            "Results the outbox gave up delivering to the requester's node",
            m.results_undelivered.clone(),
        );
        r.register(
            "idempotent_replays",
            "Requests answered with the execution their idempotency key already named",
            m.idempotent_replays.clone(),
        );
        r.register(
            "exchange_announcements_dropped",
            "Announcements from a peer exchange dropped: they did not verify or were not the sender's own",
            m.exchange_dropped.clone(),
        );
        r.register(
            "announcements_republished",
            "Announcements with new offers learned from a peer exchange and published again on gossip",
            m.announcements_republished.clone(),
        );
        r.register(
            "periodic_reconciles",
            "Reconciles of what this node holds with a random connected peer, sent without a connection opening",
            m.periodic_reconciles.clone(),
        );
        r.register(
            "provider_nodes",
            "Nodes in the provider table",
            m.provider_nodes.clone(),
        );
        r.register(
            "execution_waiters",
            "Callers waiting for an execution to end (GET /v1/executions/{id}/wait)",
            m.waiters.clone(),
        );
        r.register(
            "event_topics_subscribed",
            "Event topics of the network this node is subscribed to (SSE streams, processes)",
            m.event_topics.clone(),
        );
        r.register(
            "micro_credits_earned",
            "Micro-credits of the usage receipts this node issued as executor",
            m.micro_credits_earned.clone(),
        );
        r.register(
            "micro_credits_spent",
            "Micro-credits of the usage receipts this node accepted as requester",
            m.micro_credits_spent.clone(),
        );
        r.register(
            "receipts_rejected",
            "Usage receipts this node rejected, by reason",
            m.receipts_rejected.clone(),
        );
        r.register(
            "calls_refused_credit",
            "Priced calls of peers refused because the peer reached its credit limit",
            m.calls_refused_credit.clone(),
        );
        r.register(
            "receipts_sent",
            "Usage receipts this node sent apart from their results, in batches",
            m.receipts_sent.clone(),
        );
        r.register(
            "receipt_batches_sent",
            "Batches of usage receipts this node sent (receipts_sent / this = mean batch size)",
            m.receipt_batches_sent.clone(),
        );
    }
}
