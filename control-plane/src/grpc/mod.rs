//! gRPC adapters (tonic): the config stream, usage ingest and quota leases, over mutual TLS
//! (`transport`), each call attributed to the node its client certificate names (`identity`).
//! Only this module touches the generated wire types on the control-plane side (besides the
//! snapshot publisher's cached encoding).

mod config;
pub mod identity;
mod quota;
pub mod transport;
mod usage;

pub use config::ConfigStream;
pub use quota::QuotaAllocator;
pub use usage::UsageIngest;

use crate::service::ServiceError;

impl From<ServiceError> for tonic::Status {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Invalid { param, message } => {
                tonic::Status::invalid_argument(format!("{param}: {message}"))
            }
            ServiceError::NotFound(what) => tonic::Status::not_found(what),
            ServiceError::Conflict(what) => tonic::Status::already_exists(what),
            ServiceError::Forbidden(why) => tonic::Status::permission_denied(why),
            ServiceError::VersionMismatch { current } => {
                tonic::Status::failed_precondition(format!("version is now {current}"))
            }
            ServiceError::Db(err) => {
                tracing::error!(error = %err, "gRPC request failed in the database");
                tonic::Status::unavailable("storage unavailable, retry")
            }
            ServiceError::Crypto(err) => {
                tracing::error!(error = %err, "gRPC request failed to open a sealed secret");
                tonic::Status::internal("internal error")
            }
            ServiceError::Unavailable(why) => tonic::Status::unavailable(why),
        }
    }
}
