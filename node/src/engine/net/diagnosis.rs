//! "Why isn't my execution running?": what the requester learns while it routes one
//! execution (the providers it considered and what each answered, the rounds, the last
//! error, when it tries again and when it gives up), and the one-line summary in the form
//! Kubernetes' scheduler made familiar ("0/3 nodes are available: 1 busy, 1 unreachable
//! (dial failed), 1 does not run the service; attempt 4, next in 1.0 s").
//!
//! Pure: no I/O, no clock (times are given). The router keeps one [`RouteDiagnosis`] per
//! execution it is routing, in memory only (see `why.rs`).

use super::failover::Answer;
use mesg_api_types::{Diagnosis, DiagnosisState, PeerDiagnosis, PeerVerdict};
use mesg_protocol::messages::RejectCode;
use mesg_protocol::{Execution, PublicKey};

/// Providers one diagnosis remembers: the DHT may name many; the first ones tell enough.
pub const MAX_PEERS: usize = 64;
/// Longest detail (an error, a provider's message) quoted in the summary.
const MAX_DETAIL: usize = 120;
/// A provider answers a submit at once (accepted or refused): one silent for longer than
/// the request timeout (3 s) is shown as not answering. Its submit may stay in flight
/// longer (opening the stream to a frozen peer waits up to 10 s), which is the cause to
/// show meanwhile.
pub const NO_ANSWER_MS: u64 = 3_000;

/// What the requester knows of one route so far.
#[derive(Debug, Clone)]
pub struct RouteDiagnosis {
    peers: Vec<PeerDiagnosis>,
    /// Rounds started (a round offers the execution to each provider once).
    rounds: u32,
    last_error: Option<String>,
    next_attempt_at: Option<u64>,
    patience_until: u64,
}

impl RouteDiagnosis {
    /// A route that gives up at `patience_until` (unix ms); its first round starts.
    pub fn new(patience_until: u64) -> RouteDiagnosis {
        RouteDiagnosis {
            peers: Vec::new(),
            rounds: 1,
            last_error: None,
            next_attempt_at: None,
            patience_until,
        }
    }

    fn peer(&mut self, node: PublicKey) -> Option<&mut PeerDiagnosis> {
        if let Some(i) = self.peers.iter().position(|p| p.node == node) {
            return self.peers.get_mut(i);
        }
        if self.peers.len() >= MAX_PEERS {
            return None;
        }
        self.peers.push(PeerDiagnosis {
            node,
            peer_id: node.peer_id().map(|p| p.to_string()).unwrap_or_default(),
            verdict: PeerVerdict::NotTried,
            code: None,
            detail: None,
            at: None,
            offered_since: None,
        });
        self.peers.last_mut()
    }

    /// The providers the route chooses from now (announced, or found in the DHT).
    pub fn considered<'a>(&mut self, candidates: impl IntoIterator<Item = &'a PublicKey>) {
        for c in candidates {
            self.peer(*c);
        }
    }

    /// The execution is offered to `node` at `now`.
    pub fn offering(&mut self, node: PublicKey, now: u64) {
        if let Some(p) = self.peer(node) {
            p.offered_since = Some(now);
            if p.verdict == PeerVerdict::NotTried {
                p.verdict = PeerVerdict::Offered;
            }
        }
    }

    /// `node` answered (or could not be reached); `detail` replaces the text of an
    /// `Unreachable` answer when given (the error without the peer it names).
    pub fn answered(&mut self, node: PublicKey, answer: &Answer, detail: Option<String>, now: u64) {
        let (verdict, code, text) = match answer {
            // Taken: the route ends and its diagnosis with it.
            Answer::Accepted => return,
            Answer::Rejected(r) if r.code == RejectCode::Replayed => return,
            Answer::Rejected(r) => {
                let verdict = match r.code {
                    RejectCode::Busy => PeerVerdict::Busy,
                    RejectCode::NoInstance => PeerVerdict::NoInstance,
                    RejectCode::PriceAboveCap => PeerVerdict::PriceAboveCap,
                    _ => PeerVerdict::Refused,
                };
                (verdict, Some(format!("{:?}", r.code)), r.message.clone())
            }
            Answer::Unreachable(e) => (
                PeerVerdict::Unreachable,
                None,
                detail.unwrap_or_else(|| e.clone()),
            ),
        };
        let Some(p) = self.peer(node) else { return };
        p.verdict = verdict;
        p.code = code;
        p.detail = Some(text.clone());
        p.at = Some(now);
        p.offered_since = None;
        let who = short_peer(&p.peer_id);
        self.last_error = Some(format!("{who}: {}", verdict_text(verdict, &text)));
    }

    /// Nobody left to try: the next round starts at `at` (unix ms).
    pub fn waiting(&mut self, at: u64) {
        self.next_attempt_at = Some(at);
    }

    /// The pause is over: a new round starts.
    pub fn new_round(&mut self) {
        self.rounds += 1;
        self.next_attempt_at = None;
    }

    /// Copy what the route knows at `now` into `d` (the providers in the order
    /// considered; one offered the execution and silent for [`NO_ANSWER_MS`] or more is
    /// not answering).
    pub fn fill(&self, d: &mut Diagnosis, now: u64) {
        d.peers = self.peers.clone();
        for p in &mut d.peers {
            if let Some(since) = p.offered_since
                && now.saturating_sub(since) >= NO_ANSWER_MS
            {
                p.verdict = PeerVerdict::NotAnswering;
                p.code = None;
                p.detail = Some(format!("no answer for {}", secs(now - since)));
                p.at = Some(since);
            }
        }
        d.attempts = self.rounds;
        d.last_error = self.last_error.clone();
        d.next_attempt_at = self.next_attempt_at;
        d.patience_until = Some(self.patience_until);
        d.executor = self
            .peers
            .iter()
            .find(|p| p.offered_since.is_some())
            .map(|p| p.node)
            .or(d.executor);
    }
}

