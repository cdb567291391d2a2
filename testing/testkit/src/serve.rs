//! A test server on its own thread and runtime, so synchronous and asynchronous tests can
//! use it; stopping drops it and every connection (a hanging answer does not hold a test).

/// An axum app served on a free port until stopped or dropped.
#[derive(Debug)]
pub struct Background {
    url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Background {
    /// Serves `app` on the loopback.
    pub fn serve(app: axum::Router) -> Background {
        Self::serve_on(app, std::net::Ipv4Addr::LOCALHOST.into())
    }

    /// Serves `app` on `ip` (the node's address on a pod network, for pod VMs).
    pub fn serve_on(app: axum::Router, ip: std::net::IpAddr) -> Background {
        let listener = std::net::TcpListener::bind((ip, 0)).expect("binding a free port");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let url = format!("http://{}", listener.local_addr().expect("its address"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the test server");
            runtime.block_on(async move {
                let listener =
                    tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
                tokio::select! {
                    _ = axum::serve(listener, app) => {}
                    _ = stopped => {}
                }
            });
        });
        Background {
            url,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Its base URL (`http://<address>:<port>`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Stops it; it refuses connections afterwards.
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stop();
    }
}
