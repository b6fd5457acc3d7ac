//! Prices, usage and amounts: integers of micro-credits, checked arithmetic.

use crate::value::Json;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Largest value of one part of a price: 10^15 µc (a billion credits). Any larger
/// figure in `mesg.yml` is a mistake, and the bound keeps the product of a part and a
/// day of milliseconds (or a work message of KiB) far from `u64::MAX`.
pub const MAX_PRICE_PART: u64 = 1_000_000_000_000_000;
/// Basis points in a whole: a share of 10,000 bps is everything.
pub const BPS_DENOMINATOR: u64 = 10_000;

/// The price of one task, in micro-credits: a fixed part per call, a part per
/// millisecond of run time, a part per KiB (1,024 bytes, rounded up) of output. All zero
/// is free, and a free task has no price at all (`price: None` in its definition).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Price {
    /// µc per call.
    #[cfg_attr(feature = "openapi", schema(maximum = 18446744073709551615u64))]
    pub call: u64,
    /// µc per millisecond of run time (from start to end on the executor).
    #[cfg_attr(feature = "openapi", schema(maximum = 18446744073709551615u64))]
    pub per_ms: u64,
    /// µc per KiB of output (the canonical JSON of the outputs, rounded up to whole KiB).
    #[cfg_attr(feature = "openapi", schema(maximum = 18446744073709551615u64))]
    pub per_kib: u64,
}

/// What an execution (or several) used: the figures a price applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Usage {
    #[cfg_attr(feature = "openapi", schema(maximum = 18446744073709551615u64))]
    pub calls: u64,
    /// Milliseconds from start to end on the executor.
    #[cfg_attr(feature = "openapi", schema(maximum = 18446744073709551615u64))]
    pub duration_ms: u64,
    /// Bytes of output: the size of the outputs' canonical JSON (sorted keys, no spaces).
    #[cfg_attr(feature = "openapi", schema(maximum = 18446744073709551615u64))]
    pub bytes_out: u64,
}

/// An amount that does not fit in 64 bits: refused, never wrapped or saturated silently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the amount overflows 64 bits of micro-credits")]
pub struct Overflow;

impl Usage {
    /// The usage of one call that ran `duration_ms` and returned `outputs`.
    pub fn of_call(duration_ms: u64, outputs: &Json) -> Usage {
        Usage {
            calls: 1,
            duration_ms,
            bytes_out: canonical_size(outputs),
        }
    }

    /// KiB of output, rounded up (1 byte is 1 KiB; 1,024 bytes are 1 KiB; 1,025 are 2).
    pub fn kib_out(&self) -> u64 {
        self.bytes_out.div_ceil(1024)
    }
}

/// Size in bytes of a value's canonical JSON (what [`Usage::bytes_out`] counts).
pub fn canonical_size(value: &Json) -> u64 {
    crate::canonical::to_canonical_json(&value.0).len() as u64
}

impl Price {
    /// Whether every part is zero.
    pub fn is_free(&self) -> bool {
        *self == Price::default()
    }

    /// `calls × call + duration_ms × per_ms + ⌈bytes_out / 1024⌉ × per_kib`, exactly.
    pub fn amount(&self, usage: &Usage) -> Result<u64, Overflow> {
        let calls = usage.calls.checked_mul(self.call).ok_or(Overflow)?;
        let time = usage.duration_ms.checked_mul(self.per_ms).ok_or(Overflow)?;
        let out = usage.kib_out().checked_mul(self.per_kib).ok_or(Overflow)?;
        calls
            .checked_add(time)
            .and_then(|a| a.checked_add(out))
            .ok_or(Overflow)
    }

    /// The least one call can cost (its `call` part: no time, no output). A spending cap
    /// below it can never be met, so such a request is refused before it runs.
    pub fn minimum(&self) -> u64 {
        self.call
    }

    /// What the executor charges for `usage` under the request's cap: the amount, and
    /// never more than the cap (an amount too large for 64 bits is above any cap, so it
    /// is charged the cap). Without a cap the amount itself, or [`Overflow`].
    pub fn charge(&self, usage: &Usage, cap: Option<u64>) -> Result<u64, Overflow> {
        match (self.amount(usage), cap) {
            (Ok(a), Some(cap)) => Ok(a.min(cap)),
            (Err(Overflow), Some(cap)) => Ok(cap),
            (amount, None) => amount,
        }
    }
}

impl fmt::Display for Price {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} µc per call + {} µc per ms + {} µc per KiB out",
            self.call, self.per_ms, self.per_kib
        )
    }
}

/// What an execution cost, as its executor recorded it when it ended: the usage, the
/// price applied (the task's, fixed by the service hash), the request's cap and the
/// amount charged (`min(price × usage, cap)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Cost {
    pub usage: Usage,
    pub price: Price,
    /// The request's spending cap (µc).
    #[cfg_attr(feature = "openapi", schema(maximum = 18446744073709551615u64))]
    pub max_price: Option<u64>,
    /// µc charged.
    #[cfg_attr(feature = "openapi", schema(maximum = 18446744073709551615u64))]
    pub amount: u64,
}

impl Cost {
    /// The cost of `usage` at `price` under `cap`.
    pub fn of(price: Price, usage: Usage, cap: Option<u64>) -> Result<Cost, Overflow> {
        Ok(Cost {
            usage,
            price,
            max_price: cap,
            amount: price.charge(&usage, cap)?,
        })
    }

    /// Whether the cap cut the amount.
    pub fn capped(&self) -> bool {
        self.price.amount(&self.usage) != Ok(self.amount)
    }
}

/// Service-wide economy settings (`economy:` in `mesg.yml`). The publisher is the key
/// of the service's signed publisher claim (see [`crate::publisher`]); the definition only
/// says which share of each payment is theirs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Economy {
    /// The publisher's share of each amount, in basis points (0 to 10,000: 1,000 is 10%).
    #[cfg_attr(feature = "openapi", schema(maximum = 10000))]
    pub publisher_share_bps: u16,
}

impl Economy {
    /// The publisher's part of `amount`, rounded down (the executor keeps the rest, so the
    /// two parts always add up to the amount).
    pub fn publisher_part(&self, amount: u64) -> u64 {
        let bps = u128::from(self.publisher_share_bps.min(BPS_DENOMINATOR as u16));
        (u128::from(amount) * bps / u128::from(BPS_DENOMINATOR)) as u64
    }
}