fn verdict_text(verdict: PeerVerdict, detail: &str) -> String {
    match verdict {
        PeerVerdict::Unreachable => format!("unreachable ({detail})"),
        PeerVerdict::Busy => format!("busy ({detail})"),
        PeerVerdict::NoInstance => format!("no running instance ({detail})"),
        PeerVerdict::PriceAboveCap => format!("price above the cap ({detail})"),
        _ => format!("refused ({detail})"),
    }
}

/// A peer id shortened for one line: its last 8 characters.
pub fn short_peer(peer_id: &str) -> String {
    let n = peer_id.chars().count();
    if n <= 12 {
        return peer_id.to_string();
    }
    let tail: String = peer_id.chars().skip(n - 8).collect();
    format!("…{tail}")
}

fn cut(text: &str, max: usize) -> String {
    let one_line = text.replace(['\n', '\r'], " ");
    if one_line.chars().count() <= max {
        return one_line;
    }
    let mut s: String = one_line.chars().take(max).collect();
    s.push('…');
    s
}

/// Seconds with one decimal: "1.0 s".
fn secs(ms: u64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

/// Providers grouped by verdict, in a fixed order, each with its count and the distinct
/// details of that group (for the summary's parentheses).
pub fn group(peers: &[PeerDiagnosis]) -> Vec<(PeerVerdict, usize, Vec<String>)> {
    const ORDER: [PeerVerdict; 8] = [
        PeerVerdict::PriceAboveCap,
        PeerVerdict::Busy,
        PeerVerdict::NoInstance,
        PeerVerdict::NotAnswering,
        PeerVerdict::Unreachable,
        PeerVerdict::Refused,
        PeerVerdict::Offered,
        PeerVerdict::NotTried,
    ];
    let mut out = Vec::new();
    for verdict in ORDER {
        let of: Vec<&PeerDiagnosis> = peers.iter().filter(|p| p.verdict == verdict).collect();
        if of.is_empty() {
            continue;
        }
        let mut details: Vec<String> = Vec::new();
        for p in &of {
            if let Some(d) = &p.detail
                && !details.contains(d)
            {
                details.push(d.clone());
            }
        }
        out.push((verdict, of.len(), details));
    }
    out
}

/// The one-line summary of an execution that waits for a provider, at `now`.
pub fn routing_summary(d: &Diagnosis, now: u64) -> String {
    let mut line = if d.peers.is_empty() {
        let sid = d
            .sid
            .as_ref()
            .map(|s| format!(" (sid {s})"))
            .unwrap_or_default();
        format!(
            "no node provides service {}{sid}: 0 known providers among {} peers",
            d.service_hash, d.known_nodes
        )
    } else {
        let total = d.peers.len() + d.without_service;
        let mut parts: Vec<String> = group(&d.peers)
            .into_iter()
            .map(|(verdict, n, details)| {
                let shown = matches!(
                    verdict,
                    PeerVerdict::NotAnswering
                        | PeerVerdict::Unreachable
                        | PeerVerdict::Refused
                        | PeerVerdict::PriceAboveCap
                );
                match details.first() {
                    Some(first) if shown => {
                        let more = if details.len() > 1 { "; …" } else { "" };
                        format!("{n} {} ({}{more})", verdict.label(), cut(first, MAX_DETAIL))
                    }
                    _ => format!("{n} {}", verdict.label()),
                }
            })
            .collect();
        if d.without_service > 0 {
            parts.push(format!("{} does not run the service", d.without_service));
        }
        format!("0/{total} nodes are available: {}", parts.join(", "))
    };
    if d.attempts == 0 {
        line.push_str("; no attempt yet");
    } else {
        line.push_str(&format!("; attempt {}", d.attempts));
    }
    let offered = d.peers.iter().find(|p| p.offered_since.is_some());
    if let Some(p) = offered
        && !matches!(p.verdict, PeerVerdict::Offered | PeerVerdict::NotAnswering)
    {
        line.push_str(&format!(
            ", offering it to {} again now",
            short_peer(&p.peer_id)
        ));
    }
    if let Some(next) = d.next_attempt_at {
        line.push_str(&format!(", next in {}", secs(next.saturating_sub(now))));
    }
    if let Some(until) = d.patience_until {
        if until > now {
            line.push_str(&format!(", gives up in {}", secs(until - now)));
        } else if offered.is_some() {
            line.push_str(", patience over: gives up unless that offer is accepted");
        } else {
            line.push_str(", giving up");
        }
    }
    line
}

/// An empty diagnosis of `e` made at `now` (the caller fills in what it knows).
pub fn blank(e: &Execution, state: DiagnosisState, now: u64) -> Diagnosis {
    Diagnosis {
        execution_id: e.id,
        status: e.status,
        state,
        summary: String::new(),
        service_hash: e.service_hash,
        sid: None,
        executor: e.executor,
        instance_hash: e.instance_hash,
        queued_tasks: None,
        known_nodes: 0,
        without_service: 0,
        peers: Vec::new(),
        attempts: 0,
        last_error: None,
        next_attempt_at: None,
        patience_until: None,
        at: now,
    }
}

#[cfg(test)]
#[path = "diagnosis_tests.rs"]
mod tests;
