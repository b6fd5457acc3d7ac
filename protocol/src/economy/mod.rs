//! The economy, as pure protocol: prices, amounts, spending caps, the cost of an
//! execution, and the signed usage receipts two nodes exchange (see docs/economy.md).
//!
//! Every figure is an integer of micro-credits (µc; 1 credit = 1,000,000 µc), computed
//! with checked arithmetic: nothing here rounds, and nothing overflows silently.
//!
//! - `price.rs`: [`Price`] (per task, in `mesg.yml`), [`Usage`], [`Cost`], and
//!   [`Economy`], the service-wide settings (the publisher's share).
//! - `receipt.rs`: [`UsageReceipt`] (signed by the executor), [`CumulativeAck`] (signed
//!   by the requester), and [`check_receipt`], the requester's pure verdict on a receipt.
//! - `settlement.rs`: [`Settlement`], a payer's signed cumulative settlement total.

mod price;
mod receipt;
#[cfg(test)]
mod receipt_tests;
mod settlement;
#[cfg(test)]
mod tests;

pub use price::{
    BPS_DENOMINATOR, Cost, Economy, MAX_PRICE_PART, Overflow, Price, Usage, canonical_size,
};
pub use receipt::{
    CumulativeAck, MAX_RECEIPT_BYTES, Pair, PairState, ReceiptReject, ReceiptVerdict,
    RequesterView, UsageReceipt, check_receipt,
};
pub use settlement::{MAX_METHOD_LEN, MAX_PROOF_LEN, MAX_SETTLEMENT_BYTES, Settlement};
