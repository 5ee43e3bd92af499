//! The node's side of slot leasing against a control plane stand-in served over real gRPC.

use modelgate_proto::quota::v1::quota_service_server::{QuotaService, QuotaServiceServer};
use modelgate_proto::quota::v1::{AllocateRequest, AllocateResponse, RateResponse};
use modelgate_shared::limits::LimitScope;
use modelgate_shared::routing::TrafficClass;
use modelgate_shared::snapshot::Environment;
use tonic::{Request, Response, Status};

use super::*;

/// A control plane for one node and one concurrency limit: a call is answered after a short
/// delay (so waiters queue behind it) with the slots the node asked for, up to the limit.
struct Ledger {
    limit: i64,
}

#[tonic::async_trait]
impl QuotaService for Ledger {
    async fn allocate(
        &self,
        _: Request<AllocateRequest>,
    ) -> Result<Response<AllocateResponse>, Status> {
        Err(Status::unimplemented("budgets are not part of this test"))
    }

    async fn allocate_rate(
        &self,
        req: Request<RateRequest>,
    ) -> Result<Response<RateResponse>, Status> {
        let r = req.into_inner();
        tokio::time::sleep(Duration::from_millis(20)).await;
        // What it holds and uses plus what it asks for, never more than the limit.
        let granted_total = (r.consumed + r.want.max(r.need))
            .max(r.held)
            .min(self.limit);
        Ok(Response::new(RateResponse {
            granted_total,
            window_start: r.window_start,
            lease_ttl_ms: 30_000,
            remaining: self.limit - granted_total,
        }))
    }
}

struct TeamKey;

impl KeyView for TeamKey {
    fn id(&self) -> &str {
        "key-1"
    }
    fn team_id(&self) -> &str {
        "team-1"
    }
    fn owner_user_id(&self) -> &str {
        ""
    }
    fn environment(&self) -> Environment {
        Environment::Prod
    }
    fn data_class(&self) -> &str {
        ""
    }
    fn is_revoked(&self) -> bool {
        false
    }
    fn is_disabled(&self) -> bool {
        false
    }
    fn expires_at(&self) -> Option<i64> {
        None
    }
    fn may_use(&self, _: &str) -> bool {
        true
    }
    fn may_call(&self, _: &str) -> bool {
        true
    }
    fn traffic_class_for(&self, requested: Option<TrafficClass>) -> Option<TrafficClass> {
        requested
    }
}

#[tokio::test]
async fn requests_arriving_together_get_every_free_slot_one_lease_call_at_a_time() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(QuotaServiceServer::new(Ledger { limit: 4 }))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let node = Limits::new("node-1", channel);
    let limit = Arc::new(RateLimit {
        id: "limit-1".into(),
        scope: LimitScope::Team,
        scope_id: "team-1".into(),
        model: None,
        rpm: 0,
        tpm: 0,
        max_concurrent: 4,
        when_unreachable: LimitFallback::FailClosed,
    });
    let limits = vec![limit];
    // Four requests at once on a node holding no slot: each share a call brings is one slot
    // (a tenth of 4, at least 1), and the calls are made one at a time.
    let admitted = futures_util::future::join_all(
        (0..4).map(|_| node.admit(&limits, &TeamKey, "gpt", 0, 1_763_900_000)),
    )
    .await;
    let refused = admitted.iter().filter(|a| a.is_err()).count();
    assert_eq!(
        refused, 0,
        "{refused} of 4 refused under a limit of 4 with every slot free"
    );
    server.abort();
}
