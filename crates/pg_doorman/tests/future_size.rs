//! Guards the memory an idle client costs: the per-client task future must stay small.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[tokio::test]
async fn client_task_future_is_small() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _peer = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sock, _) = listener.accept().await.unwrap();
    let config = pg_doorman::config::Config::from_yaml("general:\n  port: 1\n").unwrap();
    let tls = pg_doorman::config::tls::client_tls(&config.general).unwrap();
    let derived = pg_doorman::pool::settings::Derived::default();
    let resolved = derived.resolve(&config).unwrap();
    let ctx = std::sync::Arc::new(pg_doorman::app::context::AppContext::new(
        std::sync::Arc::new(config),
        resolved,
        derived,
        Default::default(),
        tls,
        Default::default(),
        Default::default(),
    ));
    let accepted = pg_doorman::client::startup::Accepted {
        stream: pg_doorman::net::Stream::Tcp(sock),
        peer: pg_doorman::net::Peer::Tcp(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
    };
    let fut = pg_doorman::client::startup::handle(ctx, Box::new(accepted));
    let size = std::mem::size_of_val(&fut);
    println!("client task future: {size} bytes");
    // tokio keeps a task in one 128-byte-aligned cell: 32 bytes of header, 48 of trailer and
    // the future with about 32 bytes of wrapping. Up to 272 bytes it fits a 384-byte cell;
    // past that every idle client costs 512 (and 640 past 400).
    assert!(size <= 272, "client task future is {size} bytes");
}
