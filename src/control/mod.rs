//! The control socket: `kelpie run` serves an HTTP/1.1 + JSON API on a Unix
//! domain socket, and every control command (`status`, `start`, `reload`,
//! …) is a client of it. `protocol` holds the bodies both sides share;
//! `socket` creates the socket file safely, `server` serves it (peer
//! credentials, limits, request ids), `api` routes requests to the
//! Supervisor and the status board, `wait` judges when an action is done,
//! and `client` talks to it all.

pub mod api;
pub mod client;
pub mod protocol;
pub mod server;
pub mod socket;
pub mod wait;

#[cfg(test)]
mod tests;
