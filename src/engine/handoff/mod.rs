//! The hand-off to the OS: byte ranges leased to a fetcher outside the engine (an iOS background
//! `URLSession`, an Android job), and the chunks it fetched spliced back in.
//!
//! Decides: how a download's remaining bytes are cut into leases ([`plan`]); what each OS request
//! carries and how its task is tagged ([`request`]); whether a fetched chunk may be written, must
//! restart the download, or is refused ([`judge`], on the same rules as the engine's own answers);
//! where a chunk waits between the OS's callback and its ingest ([`staging`]); and how its bytes
//! reach the part file without passing through memory ([`splice`]).
//!
//! May not touch: the manager, runners or the scheduler. It imports the model, the ranges, the
//! HTTP rules and storage; `run` puts it to work (stopping runners, persisting leases in the same
//! transaction as the journal layout, ingesting).

pub mod judge;
pub mod plan;
pub mod request;
pub mod splice;
pub mod staging;
