//! `QuotaService.Allocate`: budget leases for data planes (see `service::budgets`).

use modelgate_proto::quota::v1::{
    quota_service_server::QuotaService, AllocateRequest, AllocateResponse,
};
use tonic::{Request, Response, Status};

use crate::service::{budgets, Services};

pub struct QuotaAllocator {
    pub services: Services,
}

#[tonic::async_trait]
impl QuotaService for QuotaAllocator {
    async fn allocate(
        &self,
        request: Request<AllocateRequest>,
    ) -> Result<Response<AllocateResponse>, Status> {
        let r = request.into_inner();
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
        Ok(Response::new(AllocateResponse {
            granted_total_micros: grant.granted_total_micros,
            period_start: grant.period_start,
            lease_ttl_ms: i64::try_from(grant.lease_ttl.as_millis()).unwrap_or(i64::MAX),
            remaining_micros: grant.remaining_micros,
        }))
    }
}
