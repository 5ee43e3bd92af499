//! `QuotaService`: budget leases (see `service::budgets`) and rate-limit leases (see
//! `service::limits`) for data planes, held by the caller's certificate node only.

use modelgate_proto::quota::v1::{
    quota_service_server::QuotaService, AllocateRequest, AllocateResponse, RateRequest,
    RateResponse,
};
use tonic::{Request, Response, Status};

use super::identity;
use crate::service::{budgets, limits, Services};

pub struct QuotaAllocator {
    pub services: Services,
}

#[tonic::async_trait]
impl QuotaService for QuotaAllocator {
    async fn allocate(
        &self,
        request: Request<AllocateRequest>,
    ) -> Result<Response<AllocateResponse>, Status> {
        let caller = identity::caller(&request, &self.services.revoked)?;
        let r = request.into_inner();
        caller.lease_holder(&r.node_id)?;
        let grant = budgets::allocate(
            &self.services,
            budgets::AllocateInput {
                node: r.node_id,
                budget_id: r.budget_id,
                period_start: r.period_start,
                consumed_micros: r.consumed_micros,
                want_micros: r.want_micros,
                need_micros: r.need_micros,
            },
        )
        .await?;
        self.services
            .metrics
            .granted(crate::metrics::GrantKind::Budget);
        Ok(Response::new(AllocateResponse {
            granted_total_micros: grant.granted_total_micros,
            period_start: grant.period_start,
            lease_ttl_ms: i64::try_from(grant.lease_ttl.as_millis()).unwrap_or(i64::MAX),
            remaining_micros: grant.remaining_micros,
        }))
    }

    async fn allocate_rate(
        &self,
        request: Request<RateRequest>,
    ) -> Result<Response<RateResponse>, Status> {
        let caller = identity::caller(&request, &self.services.revoked)?;
        let r = request.into_inner();
        caller.lease_holder(&r.node_id)?;
        let grant = limits::allocate(
            &self.services,
            limits::RateAsk {
                node: r.node_id,
                limit_id: r.limit_id,
                measure: limits::parse_measure(&r.measure)?,
                window_start: r.window_start,
                consumed: r.consumed,
                want: r.want,
                need: r.need,
                held: r.held,
            },
        )
        .await?;
        self.services
            .metrics
            .granted(crate::metrics::GrantKind::RateLimit);
        Ok(Response::new(RateResponse {
            granted_total: grant.granted_total,
            window_start: grant.window_start,
            lease_ttl_ms: i64::try_from(grant.lease_ttl.as_millis()).unwrap_or(i64::MAX),
            remaining: grant.remaining,
        }))
    }
}
