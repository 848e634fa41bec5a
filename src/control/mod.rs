//! The control socket: `kelpie run` serves an HTTP/1.1 + JSON API on a Unix
//! domain socket, and every control command (`status`, `start`, `reload`,
//! …) is a client of it. `protocol` holds the bodies both sides share;
//! `socket` creates the socket file safely, `server` serves it (peer
//! credentials, limits, request ids), `api` routes requests to the
//! Supervisor and the status board, and `wait` judges when an action is
//! done. The client side is `control_client`.

pub mod api;
pub mod protocol;
pub mod server;
pub mod socket;
pub mod wait;

#[cfg(test)]
mod tests;
