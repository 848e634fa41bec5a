//! Streamed replies (NDJSON): delivery as produced, line bounds, clients that leave, streamed errors.

use super::*;

#[tokio::test]
async fn a_stream_is_delivered_line_by_line_as_it_is_produced() {
    let mut fixture = Fixture::start().await;
    let mut lines = fixture
        .client()
        .stream(Method::GET, "/stream", None)
        .await
        .unwrap();
    assert_eq!(lines.status, 200);
    let producer = fixture.next_stream().await;
    producer.send(Bytes::from("one\n")).await.unwrap();
    assert_eq!(
        within("line one", lines.next_line())
            .await
            .unwrap()
            .unwrap(),
        "one"
    );
    // Lines split across chunks, several lines in one chunk, empty chunks
    // (which must not end the chunked body), CRLF.
    producer.send(Bytes::from("tw")).await.unwrap();
    producer.send(Bytes::new()).await.unwrap();
    producer
        .send(Bytes::from("o\r\nthree\nfour"))
        .await
        .unwrap();
    assert_eq!(lines.next_line().await.unwrap().unwrap(), "two");
    assert_eq!(lines.next_line().await.unwrap().unwrap(), "three");
    producer.send(Bytes::from("\n")).await.unwrap();
    assert_eq!(lines.next_line().await.unwrap().unwrap(), "four");
    producer
        .send(Bytes::from("last, no newline"))
        .await
        .unwrap();
    drop(producer);
    assert_eq!(
        within("the last line", lines.next_line())
            .await
            .unwrap()
            .unwrap(),
        "last, no newline"
    );
    assert_eq!(lines.next_line().await.unwrap(), None);
    assert_eq!(lines.next_line().await.unwrap(), None);
    fixture.stop().await;
}

#[tokio::test]
async fn a_line_over_1_mib_is_an_error() {
    let mut fixture = Fixture::start().await;
    let mut lines = fixture
        .client()
        .stream(Method::GET, "/stream", None)
        .await
        .unwrap();
    let producer = fixture.next_stream().await;
    let chunk = Bytes::from(vec![b'x'; 256 * 1024]);
    let feed = tokio::spawn(async move {
        for _ in 0..5 {
            if producer.send(chunk.clone()).await.is_err() {
                break;
            }
        }
    });
    match within("the long line", lines.next_line()).await {
        Err(ClientError::Failed(message)) => {
            assert!(message.contains("longer than 1048576 bytes"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    drop(lines);
    within("the producer to notice", feed).await.unwrap();
    fixture.stop().await;
}

#[tokio::test]
async fn a_client_leaving_mid_stream_drops_the_producers_receiver() {
    let mut fixture = Fixture::start().await;
    let mut lines = fixture
        .client()
        .stream(Method::GET, "/stream", None)
        .await
        .unwrap();
    let producer = fixture.next_stream().await;
    producer.send(Bytes::from("hello\n")).await.unwrap();
    assert_eq!(lines.next_line().await.unwrap().unwrap(), "hello");
    let mut connections = fixture.server().connections();
    assert_eq!(*connections.borrow(), 1);

    // The producer is idle: only the server noticing the hang-up can tell it.
    drop(lines);
    within("the stream's receiver to be dropped", producer.closed()).await;
    assert!(producer.send(Bytes::from("anyone?\n")).await.is_err());
    within(
        "the connection task to end",
        connections.wait_for(|n| *n == 0),
    )
    .await
    .unwrap();
    fixture.stop().await;
}

#[tokio::test]
async fn a_streamed_error_is_collected() {
    let fixture = Fixture::start().await;
    let lines = fixture
        .client()
        .stream(Method::GET, "/stream-error", None)
        .await
        .unwrap();
    assert_eq!(lines.status, 404);
    match lines.collect_error().await {
        ApiError::Api { status, error } => {
            assert_eq!(status, 404);
            assert_eq!(error.code, "no_such_program");
        }
        other => panic!("{other:?}"),
    }
    fixture.stop().await;
}
