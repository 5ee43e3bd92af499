//! The gRPC wire contract between control plane and data planes, generated from `proto/`.
//!
//! Only the control plane's `grpc/` module and the data plane's `config/` and `usage/` modules
//! use these types; everything else works with the domain types in `modelgate-shared`.
#![allow(clippy::all, clippy::pedantic, missing_docs)]

pub mod config {
    pub mod v1 {
        tonic::include_proto!("modelgate.config.v1");
    }
}

pub mod usage {
    pub mod v1 {
        tonic::include_proto!("modelgate.usage.v1");
    }
}

pub mod quota {
    pub mod v1 {
        tonic::include_proto!("modelgate.quota.v1");
    }
}
