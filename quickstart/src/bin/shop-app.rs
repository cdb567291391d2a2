//! The quickstart's shop app (web, api and db of examples/shop.yml): answers one line per
//! connection; given the next service's address (its mesh egress listener), it first asks
//! that one and answers with the chain.
//!
//! ```text
//! shop-app <name> <listen address> [<next service's address>]
//! ```

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (name, listen, next) = match args.as_slice() {
        [name, listen] => (name.clone(), listen.clone(), None),
        [name, listen, next] => (name.clone(), listen.clone(), Some(next.clone())),
        _ => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("usage: shop-app <name> <listen address> [<next service's address>]");
            }
            return std::process::ExitCode::from(2);
        }
    };
    let next: Option<SocketAddr> = match next.map(|n| n.parse()).transpose() {
        Ok(next) => next,
        Err(e) => return fail(&format!("the next service's address: {e}")),
    };
    let listener = match TcpListener::bind(&listen) {
        Ok(listener) => listener,
        Err(e) => return fail(&format!("listening on {listen}: {e}")),
    };
    for stream in listener.incoming().flatten() {
        let name = name.clone();
        std::thread::spawn(move || {
            let _ = serve(&name, stream, next);
        });
    }
    std::process::ExitCode::SUCCESS
}

fn fail(message: &str) -> std::process::ExitCode {
    #[allow(clippy::print_stderr)]
    {
        eprintln!("shop-app: {message}");
    }
    std::process::ExitCode::FAILURE
}

fn serve(name: &str, mut stream: TcpStream, next: Option<SocketAddr>) -> std::io::Result<()> {
    let mut request = String::new();
    BufReader::new(stream.try_clone()?).read_line(&mut request)?;
    let answer = match next {
        None => format!("{name}: 42 items in stock"),
        Some(addr) => {
            let mut upstream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
            upstream.set_read_timeout(Some(Duration::from_secs(10)))?;
            upstream.write_all(b"stock?\n")?;
            let mut reply = String::new();
            BufReader::new(upstream).read_line(&mut reply)?;
            format!("{name} -> {}", reply.trim_end())
        }
    };
    stream.write_all(format!("{answer}\n").as_bytes())
}
