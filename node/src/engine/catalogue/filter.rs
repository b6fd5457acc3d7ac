//! The catalogue's filters, checked once at the edge: every value a client can send is
//! either a filter this node can apply or a clear reason why not (the API answers it as a
//! 400), never a silent "no match".

use mesg_api_types::{
    CatalogueQuery, DEFAULT_CATALOGUE_LIMIT, MAX_CATALOGUE_LIMIT, catalogue::MAX_PUBLISHER_FILTER,
    catalogue::MIN_PUBLISHER_PREFIX,
};
use mesg_protocol::definition::{MAX_SID_LEN, is_valid_key};

/// Base58 (Bitcoin alphabet): what a public key is written in.
const BASE58: &str = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/// A checked catalogue query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogueFilter {
    /// A sid or its start.
    pub sid: Option<String>,
    /// A task key.
    pub task: Option<String>,
    /// Most a task's `call` price may be (µc).
    pub max_price: Option<u64>,
    /// A publisher key, or its start (base58).
    pub publisher: Option<String>,
    pub limit: usize,
}

/// Why a filter is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error(
        "sid `{0}`: a sid or its start is 1 to {MAX_SID_LEN} characters of lowercase letters, digits, `-` and `.`"
    )]
    Sid(String),
    #[error(
        "task `{0}`: a task key starts with a letter, then letters, digits, `_` or `-` (at most 64)"
    )]
    Task(String),
    #[error(
        "publisher `{0}`: a publisher is a public key in base58, or its first {MIN_PUBLISHER_PREFIX} to {MAX_PUBLISHER_FILTER} characters"
    )]
    Publisher(String),
    #[error("limit {0}: from 1 to {MAX_CATALOGUE_LIMIT}")]
    Limit(usize),
}

/// At most this much of a refused value is repeated in the error.
const ECHO_MAX: usize = 80;

fn echo(s: &str) -> String {
    s.chars().take(ECHO_MAX).collect()
}

impl CatalogueFilter {
    /// Check a query: a malformed filter is an error, an absent one matches everything.
    pub fn parse(q: &CatalogueQuery) -> Result<CatalogueFilter, FilterError> {
        if let Some(sid) = &q.sid {
            let ok = !sid.is_empty()
                && sid.len() <= MAX_SID_LEN
                && sid
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
            if !ok {
                return Err(FilterError::Sid(echo(sid)));
            }
        }
        if let Some(task) = &q.task
            && !is_valid_key(task)
        {
            return Err(FilterError::Task(echo(task)));
        }
        if let Some(p) = &q.publisher {
            let ok = (MIN_PUBLISHER_PREFIX..=MAX_PUBLISHER_FILTER).contains(&p.len())
                && p.chars().all(|c| BASE58.contains(c));
            if !ok {
                return Err(FilterError::Publisher(echo(p)));
            }
        }
        let limit = q.limit.unwrap_or(DEFAULT_CATALOGUE_LIMIT);
        if !(1..=MAX_CATALOGUE_LIMIT).contains(&limit) {
            return Err(FilterError::Limit(limit));
        }
        Ok(CatalogueFilter {
            sid: q.sid.clone(),
            task: q.task.clone(),
            max_price: q.max_price,
            publisher: q.publisher.clone(),
            limit,
        })
    }

    /// Whether a filter needs the definition (tasks, prices) to decide.
    pub fn needs_definition(&self) -> bool {
        self.task.is_some() || self.max_price.is_some()
    }

    /// Whether `sid` passes the sid filter (a prefix; no filter: anything, even none).
    pub fn sid_matches(&self, sid: Option<&str>) -> bool {
        match (&self.sid, sid) {
            (None, _) => true,
            (Some(want), Some(sid)) => sid.starts_with(want.as_str()),
            (Some(_), None) => false,
        }
    }

    /// Whether one of `publishers` passes the publisher filter.
    pub fn publisher_matches<'a>(
        &self,
        mut publishers: impl Iterator<Item = &'a mesg_protocol::PublicKey>,
    ) -> bool {
        match &self.publisher {
            None => true,
            Some(want) => publishers.any(|p| p.to_string().starts_with(want.as_str())),
        }
    }

    /// Whether a task passes the task and price filters. The price filter reads the `call`
    /// part only: it is the least one call costs and the one part known before the task
    /// runs (run time and output size are not), so it is what a caller can compare with
    /// the spending cap it will sign (`max_price` must be at least `call`).
    pub fn task_matches(&self, key: &str, price: Option<&mesg_protocol::economy::Price>) -> bool {
        let call = price.map_or(0, |p| p.call);
        self.task.as_deref().is_none_or(|t| t == key) && self.max_price.is_none_or(|m| call <= m)
    }
}
