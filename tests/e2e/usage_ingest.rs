//! Usage ingest over the real gRPC stream: a replayed batch is acknowledged and stored once.

use modelgate_proto::usage::v1::{
    usage_service_client::UsageServiceClient, UsageBatch, UsageEvent,
};
use tokio_stream::StreamExt;

use crate::support::Gateway;

fn event(request_id: &str, cost: i64) -> UsageEvent {
    UsageEvent {
        id: uuid::Uuid::now_v7().to_string(),
        request_id: request_id.to_owned(),
        status: 200,
        endpoint: "chat.completions".into(),
        input_tokens: 10,
        output_tokens: 5,
        cost_micros: cost,
        ..Default::default()
    }
}

#[tokio::test]
async fn the_same_usage_batch_sent_twice_is_stored_once() {
    let gw = Gateway::start().await;
    let request_id = format!("replay-{}", uuid::Uuid::now_v7());
    let batch = UsageBatch {
        batch_id: "batch-1".into(),
        node_id: "test-node".into(),
        events: vec![
            event(&request_id, 100),
            event(&request_id, 250),
            event(&request_id, 7),
        ],
    };
    let mut client = UsageServiceClient::connect(format!("http://{}", gw.grpc_addr))
        .await
        .unwrap();
    let replay = UsageBatch {
        batch_id: "batch-1-again".into(),
        ..batch.clone()
    };
    let outbound = tokio_stream::iter(vec![batch, replay]);
    let mut acks = client.report(outbound).await.unwrap().into_inner();

    let first = acks.next().await.unwrap().unwrap();
    assert_eq!(
        (first.batch_id.as_str(), first.inserted, first.duplicates),
        ("batch-1", 3, 0)
    );
    let second = acks.next().await.unwrap().unwrap();
    assert_eq!(
        (second.batch_id.as_str(), second.inserted, second.duplicates),
        ("batch-1-again", 0, 3)
    );

    let (_, page) = gw
        .admin(
            reqwest::Method::GET,
            &format!("/usage/events?request_id={request_id}"),
            None,
        )
        .await;
    let rows = page["data"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    let total: i64 = rows
        .iter()
        .map(|r| r["cost_micros"].as_i64().unwrap())
        .sum();
    assert_eq!(total, 357, "replay must not double-count");
    gw.shutdown().await;
}

#[tokio::test]
async fn usage_events_page_forward_with_a_cursor() {
    let gw = Gateway::start().await;
    let request_id = format!("paging-{}", uuid::Uuid::now_v7());
    let events: Vec<_> = (0..5).map(|i| event(&request_id, i)).collect();
    let mut client = UsageServiceClient::connect(format!("http://{}", gw.grpc_addr))
        .await
        .unwrap();
    let batch = UsageBatch {
        batch_id: "b".into(),
        node_id: "n".into(),
        events,
    };
    let mut acks = client
        .report(tokio_stream::iter(vec![batch]))
        .await
        .unwrap()
        .into_inner();
    acks.next().await.unwrap().unwrap();

    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let path = format!("/usage/events?request_id={request_id}&limit=2{after}");
        let (status, page) = gw.admin(reqwest::Method::GET, &path, None).await;
        assert_eq!(status, 200);
        seen.extend(
            page["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["cost_micros"].as_i64().unwrap()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => after = format!("&after={c}"),
            None => break,
        }
    }
    assert_eq!(seen, vec![0, 1, 2, 3, 4]);
    gw.shutdown().await;
}
